"""Task data contract (Example, SuiteSizes, TaskData, SuiteSpec) and the generic suite builder.

A built-in suite is a `Recipe`: ID task families that generate examples from a seeded RNG, an OOD
test mixing shifted-skill parts (e.g. longer sequences) with CPT-knowledge parts (facts stated only
in the CPT corpus, in the task's own prompt/answer format), a CPT fact pool and a raw-sequence
generator. `materialize` turns a recipe into a `TaskData` with disjoint train and test prompts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ptplan.stages._config import SuiteSizes
from ptplan.stages._scoring import RewardScorer, Scorer, as_text, similarity

CPT_SUFFIX = "_cpt"  # OOD task names for items answerable only from CPT facts end with this
FALLBACK_TASK = "*"  # scorer key used for tasks without their own scorer
ANSWER_END = "#"  # the `transfer` split's end-of-answer mark: SFT teaches it, the CPT corpus never shows it
OOD_SPLITS = ("recall", "transfer")


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    task: str

    @property
    def text(self) -> str:
        """The example as one training document: prompt immediately followed by answer."""
        return self.prompt + self.answer


@dataclass
class TaskData:
    """Materialized data of one trial: everything the stages need."""

    name: str
    cpt_corpus: list[str]
    sft_train: list[Example]
    rl_train: list[Example]
    id_test: list[Example]
    ood_test: list[Example]
    ood_shift: str
    scorers: dict[str, Scorer] = field(repr=False)
    extract: Callable[[str], str | None] | None = field(default=None, repr=False)  # `data.answer`, before scoring

    def _answer(self, completion: Any) -> str:
        text = as_text(completion)
        if self.extract is None:
            return text
        found = self.extract(text)
        return "" if found is None else found

    def scorer(self, task: str) -> Scorer:
        """Scorer of a task, falling back to the "*" scorer."""
        found = self.scorers.get(task) or self.scorers.get(FALLBACK_TASK)
        if found is None:
            raise KeyError(f"task data {self.name!r} has no scorer for task {task!r} (known: {sorted(self.scorers)})")
        return found

    def score(self, completion: str, example: Example) -> float:
        """Score in [0, 1] of one completion against an example's answer."""
        return _unit(self.scorer(example.task)(self._answer(completion), example.answer))

    def rewards(
        self,
        completions: Sequence[Any],
        answers: Sequence[Example | str],
        tasks: Sequence[str | None] | None = None,
        partial: bool = False,
        **kw: Any,
    ) -> list[float]:
        """Scores of completions against examples (or answer strings with `tasks`), in order.

        Completions sharing a user reward callable are scored in one batched call, which also gets
        the other keyword arguments (TRL's `prompts`, `trainer_state`, ...), per-completion lists
        cut to that call's completions. `partial`: every task scored by `similarity` instead.
        """
        if len(answers) != len(completions) or (tasks is not None and len(tasks) != len(completions)):
            raise ValueError(
                f"rewards: got {len(completions)} completions, {len(answers)} answers"
                + ("" if tasks is None else f" and {len(tasks)} tasks")
            )
        texts = [self._answer(c) for c in completions]
        golds, names = [], []
        for i, item in enumerate(answers):
            gold, task = (item.answer, item.task) if isinstance(item, Example) else (str(item), None)
            if tasks is not None and tasks[i] is not None:
                task = tasks[i]
            golds.append(gold)
            names.append(task if task is not None else FALLBACK_TASK)
        out = [0.0] * len(texts)
        groups: dict[int, tuple[Scorer, list[int]]] = {}
        for i, task in enumerate(names):
            scorer = similarity if partial else self.scorer(task)
            groups.setdefault(id(scorer), (scorer, []))[1].append(i)
        for scorer, idx in groups.values():
            if isinstance(scorer, RewardScorer):
                extra = {k: [v[i] for i in idx] if isinstance(v, list) and len(v) == len(texts) else v
                         for k, v in kw.items()}
                values = scorer.batch([texts[i] for i in idx], [golds[i] for i in idx], **extra)
            else:
                values = [scorer(texts[i], golds[i]) for i in idx]
            for i, value in zip(idx, values):
                out[i] = _unit(value)
        return out

    def reward_fn(self, partial: bool = False) -> Callable[..., list[float]]:
        """TRL-style reward: `reward(completions, answer, task=None, **kw) -> list[float]`.

        GRPOTrainer passes the dataset's `answer` and `task` columns as keyword lists. `partial`: credit
        by character similarity (`allocation.rl.reward: partial`) instead of the task scorers.
        """

        def reward(completions: list[Any], answer: list[str], task: list[str] | None = None, **kw: Any) -> list[float]:
            return self.rewards(completions, list(answer), None if task is None else list(task), partial=partial, **kw)

        reward.__name__ = f"{self.name}_reward"
        reward.__qualname__ = reward.__name__
        return reward


