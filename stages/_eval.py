"""Greedy, batched evaluation on the ID and OOD test sets; per-task and overall scores.

Generation stops for a row as soon as its score is settled (`settled(completion, example)`, e.g. the
first line of an `exact` answer has ended or left the answer). A stopped row is padded exactly like a
row that emitted EOS, and the batches are the same, so every other row's tokens and every score equal
those of generating to `max_new_tokens`. Intermediate curve points may also drop settled rows from
the batch (`compact`), which is faster but not guaranteed bit-for-bit. Prompts are tokenized once per
trial (`EvalSet`).
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from ptplan.stages.errors import EvalError




@dataclass
class EvalResult:
    score: float
    by_task: dict[str, float]
    tokens: int
    seconds: float
    completions: list[str] = field(default_factory=list, repr=False)
    n: int = 0  # items scored
    se: float = 0.0  # standard error of `score` over those items


@dataclass
class EvalSet:
    """A test set prepared once per trial: its examples and their tokenized prompts."""

    examples: list
    encodings: dict[str, list]  # tokenizer output per prompt, unpadded

    @classmethod
    def prepare(cls, examples, tokenizer, prompt_text: Callable[[str], str] | None = None) -> "EvalSet":
        """Tokenize the prompts once; `prompt_text` formats each first (the trial's chat template)."""
        examples = list(examples)
        enc = tokenizer([prompt_text(e.prompt) if prompt_text else e.prompt for e in examples],
                        add_special_tokens=False)
        return cls(examples, {k: list(v) for k, v in enc.items()})

    def subset(self, indices: list[int]) -> "EvalSet":
        return EvalSet([self.examples[i] for i in indices], {k: [v[i] for i in indices] for k, v in self.encodings.items()})

    def sample(self, n: int, seed: int) -> "EvalSet":
        """A fixed subsample of `n` items, stratified by task (shares by largest remainder, at least one item
        per task), in the set's order; the whole set when `n` covers it."""
        if n >= len(self.examples):
            return self
        by_task: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(self.examples):
            by_task[e.task].append(i)
        quota = {t: n * len(idx) / len(self.examples) for t, idx in by_task.items()}
        take = {t: max(1, math.floor(q)) for t, q in quota.items()}
        for t in sorted(quota, key=lambda t: (math.floor(quota[t]) - quota[t], t))[: max(0, n - sum(take.values()))]:
            take[t] += 1
        rng = random.Random(seed)
        keep = [i for t in sorted(by_task) for i in rng.sample(by_task[t], min(take[t], len(by_task[t])))]
        return self.subset(sorted(keep))


@functools.cache
def _settled_rows_type():
    from transformers import StoppingCriteria

    class SettledRows(StoppingCriteria):
        """Per-row stop: a row is done once `settled(row, text so far)` holds; HF pads it from then on."""

        def __init__(self, tokenizer, prompt_len: int, rows: list[int], settled: Callable[[int, str], bool]):
            import torch

            self.tokenizer, self.prompt_len, self.rows, self.settled = tokenizer, prompt_len, rows, settled
            self.done = torch.zeros(len(rows), dtype=torch.bool)

        def __call__(self, input_ids, scores, **kwargs):
            todo = (~self.done).nonzero().flatten().tolist()
            if todo:
                texts = self.tokenizer.batch_decode(input_ids[todo, self.prompt_len:], skip_special_tokens=True)
                for i, text in zip(todo, texts):
                    if self.settled(self.rows[i], text):
                        self.done[i] = True
            return self.done.to(input_ids.device)

    return SettledRows


def _greedy_compacting(model, tokenizer, batch, max_new_tokens: int, rows: list[int],
                       settled: Callable[[int, str], bool]) -> tuple[list[str], int]:
    """Greedy decoding that drops settled rows from the batch (and the KV cache), so each step computes only
    the rows still undecided. Not bit-for-bit `generate`: the shrinking batch may round differently."""
    import inspect

    import torch
    from transformers import DynamicCache

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cache_arg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
    mask = batch["attention_mask"]
    step_ids = batch["input_ids"]
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    step_pos = positions
    cache = DynamicCache(config=model.config)
    active = list(range(len(rows)))
    out: list[list[int]] = [[] for _ in rows]
    eos = tokenizer.eos_token_id
    tokens = int(mask.sum().item())
    for _ in range(max_new_tokens):
        logits = model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, use_cache=True,
                       **{cache_arg: cache}).logits[:, -1]
        nxt = logits.float().argmax(-1).tolist()
        keep = []
        for j, (r, tok) in enumerate(zip(active, nxt)):
            tokens += 1
            if tok == eos:
                continue
            out[r].append(tok)
            if not settled(rows[r], tokenizer.decode(out[r], skip_special_tokens=True)):
                keep.append(j)
        if not keep:
            break
        index = torch.tensor(keep, device=mask.device)
        if len(keep) < len(active):
            cache.batch_select_indices(index)
            mask = mask[index]
            active = [active[j] for j in keep]
        step_pos = mask.long().sum(-1, keepdim=True)  # positions count real tokens only (left padding)
        mask = torch.cat([mask, mask.new_ones((len(keep), 1))], dim=-1)
        step_ids = torch.tensor([[nxt[j]] for j in keep], device=mask.device)
    return tokenizer.batch_decode(out, skip_special_tokens=True), tokens


