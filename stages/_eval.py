"""Greedy, batched evaluation on the ID and OOD test sets; per-task and overall scores."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from ptplan.stages.errors import EvalError




@dataclass
class EvalResult:
    score: float
    by_task: dict[str, float]
    tokens: int
    seconds: float
    completions: list[str] = field(default_factory=list, repr=False)


def generate_greedy(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> tuple[list[str], int]:
    """Greedy completions for `prompts`; returns texts and tokens processed (prefill + generated)."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    texts, tokens = [], 0
    try:
        with torch.inference_mode():
            for start in range(0, len(prompts), batch_size):
                batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                                  padding_side="left", add_special_tokens=False).to(device)
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
                new = out[:, batch["input_ids"].shape[1] :]
                generated = (new != tokenizer.pad_token_id).sum().item()
                tokens += int(batch["attention_mask"].sum().item()) + int(generated)
                texts.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        model.train(was_training)
    return texts, tokens


def evaluate(model, tokenizer, examples, scorer, max_new_tokens: int, batch_size: int) -> EvalResult:
    """Score `examples` (prompt/answer/task) with `scorer(completion, example)`; mean per task and overall."""
    t0 = time.perf_counter()
    try:
        completions, tokens = generate_greedy(model, tokenizer, [e.prompt for e in examples], max_new_tokens,
                                              batch_size)
    except Exception as err:  # generation crashed: a distinct failure from a wrong answer
        if type(err).__name__ == "OutOfMemoryError":
            raise
        raise EvalError(f"evaluation failed: {type(err).__name__}: {err}") from err
    per_task = defaultdict(list)
    scores = []
    for completion, example in zip(completions, examples, strict=True):
        s = float(scorer(completion, example))
        scores.append(s)
        per_task[example.task].append(s)
    overall = sum(scores) / len(scores) if scores else 0.0
    return EvalResult(overall, {t: sum(v) / len(v) for t, v in sorted(per_task.items())}, tokens,
                      time.perf_counter() - t0, completions)