def _unit(value: float) -> float:
    value = float(value)
    return min(1.0, max(0.0, value)) if value == value else 0.0


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    description: str
    families: dict[str, str]  # family -> one-line description
    ood_shift: str
    build: Callable[..., TaskData]  # (seed, sizes, ood="recall") -> TaskData


# ---------------------------------------------------------------------------- generic builder

Generator = Callable[[random.Random], Example]


@dataclass(frozen=True)
class Recipe:
    """How a built-in suite generates its data.

    Args:
        name: suite name (also seeds the per-split RNGs).
        families: ID family -> generator of one example; SFT, RL and ID test draw evenly from these.
        ood_parts: OOD task -> (weight, generator); a None generator draws the OOD items from the CPT
            corpus's facts whose task is that name (the task name must end with "_cpt").
        facts: fact pool of the CPT corpus (all keys, ID and held-out), in the tasks' own format.
        raw: generator of one raw-sequence CPT document.
        scorers: task name -> scorer, for every ID family and OOD part.
        ood_shift: human-readable name of the OOD shift.
        fact_fraction: share of CPT documents that are facts (the rest are raw sequences).
    """

    name: str
    families: dict[str, Generator]
    ood_parts: dict[str, tuple[int, Generator | None]]
    facts: Callable[[random.Random], list[Example]]
    raw: Callable[[random.Random], str]
    scorers: dict[str, Scorer]
    ood_shift: str
    fact_fraction: float = 0.5


def split_rng(suite: str, seed: int, split: str) -> random.Random:
    """Independent, reproducible RNG of one split (string seeds hash with SHA-512, not PYTHONHASHSEED)."""
    return random.Random(f"{suite}/{seed}/{split}")