def generate_greedy(model, tokenizer, prompts: list[str] | None, max_new_tokens: int, batch_size: int, *,
                    encodings: dict[str, list] | None = None, settled: Callable[[int, str], bool] | None = None,
                    compact: bool = False) -> tuple[list[str], int]:
    """Greedy completions; returns texts and tokens processed (prefill + generated).

    Args:
        prompts: texts to complete, or None when `encodings` (prompts tokenized once) are given.
        settled: `settled(row, text)` says a row's completion can stop (its score cannot change).
        compact: with `settled`, batch rows by prompt length (half-size batches, so little padding) and
            drop settled rows from the batch as it runs: faster, but not `generate`'s exact batches, so
            intermediate points use it and stage ends do not.
    """
    import torch
    from transformers import StoppingCriteriaList

    if encodings is None:
        encodings = {k: list(v) for k, v in tokenizer(prompts, add_special_tokens=False).items()}
    n = len(encodings["input_ids"])
    order = list(range(n))
    if compact and settled is not None:
        order.sort(key=lambda i: len(encodings["input_ids"][i]))
        batch_size = max(1, batch_size // 2)
        encodings = {k: [v[i] for i in order] for k, v in encodings.items()}
        settled_in_order = settled
        settled = lambda row, text: settled_in_order(order[row], text)  # noqa: E731
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    texts, tokens = [], 0
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                rows = list(range(start, min(start + batch_size, n)))
                batch = tokenizer.pad({k: v[start: start + batch_size] for k, v in encodings.items()}, padding=True,
                                      padding_side="left", return_tensors="pt").to(device)
                width = batch["input_ids"].shape[1]
                if compact and settled is not None:
                    done, used = _greedy_compacting(model, tokenizer, batch, max_new_tokens, rows, settled)
                    texts.extend(done)
                    tokens += used
                    continue
                stop = None if settled is None else StoppingCriteriaList(
                    [_settled_rows_type()(tokenizer, width, rows, settled)])
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, stopping_criteria=stop,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
                new = out[:, width:]
                generated = (new != tokenizer.pad_token_id).sum().item()
                tokens += int(batch["attention_mask"].sum().item()) + int(generated)
                texts.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        model.train(was_training)
    if order != sorted(order):
        unsorted = [""] * n
        for pos, i in enumerate(order):
            unsorted[i] = texts[pos]
        texts = unsorted
    return texts, tokens


def mean_and_se(scores: list[float]) -> tuple[float, float]:
    """Mean of per-item scores and its standard error (binomial sqrt(p(1-p)/n) for 0/1 scores)."""
    if not scores:
        return 0.0, 0.0
    n = len(scores)
    mean = sum(scores) / n
    return mean, math.sqrt(sum((s - mean) ** 2 for s in scores) / n / n)


def evaluate(model, tokenizer, examples: Any, scorer, max_new_tokens: int, batch_size: int, *,
             settled: Callable[[str, Any], bool] | None = None, compact: bool = False) -> EvalResult:
    """Score `examples` (prompt/answer/task, or a prepared `EvalSet`) with `scorer(completion, example)`;
    mean per task and overall. `settled(completion, example)` lets a row stop once its score is fixed;
    `compact` also drops it from the batch (see `generate_greedy`)."""
    t0 = time.perf_counter()
    try:
        prepared = examples if isinstance(examples, EvalSet) else EvalSet.prepare(examples, tokenizer)
        items = prepared.examples
        row_settled = None if settled is None else (lambda i, text: settled(text, items[i]))
        completions, tokens = generate_greedy(model, tokenizer, None, max_new_tokens, batch_size,
                                              encodings=prepared.encodings, settled=row_settled, compact=compact)
    except Exception as err:  # generation crashed: a distinct failure from a wrong answer
        import torch

        if isinstance(err, torch.OutOfMemoryError):  # recorded as `oom`, not as an evaluation failure
            raise
        raise EvalError(f"evaluation failed: {type(err).__name__}: {err}") from err
    per_task = defaultdict(list)
    scores = []
    for completion, example in zip(completions, items, strict=True):
        s = float(scorer(completion, example))
        scores.append(s)
        per_task[example.task].append(s)
    overall, se = mean_and_se(scores)
    return EvalResult(overall, {t: sum(v) / len(v) for t, v in sorted(per_task.items())}, tokens,
                      time.perf_counter() - t0, completions, len(scores), se)
