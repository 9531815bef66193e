"""`recommend`: the allocation to run at a budget, from a study's trial table and the outcome model.

Candidates are the completed allocations plus nearby share/rank variations of the best of them,
scored by `surrogates.OutcomeModel` at the asked budget. The model's best candidate is recommended
only when its predicted advantage over the best observed allocation (mean observed score over its
runs) exceeds the noise: a one-sided z-test of (predicted mean - observed mean) against the model's
expected-score sd and the observed mean's re-run sd / sqrt(runs). Otherwise the best observed
allocation is recommended, with the reason. Fewer than `MIN_MODEL_TRIALS` completed trials: the best
completed trial, no model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from ptplan.stages.errors import RecommendError

from ptplan.stages.record import STAGES, weighted_score
MIN_MODEL_TRIALS = 3
SHARE_STEPS = (-0.1, -0.05, 0.05, 0.1)  # moves of SFT <-> RL and CPT <-> (SFT+RL) around a candidate
TOP_SEEDS = 10  # completed allocations whose neighbourhoods are searched
EVIDENCE = 3
Z_ADVANTAGE = 1.645  # one-sided 5%: how far the model's best must beat the best observed allocation
TOP_LISTED = 5  # top candidates checked for being statistically indistinguishable from the chosen one


def objective_weight(objective: str) -> float:
    """OOD weight of an objective: ood -> 1, id -> 0, balanced -> 0.5, weight=W -> W in [0, 1]."""
    named = {"ood": 1.0, "id": 0.0, "balanced": 0.5}
    if objective in named:
        return named[objective]
    if objective.startswith("weight="):
        try:
            w = float(objective.split("=", 1)[1])
        except ValueError:
            w = float("nan")
        if 0.0 <= w <= 1.0:
            return w
    raise RecommendError(f"--objective must be ood, id, balanced or weight=W with W in [0, 1], got {objective!r}")


def as_frame(table: Any):
    """A trial table (polars DataFrame or list of row dicts, studies/_table.py) as a polars DataFrame."""
    import polars as pl

    if isinstance(table, pl.DataFrame):
        return table
    if not table:
        return pl.DataFrame()
    return pl.DataFrame(table, infer_schema_length=None, strict=False)


def completed(frame):
    """COMPLETE rows with final ID and OOD (empty when the table lacks those columns)."""
    import polars as pl

    if not {"state", "id", "ood"} <= set(frame.columns):
        return frame.clear() if frame.width else frame
    frame = frame.with_columns(pl.col("id").cast(pl.Float64), pl.col("ood").cast(pl.Float64))
    return frame.filter((pl.col("state") == "COMPLETE") & pl.col("id").is_not_null() & pl.col("ood").is_not_null()
                        & pl.col("id").is_not_nan() & pl.col("ood").is_not_nan())


@dataclass
class Recommendation:
    """What to run at a budget, how sure, and the trials behind it."""

    objective: str
    ood_weight: float
    budget: float | None
    unit: str | None
    source: str  # "model" | "best observed" | "best completed trial" | "none"
    n_complete: int
    shares: dict[str, float | None] = field(default_factory=dict)  # fractions of the budget
    ranks: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # other searched fields (lrs, RL options)
    predicted: dict[str, dict[str, float | None]] = field(default_factory=dict)  # id/ood/ood_peak_fraction
    handover: dict[str, Any] = field(default_factory=dict)
    evidence: list[dict] = field(default_factory=list)
    extrapolating: bool = False
    budget_range: tuple[float, float] | None = None
    warning: str | None = None
    notes: list[str] = field(default_factory=list)
    trial: int | None = None  # the completed trial this allocation is, when it is one
    reason: str | None = None  # why this source: the advantage test against the best observed allocation
    advantage: dict[str, Any] = field(default_factory=dict)  # model's best vs best observed: mean, se, z
    off_grid: bool = False  # an allocation never run: a model extrapolation
    distance_to_evidence: float | None = None  # standardized distance to the closest completed trial
    indistinguishable: list[dict] = field(default_factory=list)  # top candidates within noise of this one

    @property
    def ok(self) -> bool:
        return self.source != "none"

    def amounts(self) -> dict[str, float | None]:
        """Shares in the budget unit."""
        if self.budget is None:
            return {s: None for s in STAGES}
        return {s: None if v is None else v * self.budget for s, v in self.shares.items()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["amounts"] = self.amounts()
        d["budget_range"] = list(self.budget_range) if self.budget_range else None
        return _plain(d)


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _option_columns(frame) -> list[str]:
    return [c for c in frame.columns if c.startswith("param.") and not c.startswith("param.allocation.shares.")
            and not c.endswith(".rank")]


def _budget_of(done, budget: float | None) -> tuple[float | None, tuple[float, float] | None, list[str]]:
    notes = []
    vals = [float(v) for v in done["budget_total"].to_list() if v is not None] if "budget_total" in done.columns else []
    rng = (min(vals), max(vals)) if vals else None
    if budget is not None:
        if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
            raise RecommendError(f"--budget must be a positive number, got {budget!r}")
        return float(budget), rng, notes
    if not vals:
        return None, rng, ["no budget_total recorded in the completed trials: amounts not shown"]
    counts: dict[float, int] = {}
    for v in vals:
        counts[v] = counts.get(v, 0) + 1
    chosen = max(counts, key=lambda v: (counts[v], v))
    notes.append(f"no --budget given: using the study's most run budget {chosen:.4g}")
    return chosen, rng, notes


def _row_allocation(row: dict, option_cols: list[str]) -> tuple[dict, dict, dict]:
    return ({s: row.get(f"share_{s}") for s in STAGES}, {s: row.get(f"rank_{s}") for s in STAGES},
            {c.removeprefix("param."): row.get(c) for c in option_cols})


def _variations(row: dict, rank_choices: dict[str, list], share_lo: dict, share_hi: dict) -> list[dict]:
    """Nearby allocations: SFT <-> RL and CPT <-> rest share moves, and each seen rank per stage."""
    out = []
    sft, rl, cpt = row.get("share_sft"), row.get("share_rl"), row.get("share_cpt")
    if None not in (sft, rl, cpt):
        for d in SHARE_STEPS:
            moved = [{"share_sft": sft + d, "share_rl": rl - d}]
            rest = sft + rl
            if rest > 0:
                k = (rest - d) / rest
                moved.append({"share_cpt": cpt + d, "share_sft": sft * k, "share_rl": rl * k})
            for m in moved:
                new = {**row, **m}
                if all(share_lo[s] - 1e-9 <= new[f"share_{s}"] <= share_hi[s] + 1e-9 for s in STAGES):
                    out.append(new)
    for s, choices in rank_choices.items():
        for r in choices:
            if r != row.get(f"rank_{s}"):
                out.append({**row, f"rank_{s}": r})
    return out


def _key(row: dict, cols: list[str]) -> tuple:
    return tuple(round(row[c], 6) if isinstance(row.get(c), float) else row.get(c) for c in cols)


def _evidence(model, done, cand_row: dict, w: float, n: int = EVIDENCE) -> list[dict]:
    """The completed trials closest to the candidate in the model's standardized feature space."""
    import polars as pl

    X, _ = model.encoder_.transform(done)
    q, _ = model.encoder_.transform(pl.DataFrame([cand_row], schema=done.schema, strict=False))
    X = np.where(np.isnan(X), model.fill_, X)
    q = np.where(np.isnan(q), model.fill_, q)
    d = np.sqrt((((X - q) / model.scale_) ** 2).sum(1))
    order = np.argsort(d, kind="stable")[:n]
    return [_trial_summary(done.row(int(i), named=True), w, distance=float(d[i])) for i in order]


