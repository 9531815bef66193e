"""The trial record: what a trial writes, and the algorithms every reader shares.

One contract for the writers (stages/ writes `result.json` and `curves.parquet`; studies/ turns
them into trial-table rows) and the readers (surrogates/, the planner's recommendation and
report). Pure Python and numpy: importing it pulls in neither torch nor polars.

Files of a trial folder:
- `config.yaml`: the resolved trial configuration.
- `curves.parquet`: one row per evaluation point, columns `CURVE_COLUMNS`.
- `result.json`: keys `RESULT_KEYS` (allocation, ledger in every unit, final scores, the SFT OOD
  peak, status and failure reason, timings).
- `trial.log`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, TypeVar

import numpy as np

STAGES = ("cpt", "sft", "rl")  # training stages, in order
FAILURE_REASONS = ("diverged", "oom", "reward_error", "data_error", "eval_error", "budget", "interrupted", "pruned",
                   "error")
CONFIG_FILE, CURVES_FILE, RESULT_FILE, LOG_FILE = "config.yaml", "curves.parquet", "result.json", "trial.log"
DEFAULT_OOD_WEIGHT = 0.5  # the "balanced" objective: 0.5 * ID + 0.5 * OOD
REPORT_STEPS = 10  # a study records (ID, OOD) at each tenth of a trial's budget (`checkpoints` user attr)



class OODPeak(TypedDict):
    """The SFT stage's OOD peak: compute into SFT (budget unit), fraction of SFT's spend, value,
    and whether it is censored (the last point, still rising)."""

    compute: float
    fraction: float
    value: float
    censored: bool


class TrialResult(TypedDict):
    """`result.json`. `ledger` holds every unit (`Ledger.to_dict`); `final` is None unless complete;
    `failure` is {"reason": one of FAILURE_REASONS, "message"} for a failed trial."""

    name: str
    seed: int
    status: Literal["complete", "failed"]
    failure: dict | None
    allocation: dict
    budget: dict
    ledger: dict
    final: dict | None
    last_point: dict | None
    ood_peak: OODPeak | None
    stages: dict
    handover: dict | None
    timings: dict
    parameters: int | None
    curves: str


RESULT_KEYS = tuple(TrialResult.__annotations__)

# curves.parquet: column -> Arrow type name (the per-task scores are JSON strings).
CURVE_COLUMNS = {"stage": "string", "step": "int64", "compute": "float64", "flops": "float64", "tokens": "float64",
                 "id": "float64", "ood": "float64", "loss": "float64", "reward": "float64", "id_tasks": "string",
                 "ood_tasks": "string", "id_n": "int64", "ood_n": "int64", "id_se": "float64", "ood_se": "float64"}


@dataclass
class CurvePoint:
    """One evaluation point. `compute` is cumulative across stages, in the budget unit."""

    stage: str
    step: int
    compute: float
    flops: float
    tokens: float
    id: float
    ood: float
    loss: float | None
    reward: float | None
    id_tasks: dict[str, float] = field(default_factory=dict)
    ood_tasks: dict[str, float] = field(default_factory=dict)
    # Items scored and the score's standard error (intermediate points may use a subsample).
    id_n: int | None = None
    ood_n: int | None = None
    id_se: float | None = None
    ood_se: float | None = None


def write_curves(points: Sequence[CurvePoint], path) -> None:
    """Write curve points to `path` (Parquet, schema `CURVE_COLUMNS`)."""
    import dataclasses
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [dataclasses.asdict(p) for p in points]
    for r in rows:
        r["id_tasks"], r["ood_tasks"] = json.dumps(r["id_tasks"]), json.dumps(r["ood_tasks"])
    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in CURVE_COLUMNS.items()])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


# -- trial-table columns (one row per trial; studies/ writes them, the planner and surrogates read) --
def share_column(stage: str) -> str:
    return f"share_{stage}"


def rank_column(stage: str) -> str:
    return f"rank_{stage}"


def spent_column(stage: str) -> str:
    return f"spent_{stage}"


PARAM_PREFIX = "param."  # searched plan fields: `param.<plan path>`


# -- scores ----------------------------------------------------------------------------------------
def weighted_score(id_: Any, ood: Any, ood_weight: float = DEFAULT_OOD_WEIGHT) -> Any:
    """(1 - w) * ID + w * OOD, for numbers or arrays."""
    if isinstance(id_, (int, float)) and isinstance(ood, (int, float)):
        return (1.0 - ood_weight) * id_ + ood_weight * ood
    return (1.0 - ood_weight) * np.asarray(id_, dtype=float) + ood_weight * np.asarray(ood, dtype=float)


T = TypeVar("T")


def pareto_front(items: Iterable[T], key: Callable[[T], Sequence[float] | None] | None = None) -> list[T]:
    """Non-dominated items (maximize both coordinates of `key(item)`, default the item itself), by the
    first coordinate descending; items with a missing or non-finite pair are skipped, exact ties kept."""
    key = key or (lambda x: x)
    scored = []
    for item in items:
        pair = key(item)
        if pair is None or len(pair) < 2 or pair[0] is None or pair[1] is None:
            continue
        a, b = float(pair[0]), float(pair[1])
        if np.isfinite(a) and np.isfinite(b):
            scored.append((a, b, item))
    front, best, best_a = [], float("-inf"), None
    for a, b, item in sorted(scored, key=lambda t: (-t[0], -t[1])):
        if b > best:
            front.append(item)
            best, best_a = b, a
        elif b == best and a == best_a:
            front.append(item)
    return front


def hypervolume(points: Iterable[Sequence[float]]) -> float:
    """Area the (ID, OOD) points dominate above the reference (0, 0)."""
    front = sorted({(max(float(p[0]), 0.0), max(float(p[1]), 0.0)) for p in pareto_front(points)})
    area, x0 = 0.0, 0.0
    for i, o in front:  # ID ascending: slab (x0, i] at height o
        area += max(i - x0, 0.0) * o
        x0 = max(x0, i)
    return area


def hypervolume_improvement(samples: np.ndarray, front: np.ndarray) -> np.ndarray:
    """2-D hypervolume gained by adding each sample point (..., 2) to `front` (sorted by ID ascending,
    so OOD descending), reference (0, 0). The dominated region's height at ID x is the OOD of the
    first front point at or beyond x; the gain is the area of the sample's box above that staircase."""
    s = np.clip(samples, 0.0, None)
    x, y = s[..., 0:1], s[..., 1:2]
    if not len(front):
        return (x * y)[..., 0]
    fx = np.concatenate([[0.0], np.clip(front[:, 0], 0.0, None)])
    fy = np.concatenate([np.clip(front[:, 1], 0.0, None), [0.0]])
    lo, hi = fx, np.concatenate([fx[1:], [np.inf]])  # segment i: (lo_i, hi_i] at height fy_i
    width = np.clip(np.minimum(hi, x) - lo, 0.0, None)
    return (width * np.clip(y - fy, 0.0, None)).sum(-1)


