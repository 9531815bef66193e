"""Scorers: (completion, answer) -> score in [0, 1], and TRL-style reward callables by import path.

Built-in scorers read the first non-empty line of a completion (a model trained on one-answer-per-line
text may keep generating after the answer) and never raise on garbage completions.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable
from typing import Any
from ptplan.stages.errors import RewardError

Scorer = Callable[[str, str], float]

DEFAULT_TOLERANCE = 0.0
_EPS = 1e-9
_LABEL_SEPARATORS = re.compile(r"[,;|\n]+")




def as_text(completion: Any) -> str:
    """Text of a completion: plain strings pass through; TRL chat completions use their last message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else str(content)
    if completion is None:
        return ""
    if isinstance(completion, bytes):
        return completion.decode("utf-8", errors="replace")
    return str(completion)


def first_line(text: Any) -> str:
    """First non-empty line of `text`, stripped, with runs of whitespace collapsed to one space."""
    for line in as_text(text).splitlines():
        line = " ".join(line.split())
        if line:
            return line
    return ""


ANSWER_TAG = re.compile(r"<answer>(?P<answer>.*?)</answer>", re.S)
THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S)


def answer_extractor(spec: str | None) -> Callable[[str], str | None] | None:
    """The answer extractor a plan's `data.answer` names: `tag` (the last <answer>...</answer>), `last-line`
    (the last non-empty line after any <think> block), or a regex with a group named `answer` (its last
    match). The extractor returns None when a completion holds no answer in that form."""
    if spec is None:
        return None
    if spec == "tag":
        pattern = ANSWER_TAG
    elif spec == "last-line":
        def last_line(text: str) -> str | None:
            lines = [ln.strip() for ln in THINK_BLOCK.sub("", text).splitlines() if ln.strip()]
            return lines[-1] if lines else None

        return last_line
    else:
        try:
            pattern = re.compile(spec, re.S)
        except re.error as err:
            raise ValueError(f"must be `tag`, `last-line` or a regular expression; {spec!r} does not compile: "
                             f"{err}") from None
        if "answer" not in pattern.groupindex:
            raise ValueError(f"a regular expression needs a group named `answer`, e.g. "
                             f"'Answer: (?P<answer>.+)'; got {spec!r}")

    def extract(text: str) -> str | None:
        found = list(pattern.finditer(THINK_BLOCK.sub("", text)))
        return found[-1].group("answer").strip() if found else None

    return extract
def first_line_state(text: Any) -> tuple[str, bool]:
    """`first_line(text)` so far, and whether that line has ended (no continuation can change it)."""
    for chunk in as_text(text).splitlines(keepends=True):
        line = " ".join(chunk.split())
        if line:
            return line, chunk.splitlines()[0] != chunk
    return "", False


def _first_line_settled(completion: str, answer: str) -> bool:
    return first_line_state(completion)[1]


def exact(completion: str, answer: str) -> float:
    """1.0 when the first line of the completion equals the answer (whitespace-normalized), else 0.0."""
    return 1.0 if first_line(completion) == first_line(answer) else 0.0


def similarity(completion: str, answer: str) -> float:
    """Partial credit in [0, 1]: character similarity (difflib's ratio, 2 * matches / total length) of the
    completion's first line to the answer's; 1.0 exactly when `exact` gives 1.0."""
    import difflib

    a, b = first_line(completion), first_line(answer)
    return 1.0 if a == b else difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _exact_settled(completion: str, answer: str) -> bool:
    """Settled once the first line ended, or once it left the answer: every continuation of a partial
    line normalizes to a string that starts with the normalized partial line."""
    line, ended = first_line_state(completion)
    if ended:
        return True
    # U+FFFD: a multi-byte character split across tokens; its next token may complete it.
    return bool(line) and "\ufffd" not in line and not first_line(answer).startswith(line)


exact.settled = _exact_settled


def _parse_number(text: str) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def numeric(tolerance: float = DEFAULT_TOLERANCE) -> Scorer:
    """Scorer giving 1.0 when the completion's number is within `tolerance` (absolute) of the answer.

    A completion that is not a number scores 0.0; an answer that is not a number falls back to `exact`.
    """
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not tolerance >= 0:
        raise ValueError(f"numeric tolerance must be a non-negative number, got {tolerance!r}")
    tol = float(tolerance)

    def score(completion: str, answer: str) -> float:
        target = _parse_number(first_line(answer))
        if target is None:
            return exact(completion, answer)
        value = _parse_number(first_line(completion))
        return 1.0 if value is not None and abs(value - target) <= tol + _EPS else 0.0

    score.__name__ = f"numeric(tolerance={tol:g})"
    score.__qualname__ = score.__name__
    score.settled = _first_line_settled
    return score


