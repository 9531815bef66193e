"""The trial table: one flat row per trial, read once from storage; Pareto front; compute saved.

Used by `ptplan status` (fast: one `get_trials(deepcopy=False)`) and `ptplan export` (polars).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ptplan.stages.record import PARAM_PREFIX, STAGES, pareto_front as _front, rank_column, share_column, spent_column

from ._accounting import cost_columns
from ._space import SHARE_PARAMS
from ._worker import failure_reason, retry_history

if TYPE_CHECKING:
    from ._config import StudyPlan


def _get(d: Any, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _allocation_of(params: dict, plan: "StudyPlan") -> dict | None:
    """Allocation of a trial that has no record yet (queued, running, interrupted early)."""
    if not params:
        return None
    try:
        return dataclasses.asdict(plan.space.config_for(params).allocation)
    except ValueError:
        return None


def trial_row(t, plan: "StudyPlan") -> dict:
    """One flat record of a trial (columns are stable across trials of a study)."""
    ua = t.user_attrs
    alloc = ua.get("allocation") or _allocation_of(t.params, plan)
    shares = _get(alloc, "shares") or (plan.space.shares_for(t.params) if t.params else {})
    ledger = ua.get("ledger") or {}
    unit = ledger.get("unit", plan.trial.budget.unit)
    final = ua.get("final") or {}
    values = t.values or []
    multi = plan.study.objective.kind == "multi"
    peak = ua.get("ood_peak") or {}
    saved = ua.get("compute_saved") or {}
    failure = ua.get("failure") if isinstance(ua.get("failure"), dict) else {}
    history = retry_history(t)
    row: dict[str, Any] = {
        "number": t.number,
        "state": t.state.name,
        "id": final.get("id", values[0] if multi and values else None),
        "ood": final.get("ood", values[1] if multi and len(values) > 1 else None),
        "objective": None if multi else (values[0] if values else None),
    }
    for s in STAGES:
        row[share_column(s)] = shares.get(s)
    for s in STAGES:
        row[rank_column(s)] = _get(alloc, s, "rank")
    for path in plan.space.params:
        if path not in SHARE_PARAMS:
            row[PARAM_PREFIX + path] = t.params.get(path)
    for path in SHARE_PARAMS:
        if path in plan.space.params:
            row[PARAM_PREFIX + path] = t.params.get(path)
    row.update({
        "budget_unit": unit,
        "budget_total": ledger.get("total"),
        "spent": _get(ledger, "spent", unit),
        "spent_flops": _get(ledger, "spent", "flops"),
    })
    for s in STAGES:
        row[spent_column(s)] = _get(ledger, "stages", s, "spent", unit)
    row.update({
        "ood_peak_fraction": peak.get("fraction"),
        "ood_peak_value": peak.get("value"),
        "ood_peak_censored": peak.get("censored"),
        "failure_reason": failure_reason(t),
        "failure_message": failure.get("message"),
        "retries": len(history),
        "retry_of": history[0] if history else None,
        "reused": ",".join(saved.get("stages", [])),
        "saved": saved.get("value"),
        "saved_flops": saved.get("flops"),
        "curves": ua.get("curves"),
        "artifacts": ua.get("artifacts"),
        "worker": ua.get("worker"),
        **cost_columns(ua.get("resources")),
        "started": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
        "completed": t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else None,
        "duration_s": (t.datetime_complete - t.datetime_start).total_seconds()
        if t.datetime_start and t.datetime_complete else None,
    })
    timings = ua.get("timings") or {}
    row.update({  # seconds: the worker's wall time of the trial, its training loops and its evaluation
        "time_wall": ua.get("wall_seconds", timings.get("total")),
        "time_train": timings.get("train"),
        "time_eval": timings.get("eval"),
    })
    return row


def pareto_front(rows: list[dict]) -> list[dict]:
    """Non-dominated COMPLETE rows (maximize ID and OOD), by ID descending."""
    return _front((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: (r["id"], r["ood"]))


@dataclass
class StudyTable:
    """Everything `status` shows, computed from one read of the trials."""

    rows: list[dict]
    counts: dict[str, int]
    front: list[dict]
    best: dict | None
    saved: float
    saved_flops: float
    unit: str
    retried: int
    user_attrs: dict = field(default_factory=dict)


def study_table(study, plan: "StudyPlan") -> StudyTable:
    trials = study.get_trials(deepcopy=False)
    rows = [trial_row(t, plan) for t in trials]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    multi = plan.study.objective.kind == "multi"
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = None if multi or not complete else max(complete, key=lambda r: r["objective"])
    return StudyTable(
        rows=rows, counts=counts, front=pareto_front(rows) if multi else ([best] if best else []), best=best,
        saved=sum(r["saved"] or 0.0 for r in rows), saved_flops=sum(r["saved_flops"] or 0.0 for r in rows),
        unit=plan.trial.budget.unit, retried=sum(1 for r in rows if r["retries"]), user_attrs=study.user_attrs)


def to_frame(rows: list[dict]):
    """The trial table as a polars DataFrame (one row per trial)."""
    import polars as pl

    return pl.DataFrame(rows, infer_schema_length=None, strict=False)


def export_table(rows: list[dict], path, fmt: str) -> None:
    frame = to_frame(rows)
    if fmt == "parquet":
        frame.write_parquet(path)
    elif fmt == "csv":
        frame.write_csv(path)
    else:
        raise ValueError(f"unknown export format {fmt!r} (parquet, csv)")