def quotas(n: int, weights: dict[str, int]) -> dict[str, int]:
    """Split n items across keys in proportion to weights (largest remainder, ties in key order)."""
    total = sum(weights.values())
    exact = {k: n * w / total for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    rest = n - sum(out.values())
    for k in sorted(weights, key=lambda k: (-(exact[k] - out[k]), list(weights).index(k)))[:rest]:
        out[k] += 1
    return out


def draw(gen: Generator, n: int, rng: random.Random, forbidden: set[str], what: str) -> list[Example]:
    """n examples from gen with prompts outside `forbidden`, distinct while the pool allows."""
    out: list[Example] = []
    seen: set[str] = set()
    unique, misses = True, 0
    while len(out) < n:
        ex = gen(rng)
        if ex.prompt in forbidden or (unique and ex.prompt in seen):
            misses += 1
            if misses > 2000:
                if not unique:
                    raise RuntimeError(f"cannot draw {n} examples of {what}: every prompt is held out")
                unique, misses = False, 0
            continue
        misses = 0
        seen.add(ex.prompt)
        out.append(ex)
    return out


def _corpus(recipe: Recipe, n: int, facts: list[Example], rng: random.Random) -> tuple[list[str], list[Example]]:
    """CPT documents (facts first covering held-out keys, then cycling) and the distinct facts used."""
    n_facts = min(n, round(n * recipe.fact_fraction)) if facts else 0
    held = [f for f in facts if f.task.endswith(CPT_SUFFIX)]
    known = [f for f in facts if not f.task.endswith(CPT_SUFFIX)]
    rng.shuffle(held)
    rng.shuffle(known)
    order = held + known
    chosen: list[Example] = []
    while len(chosen) < n_facts:
        chosen.extend(order[: n_facts - len(chosen)])
        rng.shuffle(order)
    docs = [f.text for f in chosen] + [recipe.raw(rng) for _ in range(n - n_facts)]
    rng.shuffle(docs)
    used = list({f.text: f for f in chosen}.values())
    return docs, used


def _mixed(parts: dict[str, Generator], n: int, rng: random.Random, forbidden: set[str], split: str) -> list[Example]:
    out: list[Example] = []
    for task, k in quotas(n, {t: 1 for t in parts}).items():
        out.extend(draw(parts[task], k, rng, forbidden, f"{split}/{task}"))
    rng.shuffle(out)
    return out


def _ood(
    recipe: Recipe, n: int, rng: random.Random, used_facts: list[Example], forbidden: set[str]
) -> list[Example]:
    pools = {t: [f for f in used_facts if f.task == t] for t, (_, gen) in recipe.ood_parts.items() if gen is None}
    weights = {t: w for t, (w, gen) in recipe.ood_parts.items() if gen is not None or pools[t]}
    out: list[Example] = []
    for task, k in quotas(n, weights).items():
        gen = recipe.ood_parts[task][1]
        if gen is not None:
            out.extend(draw(gen, k, rng, forbidden, f"ood/{task}"))
            continue
        pool = pools[task]
        rng.shuffle(pool)
        out.extend(pool[i % len(pool)] for i in range(k))
    rng.shuffle(out)
    return out


def materialize(recipe: Recipe, seed: int, sizes: SuiteSizes, ood: str = "recall") -> TaskData:
    """Generate every split of a recipe; test prompts never occur in the SFT or RL train sets.

    `ood="recall"`: the recipe's OOD parts (shifted inputs, and CPT-only facts asked as the CPT corpus
    states them). `ood="transfer"`: every SFT, RL and ID answer ends with ANSWER_END, a format only SFT
    teaches, and the OOD test is the CPT-only facts (distinct, at most `sizes.ood_test`) asked in that
    format: an OOD item needs both the format SFT teaches and the fact only CPT holds.
    """
    if ood not in OOD_SPLITS:
        raise ValueError(f"unknown OOD split {ood!r}; known: {', '.join(OOD_SPLITS)}")
    rng = lambda split: split_rng(recipe.name, seed, split)  # noqa: E731
    facts = recipe.facts(rng("facts"))
    corpus, used_facts = _corpus(recipe, sizes.cpt, facts, rng("cpt"))
    fact_prompts = {f.prompt for f in facts}
    if ood == "transfer":
        held = [f for f in used_facts if f.task.endswith(CPT_SUFFIX)]
        rng("ood").shuffle(held)
        ood_test = [_marked(f) for f in held[: sizes.ood_test]]
        shift = "CPT-only facts (" + ", ".join(sorted({f.task for f in held})) + f") asked in the answer format " \
                f"SFT teaches (answer + {ANSWER_END!r})"
    else:
        ood_test = _ood(recipe, sizes.ood_test, rng("ood"), used_facts, fact_prompts)
        shift = recipe.ood_shift
    id_test = _mixed(recipe.families, sizes.id_test, rng("id"), fact_prompts | {e.prompt for e in ood_test}, "id")
    held_out = {e.prompt for e in id_test} | {e.prompt for e in ood_test}
    sft = _mixed(recipe.families, sizes.sft, rng("sft"), held_out, "sft")
    rl = _mixed(recipe.families, sizes.rl, rng("rl"), held_out, "rl")
    if ood == "transfer":
        sft, rl, id_test = ([_marked(e) for e in split] for split in (sft, rl, id_test))
    return TaskData(
        name=recipe.name,
        cpt_corpus=corpus,
        sft_train=sft,
        rl_train=rl,
        id_test=id_test,
        ood_test=ood_test,
        ood_shift=shift,
        scorers=dict(recipe.scorers),
    )


def _marked(example: Example) -> Example:
    return Example(example.prompt, example.answer + ANSWER_END, example.task)


def family_of(task: str) -> str:
    """The ID family a task name belongs to (`celltype_cpt`, `celltype_long` -> `celltype`)."""
    for suffix in (CPT_SUFFIX, "_long"):
        task = task.removesuffix(suffix)
    return task


def chance_level(data: "TaskData") -> float:
    """Score of guessing uniformly among the answer space in the right format: per OOD item, 1 / the
    number of distinct answers its family takes anywhere in the data (train and test splits); the mean
    over OOD items. A rise counts only above it (`majority_level` is the stricter bar)."""
    if not data.ood_test:
        return 0.0
    space: dict[str, set[str]] = {}
    for e in data.sft_train + data.rl_train + data.id_test + data.ood_test:
        space.setdefault(family_of(e.task), set()).add(e.answer)
    return sum(1 / len(space[family_of(e.task)]) for e in data.ood_test) / len(data.ood_test)


def majority_level(examples: Sequence[Example]) -> float:
    """Score of the best constant answer (the most frequent one): what always giving one answer in the
    right format reaches, knowing only which answers the test set favours."""
    if not examples:
        return 0.0
    counts: dict[str, int] = {}
    for e in examples:
        counts[e.answer] = counts.get(e.answer, 0) + 1
    return max(counts.values()) / len(examples)


def seq(rng: random.Random, alphabet: str, lo: int, hi: int) -> str:
    """Uniform random sequence over `alphabet` with length in [lo, hi]."""
    return "".join(rng.choices(alphabet, k=rng.randint(lo, hi)))