def _trial_summary(r: dict, w: float, distance: float | None = None) -> dict:
    out = {"number": r.get("number"), "id": r.get("id"), "ood": r.get("ood"),
           "score": float(weighted_score(r["id"], r["ood"], w)),
           "shares": {s: r.get(f"share_{s}") for s in STAGES}, "ranks": {s: r.get(f"rank_{s}") for s in STAGES},
           "budget_total": r.get("budget_total")}
    if distance is not None:
        out["distance"] = distance
    return out


def recommend(table: Any, budget: float | None = None, objective: str = "balanced", *,
              model: Any = None, items: dict[str, int] | None = None) -> Recommendation:
    """The recommended allocation at `budget` for `objective` (ood | id | balanced | weight=W).

    Args:
        table: the trial table (polars DataFrame or row dicts, studies/_table.py).
        budget: total budget in the table's unit; None: the study's most run budget.
        model: a fitted `surrogates.OutcomeModel` to reuse (else one is fitted on the table).
        items: evaluation items per score, {"id": n, "ood": n} (the plan's data sizes), for the
            binomial noise floor when the table has no `id_items` / `ood_items` columns.
    """
    import polars as pl

    w = objective_weight(objective)
    frame = as_frame(table)
    done = completed(frame)
    B, rng, notes = _budget_of(done, budget)
    unit = None
    if "budget_unit" in done.columns and done["budget_unit"].drop_nulls().len():
        unit = done["budget_unit"].drop_nulls().mode().sort().to_list()[0]
    rec = Recommendation(objective=objective, ood_weight=w, budget=B, unit=unit, source="none",
                         n_complete=done.height, budget_range=rng, notes=notes)
    if rng is not None and B is not None:
        lo, hi = rng
        tol = 1e-9 * max(abs(hi), 1.0)
        rec.extrapolating = bool(B < lo - tol or B > hi + tol)
        if rec.extrapolating:
            rec.warning = (f"budget {B:.4g} is outside the budgets run in this study ({lo:.4g} to {hi:.4g}"
                           f"{' ' + unit if unit else ''}): the prediction extrapolates in budget; treat it as a guess")
    option_cols = _option_columns(done)
    if done.height == 0:
        rec.notes.append("no completed trials: nothing to recommend yet (run the study, then `ptplan recommend`)")
        return rec
    if done.height < MIN_MODEL_TRIALS:
        best = max(done.iter_rows(named=True), key=lambda r: float(weighted_score(r["id"], r["ood"], w)))
        rec.source, rec.trial = "best completed trial", best.get("number")
        rec.shares, rec.ranks, rec.options = _row_allocation(best, option_cols)
        rec.predicted = {t: {"mean": best.get(t), "low": None, "high": None} for t in ("id", "ood")}
        if best.get("ood_peak_fraction") is not None:
            rec.predicted["ood_peak_fraction"] = {"mean": best["ood_peak_fraction"], "low": None, "high": None}
        rec.notes.append(f"only {done.height} completed trial{'s' if done.height != 1 else ''} (< {MIN_MODEL_TRIALS}): "
                         "no outcome model; this is the best completed trial, measured at its own budget "
                         f"{best.get('budget_total')}, not a prediction at the asked budget")
        rec.evidence = [_trial_summary(best, w, distance=0.0)]
        rec.handover = _handover(rec)
        return rec

    from ptplan.surrogates import OutcomeModel

    if model is None:
        items = items or {}
        model = OutcomeModel(level=0.8, id_items=items.get("id"), ood_items=items.get("ood")).fit(done)
    feats = list(model.encoder_.columns)
    keep = [c for c in feats if c in done.columns] + [c for c in ("number",) if c in done.columns]
    base = done.select(keep)
    at_b = (lambda f: f.with_columns(pl.lit(B, dtype=pl.Float64).alias("budget_total"))) \
        if B is not None and "budget_total" in feats else (lambda f: f)
    alloc_cols = [c for c in feats if c not in ("budget_total", "number")]
    seen, rows = set(), []
    for r in base.iter_rows(named=True):
        k = _key(r, alloc_cols)
        if k not in seen:
            seen.add(k)
            rows.append(r)
    cands = pl.DataFrame(rows, schema=base.schema, strict=False)
    pred = model.predict_outcome(at_b(cands))
    score = weighted_score(pred["id"].to_numpy(), pred["ood"].to_numpy(), w)
    # neighbourhoods of the best completed allocations, kept inside the share range that was run
    share_lo = {s: float(done[f"share_{s}"].min()) if f"share_{s}" in done.columns and done[f"share_{s}"].null_count()
                < done.height else 0.0 for s in STAGES}
    share_hi = {s: float(done[f"share_{s}"].max()) if f"share_{s}" in done.columns and done[f"share_{s}"].null_count()
                < done.height else 1.0 for s in STAGES}
    rank_choices = {s: sorted(done[f"rank_{s}"].drop_nulls().unique().to_list())
                    for s in STAGES if f"rank_{s}" in feats}
    extra = []
    for i in np.argsort(-score, kind="stable")[:TOP_SEEDS]:
        for v in _variations(rows[int(i)], rank_choices, share_lo, share_hi):
            k = _key(v, alloc_cols)
            if k not in seen:
                seen.add(k)
                extra.append({**v, "number": None} if "number" in base.columns else v)
    if extra:
        more = pl.DataFrame(extra, schema=base.schema, strict=False)
        mp = model.predict_outcome(at_b(more))
        cands, pred = pl.concat([cands, more]), pl.concat([pred, mp])
        score = weighted_score(pred["id"].to_numpy(), pred["ood"].to_numpy(), w)
    sd = _score_sd(pred, w, "sd")
    best = int(np.argmax(score))
    obs = _best_observed(done, alloc_cols, w, B)
    obs_i = next(i for i, r in enumerate(cands.iter_rows(named=True)) if _key(r, alloc_cols) == obs["key"])
    rerun = float(_score_sd(pred[obs_i], w, "rerun_sd")[0])
    se = math.hypot(float(sd[best]), rerun / math.sqrt(obs["runs"]))
    diff = float(score[best]) - obs["score"]
    z = diff / se if se > 0 else (math.inf if diff > 0 else 0.0)
    rec.advantage = {"model_best": float(score[best]), "best_observed": obs["score"], "runs": obs["runs"],
                     "difference": diff, "se": se, "z": z, "threshold_z": Z_ADVANTAGE}
    runs = f"{obs['runs']} run{'s' if obs['runs'] != 1 else ''}"
    if best == obs_i:
        chosen, rec.source = obs_i, "best observed"
        rec.reason = (f"the model's best candidate is the best observed allocation (observed score "
                      f"{obs['score']:.3f} over {runs})")
    elif z > Z_ADVANTAGE:
        chosen, rec.source = best, "model"
        rec.reason = (f"the model's best candidate beats the best observed allocation by {diff:+.3f} "
                      f"(SE {se:.3f}, z = {z:.1f} > {Z_ADVANTAGE})")
    else:
        chosen, rec.source = obs_i, "best observed"
        rec.reason = (f"the model's best candidate is predicted {diff:+.3f} over the best observed allocation "
                      f"({obs['score']:.3f} over {runs}), within the noise (SE {se:.3f}, z = {z:.1f} <= "
                      f"{Z_ADVANTAGE}): recommending the best observed allocation; replicates of the top "
                      "candidates would tell them apart")
    row, p = cands.row(chosen, named=True), pred.row(chosen, named=True)
    rec.trial = obs["number"] if chosen == obs_i else row.get("number")
    rec.shares, rec.ranks, rec.options = _row_allocation(row, option_cols)
    rec.predicted = {t: {"mean": p[t], "low": p[f"{t}_low"], "high": p[f"{t}_high"],
                         "rerun_low": p[f"{t}_rerun_low"], "rerun_high": p[f"{t}_rerun_high"]}
                     for t in ("id", "ood", "ood_peak_fraction") if model.n_trials_.get(t, 0) >= MIN_MODEL_TRIALS}
    if chosen == obs_i:
        for t in ("id", "ood"):
            if t in rec.predicted:
                rec.predicted[t]["observed"] = obs[t]
    rec.evidence = _evidence(model, done, {**row, "budget_total": B} if B is not None else row, w)
    done_keys = {_key(r, alloc_cols) for r in done.iter_rows(named=True)}
    rec.off_grid = _key(row, alloc_cols) not in done_keys
    rec.distance_to_evidence = rec.evidence[0]["distance"] if rec.evidence else None
    rec.indistinguishable = _indistinguishable(cands, score, sd, chosen, alloc_cols, done_keys, option_cols)
    rec.notes.append(f"outcome model on {done.height} completed trials; {len(cands)} candidate allocations scored "
                     f"by {(1 - w):g}*ID + {w:g}*OOD (predicted mean), intervals 80% "
                     f"(re-run noise: {model.noise_source_.get('ood', 'none')})")
    if rec.off_grid:
        rec.notes.append(f"an allocation never run: a model extrapolation, {rec.distance_to_evidence:.2f} "
                         "(standardized) from the closest completed trial")
    if p["extrapolating"] and p["outside"] and p["outside"] != "budget_total":
        rec.notes.append(f"the candidate lies outside the trials run in: {p['outside']}")
    rec.handover = _handover(rec)
    return rec