# -- the SFT slice of a curve and its OOD peak ------------------------------------------------------
def _get(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def sft_slice(rows: Sequence[T], stage: Callable[[T], str] | None = None) -> list[T]:
    """The SFT part of a curve (mappings or `CurvePoint`s in recorded order; `stage(row)` reads a
    row's stage where they are neither): the last point before SFT (the checkpoint SFT starts from,
    `start` or `cpt`), then the SFT points. Empty without SFT."""
    stage = stage or (lambda r: _get(r, "stage"))
    first = next((i for i, r in enumerate(rows) if stage(r) == "sft"), None)
    if first is None:
        return []
    before = [r for r in rows[:first] if stage(r) in ("start", "cpt")]
    return before[-1:] + [r for r in rows[first:] if stage(r) == "sft"]


def peak_index(values: Sequence[float]) -> tuple[int, bool]:
    """The recorded peak of a series: the first index of its maximum, and whether it is censored
    (the last point, still rising)."""
    v = [float("-inf") if x is None or not np.isfinite(x) else float(x) for x in values]
    best = max(range(len(v)), key=lambda i: (v[i], -i))
    return best, best == len(v) - 1 and len(v) > 1 and v[-1] > v[-2]


def ood_peak(rows: Sequence[Any], sft_start: float, sft_spent: float) -> OODPeak | None:
    """The SFT stage's OOD peak: compute into SFT, fraction of what SFT spent, value, censored flag.

    `sft_start` is the cumulative compute when SFT began and `sft_spent` what it spent (budget unit)."""
    series = sft_slice(rows)
    if not any(_get(r, "stage") == "sft" for r in series):
        return None
    best, censored = peak_index([_get(r, "ood") for r in series])
    rel = max(_get(series[best], "compute") - sft_start, 0.0)
    return {"compute": rel, "fraction": min(rel / sft_spent, 1.0) if sft_spent else 0.0,
            "value": _get(series[best], "ood"), "censored": censored}


__all__ = [
    "CONFIG_FILE", "CURVES_FILE", "CURVE_COLUMNS", "CurvePoint", "DEFAULT_OOD_WEIGHT",
    "FAILURE_REASONS", "LOG_FILE", "OODPeak", "PARAM_PREFIX", "REPORT_STEPS",
    "RESULT_FILE", "RESULT_KEYS", "STAGES", "TrialResult", "hypervolume",
    "hypervolume_improvement", "ood_peak", "pareto_front", "peak_index", "rank_column", "share_column", "sft_slice",
    "spent_column", "weighted_score", "write_curves",
]