def labels(text: Any, split_whitespace: bool = True) -> set[str]:
    """Label set of a multi-label string: separated by ',', ';', '|' or new lines (and whitespace)."""
    parts = _LABEL_SEPARATORS.split(as_text(text))
    if split_whitespace:
        parts = [p for part in parts for p in part.split()]
    return {" ".join(p.split()) for p in parts if p.strip()}


def set_f1(completion: str, answer: str) -> float:
    """F1 between the label sets of completion and answer (e.g. GO terms "GO:0005634, GO:0003677").

    Whitespace separates labels too, unless some answer label itself contains a space ("T cell").
    Only the completion's first line counts unless the answer spans several lines. Two empty sets
    score 1.0.
    """
    multiword = any(" " in label for label in labels(answer, split_whitespace=False))
    gold = labels(answer, split_whitespace=not multiword)
    answer_text = as_text(answer).strip()
    pred_text = as_text(completion) if "\n" in answer_text else first_line(completion)
    pred = labels(pred_text, split_whitespace=not multiword)
    if not gold and not pred:
        return 1.0
    hits = len(gold & pred)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(pred), hits / len(gold)
    return 2 * precision * recall / (precision + recall)


def _set_f1_settled(completion: str, answer: str) -> bool:
    return "\n" not in as_text(answer).strip() and first_line_state(completion)[1]


set_f1.settled = _set_f1_settled


def score_settled(scorer: Scorer, completion: str, answer: str) -> bool:
    """True when no continuation of `completion` can change its score, so evaluation may stop generating it.

    A scorer opts in with a `settled(completion, answer)` attribute: the built-in ones read only the
    completion's first line; a reward callable (`RewardScorer`) sees the whole completion and never settles.
    """
    rule = getattr(scorer, "settled", None)
    return rule is not None and bool(rule(completion, answer))


# name -> factory(tolerance) -> Scorer
SCORERS: dict[str, Callable[[float], Scorer]] = {
    "exact": lambda tolerance=DEFAULT_TOLERANCE: exact,
    "numeric": numeric,
    "set_f1": lambda tolerance=DEFAULT_TOLERANCE: set_f1,
}


class RewardScorer:
    """A TRL-style reward callable `reward(completions, answer, **kw) -> list[float]` used as a Scorer.

    Calling it scores one completion; `batch` scores many in one call. Scores are clamped to [0, 1]
    (None counts as 0); anything else the callable returns, or raises, becomes a `RewardError`.
    """

    def __init__(self, fn: Callable[..., Any], spec: str):
        self.fn = fn
        self.spec = spec
        self.__name__ = spec

    def __call__(self, completion: str, answer: str) -> float:
        return self.batch([completion], [answer])[0]

    def batch(self, completions: list[str], answers: list[str], **kw: Any) -> list[float]:
        try:
            values = self.fn(list(completions), answer=list(answers), **kw)
        except Exception as exc:  # noqa: BLE001 - re-raised with the callable named
            raise RewardError(f"reward `{self.spec}` raised {type(exc).__name__}: {exc}") from exc
        try:
            values = list(values)
        except TypeError:
            raise RewardError(
                f"reward `{self.spec}` must return a list of floats, got {type(values).__name__}"
            ) from None
        if len(values) != len(completions):
            raise RewardError(
                f"reward `{self.spec}` returned {len(values)} scores for {len(completions)} completions"
            )
        return [self._clamp(v) for v in values]

    def _clamp(self, value: Any) -> float:
        if value is None:
            return 0.0
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise RewardError(f"reward `{self.spec}` returned a non-number: {value!r}") from None
        if not math.isfinite(value):
            raise RewardError(f"reward `{self.spec}` returned a non-finite score: {value!r}")
        return min(1.0, max(0.0, value))

    def __repr__(self) -> str:
        return f"RewardScorer({self.spec!r})"


def _import_callable(spec: str) -> Callable[..., Any]:
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise ValueError(f"reward import path must look like 'package.module:function', got {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is a bad spec
        raise ValueError(f"cannot import module {module_name!r} of scorer {spec!r}: {exc}") from exc
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise ValueError(f"scorer {spec!r}: module {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(obj):
        raise ValueError(f"scorer {spec!r} is not callable (got {type(obj).__name__})")
    return obj


def resolve_scorer(spec: str, tolerance: float = DEFAULT_TOLERANCE) -> Scorer:
    """Scorer for a registered name (`exact`, `numeric`, `set_f1`) or a reward's import path.

    Args:
        spec: a key of `SCORERS`, or "package.module:function" naming a TRL-style reward
            `reward(completions, answer, **kw) -> list[float]`.
        tolerance: absolute tolerance of the `numeric` scorer.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"scorer must be one of {sorted(SCORERS)} or 'package.module:function', got {spec!r}")
    spec = spec.strip()
    if spec in SCORERS:
        return SCORERS[spec](tolerance)
    if ":" not in spec:
        raise ValueError(f"unknown scorer {spec!r}; known: {sorted(SCORERS)} or 'package.module:function'")
    return RewardScorer(_import_callable(spec), spec)