def _score_sd(pred, w: float, kind: str) -> np.ndarray:
    """Sd of the weighted score from the ID and OOD sds (`sd` or `rerun_sd`), taken as independent."""
    return np.sqrt(((1 - w) * pred[f"id_{kind}"].to_numpy()) ** 2 + (w * pred[f"ood_{kind}"].to_numpy()) ** 2)


def _best_observed(done, alloc_cols: list[str], w: float, budget: float | None) -> dict:
    """The completed allocation with the best mean observed score over its runs (at `budget` when some
    trials ran there; exact ties: the one with more runs, then the first run), with its run count,
    mean ID/OOD and best-scoring trial number."""
    rows = list(done.iter_rows(named=True))
    if budget is not None and "budget_total" in done.columns:
        at = [r for r in rows if r.get("budget_total") is not None
              and abs(float(r["budget_total"]) - budget) <= 1e-9 * max(abs(budget), 1.0)]
        rows = at or rows
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(_key(r, alloc_cols), []).append(r)
    out = []
    for k, rs in groups.items():
        i, o = float(np.mean([r["id"] for r in rs])), float(np.mean([r["ood"] for r in rs]))
        top = max(rs, key=lambda r: float(weighted_score(r["id"], r["ood"], w)))
        out.append({"key": k, "score": float(weighted_score(i, o, w)), "id": i, "ood": o, "runs": len(rs),
                    "number": top.get("number")})
    return max(out, key=lambda d: (round(d["score"], 9), d["runs"]))  # max keeps the first of equals


def _indistinguishable(cands, score, sd, chosen: int, alloc_cols: list[str], done_keys: set,
                       option_cols: list[str]) -> list[dict]:
    """Top candidates by predicted score whose difference from the chosen one is within Z_ADVANTAGE SE."""
    out = []
    for i in np.argsort(-score, kind="stable")[:TOP_LISTED]:
        i = int(i)
        if i == chosen:
            continue
        diff = float(score[chosen] - score[i])
        se = math.hypot(float(sd[chosen]), float(sd[i]))
        if abs(diff) <= Z_ADVANTAGE * se:
            r = cands.row(i, named=True)
            shares, ranks, options = _row_allocation(r, option_cols)
            out.append({"number": r.get("number"), "shares": shares, "ranks": ranks, "options": options,
                        "score": float(score[i]), "difference": -diff, "se": se,
                        "off_grid": _key(r, alloc_cols) not in done_keys})
    return out


def _handover(rec: Recommendation) -> dict:
    """When to hand over from SFT to RL: after the SFT share; where SFT's OOD score is predicted to peak."""
    sft, cpt = rec.shares.get("sft"), rec.shares.get("cpt")
    out: dict[str, Any] = {"sft_share": sft, "after": None, "ood_peak_fraction": None, "ood_peak_at": None}
    if sft is None:
        return out
    if rec.budget is not None:
        out["after"] = ((cpt or 0.0) + sft) * rec.budget
    peak = rec.predicted.get("ood_peak_fraction")
    if peak and peak.get("mean") is not None:
        out["ood_peak_fraction"] = peak["mean"]
        out["ood_peak_low"], out["ood_peak_high"] = peak.get("low"), peak.get("high")
        if rec.budget is not None:
            out["ood_peak_at"] = ((cpt or 0.0) + sft * peak["mean"]) * rec.budget
    return out
