"""Leave-one-trial-out accuracy of the surrogates against their baselines, on a study's trial table.

Curve model: for each SFT curve, fit on all other curves, observe the first 30% (50%) of the slice
and compare the predicted OOD peak with the recorded one. Trials that share an SFT stage (reused
checkpoints give identical curves) are left out together, so a curve never predicts itself.
Outcome model: folds grouped by shared SFT stage (`key_sft`) and identical allocation, so a trial's
near-copy (same SFT stage, different RL rank) or replicate (another seed) is never in the training
fold: leave one group out up to 100 groups, else 10 grouped folds. Spearman correlation of predicted
and actual final OOD and ID, and coverage of both interval kinds (expected score; one re-run).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.base import clone

from ._baselines import BASELINES, NearestTrials
from ._curve import OODPeakModel, as_curve, peak_of, sft_curve, truncate
from ._outcome import TARGETS, OutcomeModel, _as_frame, feature_columns

FRACTIONS = (0.3, 0.5)
LOTO_MAX_TRIALS = 100
# What the issue asks of the curve model at 30% observed (and reports at 50%), and of the outcome model.
TARGET_MAE, TARGET_GAIN, TARGET_COVERAGE, TARGET_SPEARMAN = 0.10, 0.30, (0.70, 0.90), 0.80


def curve_models(level: float = 0.8) -> dict[str, Any]:
    """The curve model and its baselines, unfitted, by name."""
    return {"curve-model": OODPeakModel(level=level), **{k: cls(level=level) for k, cls in BASELINES.items()}}


def read_trial_curves(table: Any, base_dir: str | Path | None = None) -> tuple[dict[int, Any], list[int]]:
    """Each COMPLETE trial's whole curves.parquet (a polars frame, sorted by compute), by trial number,
    from the table's `curves` paths; and the numbers of trials without a readable one.

    Relative paths are resolved against `base_dir` (the run folder or the table file's folder) and
    then the working directory."""
    import polars as pl

    frame = _as_frame(table)
    if "state" in frame.columns:
        frame = frame.filter(pl.col("state") == "COMPLETE")
    if "curves" not in frame.columns:
        return {}, []
    out, missing = {}, []
    numbers = frame["number"].to_list() if "number" in frame.columns else list(range(frame.height))
    for number, path in zip(numbers, frame["curves"].to_list()):
        p = Path(path) if path else None
        if p is not None and not p.is_absolute() and base_dir is not None and (Path(base_dir) / p).exists():
            p = Path(base_dir) / p
        try:
            c = pl.read_parquet(p) if p is not None and p.exists() else None
        except Exception:  # noqa: BLE001 - an unreadable file is one missing curve
            c = None
        if c is None or not ({"stage", "compute", "id", "ood"} <= set(c.columns)) or not c.height:
            missing.append(number)
            continue
        out[number] = c.sort("compute", maintain_order=True) if c["compute"].null_count() == 0 else c
    return out, missing


def load_curves(table: Any, base_dir: str | Path | None = None) -> tuple[dict[int, Any], list[str]]:
    """SFT curves (`sft_curve`) of the COMPLETE trials, by trial number, and notes on trials without one."""
    if "curves" not in _as_frame(table).columns:
        return {}, ["the table has no `curves` column: curve models not evaluated"]
    whole, missing = read_trial_curves(table, base_dir)
    curves, notes = {}, []
    for number, c in whole.items():
        sft = sft_curve(c)
        if sft is None:
            notes.append(f"trial {number}: no SFT stage")
            continue
        curves[number] = sft
    if missing:
        notes.append(f"{len(missing)} trial(s) without a readable curves file: {', '.join(map(str, missing[:10]))}"
                     + (" ..." if len(missing) > 10 else ""))
    return curves, notes


def _groups(curves: list[np.ndarray]) -> list[int]:
    """Group id per curve: identical curves (a shared SFT stage) get the same id."""
    keys: dict[bytes, int] = {}
    out = []
    for c in curves:
        key = np.round(np.nan_to_num(c[:, :2], nan=-1.0), 9).tobytes()
        out.append(keys.setdefault(key, len(keys)))
    return out


def evaluate_curve_models(curves: list[Any], fractions=FRACTIONS, level: float = 0.8,
                          models: dict[str, Any] | None = None,
                          progress: Callable[[int, int], None] | None = None,
                          groups: Sequence[Any] | None = None, features: Any = None,
                          features_for: Sequence[str] | None = None):
    """Leave-one-group-out peak prediction of each model at each observed fraction.

    Args:
        curves: complete SFT curves (see `as_curve`).
        models: unfitted estimators by name; default: `curve_models(level)`.
        groups: a group label per curve (e.g. the SFT configuration, so that replicates under other
            seeds are held out together); default: identical curves (a shared SFT stage) form a group.
            Each group is scored once, on its first curve, unless labels are given (then every
            distinct curve is scored).
        features: optional (n_curves, d) SFT settings per curve, given to the models whose `fit` and
            `predict_peak` take `features` (the curve model's settings-weighted prior), or only to
            the models named in `features_for`.
        progress: called with (done, total) after each held-out curve.

    Returns:
        (summary, detail, counts): polars frames (one row per model and fraction; one per model,
        fraction and curve) and how many curves were used or skipped (flat, too short, duplicate).
    """
    import polars as pl

    models = models if models is not None else curve_models(level)
    parsed = [as_curve(c) for c in curves]
    same = _groups(parsed)
    if groups is None:
        groups = same
    else:
        labels: dict[Any, int] = {}
        groups = [labels.setdefault(g, len(labels)) for g in groups]
    counts = {"curves": len(parsed), "evaluated": 0, "flat": 0, "short": 0, "duplicate": 0, "censored": 0}
    targets = []
    seen: set[int] = set()
    for i, c in enumerate(parsed):
        truth = peak_of(c)
        if same[i] in seen:
            counts["duplicate"] += 1
        elif truth is None or np.isfinite(c[:, 1]).sum() < 3:
            counts["short"] += 1
        elif truth["flat"]:
            counts["flat"] += 1
        else:
            targets.append((i, truth))
            counts["censored"] += int(truth["censored"])
        seen.add(same[i])
    counts["evaluated"] = len(targets)
    detail = []
    feats = None if features is None else np.asarray(features, dtype=float).reshape(len(parsed), -1)
    for done, (i, truth) in enumerate(targets, 1):
        rest = [j for j in range(len(parsed)) if groups[j] != groups[i]]
        prior = [parsed[j] for j in rest]
        for name, template in models.items():
            uses = (feats is not None and "features" in inspect.signature(template.fit).parameters
                    and (features_for is None or name in features_for))
            est = clone(template).fit(prior, features=feats[rest]) if uses else clone(template).fit(prior)
            for f in fractions:
                part = truncate(parsed[i], f)
                r = (est.predict_peak([part], features=feats[i:i + 1]) if uses else est.predict_peak([part])).row(0)
                detail.append({
                    "model": name, "observed": float(f), "curve": i, "true_location": truth["fraction"],
                    "true_value": truth["value"], "censored": truth["censored"], **{k: r[k] for k in (
                        "location", "location_low", "location_high", "value", "value_low", "value_high", "behind")},
                    "truly_behind": bool(truth["fraction"] <= float(part[:, 0].max()) + 1e-9) if len(part) else False,
                })
        if progress:
            progress(done, len(targets))
    schema = {"model": pl.String, "observed": pl.Float64, "curve": pl.Int64}
    detail_frame = pl.DataFrame(detail, infer_schema_length=None) if detail else pl.DataFrame(schema=schema)
    return _curve_summary(detail_frame, list(models), fractions), detail_frame, counts


def _curve_summary(detail, names: list[str], fractions):
    import polars as pl

    rows = []
    for f in fractions:
        best_baseline = None
        for name in names:
            d = detail.filter((pl.col("model") == name) & (pl.col("observed") == float(f))) if detail.height else detail
            if not d.height:
                rows.append({"model": name, "observed": float(f), "curves": 0})
                continue
            t, loc = d["true_location"].to_numpy(), d["location"].to_numpy()
            v, val = d["true_value"].to_numpy(), d["value"].to_numpy()
            err = np.abs(loc - t)
            behind, truly = d["behind"].to_numpy(), d["truly_behind"].to_numpy().astype(float)
            row = {"model": name, "observed": float(f), "curves": d.height, "mae": float(err.mean()),
                   "median_ae": float(np.median(err)),
                   "coverage": float(np.mean((t >= d["location_low"].to_numpy() - 1e-9)
                                             & (t <= d["location_high"].to_numpy() + 1e-9))),
                   "value_mae": float(np.mean(np.abs(val - v))),
                   "value_coverage": float(np.mean((v >= d["value_low"].to_numpy() - 1e-9)
                                                   & (v <= d["value_high"].to_numpy() + 1e-9))),
                   "behind_brier": float(np.mean((behind - truly) ** 2))}
            if name in BASELINES:
                best_baseline = row["mae"] if best_baseline is None else min(best_baseline, row["mae"])
            rows.append(row)
        for row in rows:
            if row["observed"] == float(f) and row["model"] not in BASELINES and best_baseline and "mae" in row:
                row["gain_vs_best_baseline"] = 1.0 - row["mae"] / best_baseline
    return pl.DataFrame(rows, infer_schema_length=None)


def fold_groups(frame: Any) -> np.ndarray:
    """Group id per row for held-out folds: rows sharing an SFT stage (`key_sft`) or an identical
    allocation (replicates with other seeds) are one group, transitively."""
    cols = feature_columns(frame)
    allocs = [tuple(r) for r in frame.select(cols).iter_rows()] if cols else [(i,) for i in range(frame.height)]
    sft = frame["key_sft"].to_list() if "key_sft" in frame.columns else [None] * frame.height
    parent = list(range(frame.height))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[Any, int] = {}
    for i, (k, a) in enumerate(zip(sft, allocs)):
        for key in ([("sft", k)] if k else []) + [("alloc", a)]:
            j = first.setdefault(key, i)
            parent[root(i)] = root(j)
    ids: dict[int, int] = {}
    return np.array([ids.setdefault(root(i), len(ids)) for i in range(frame.height)], dtype=int)


def held_out_outcomes(frame: Any, template: Any, *, folds: int | None = None, loo_max: int = LOTO_MAX_TRIALS,
                      random_state: int = 0, progress: Callable[[int, int], None] | None = None):
    """Held-out predictions of an outcome model for every row of `frame` (COMPLETE trials), with folds
    grouped by `fold_groups` (shared SFT stage): leave one group out up to `loo_max` groups, else
    `folds` (10) random grouped folds.

    Returns:
        (predictions, how): a polars frame aligned with `frame` (<target>, <target>_low,
        <target>_high, and the re-run interval columns when the model gives them), and a phrase
        saying which cross-validation was used.
    """
    import polars as pl

    n = frame.height
    groups = fold_groups(frame)
    g = int(groups.max()) + 1 if n else 0
    k = g if (folds is None and g <= loo_max) else min(folds or 10, g)
    how = (f"leave-one-group-out ({g} groups by shared SFT stage or allocation, {n} trials)" if k == g
           else f"{k}-fold cross-validation grouped by shared SFT stage or allocation ({g} groups, {n} trials)")
    fold = (np.random.default_rng(random_state).permutation(g) % k)[groups]
    parts = []
    for done, j in enumerate(range(k), 1):
        test_mask = fold == j
        pred = clone(template).fit(frame.filter(pl.Series(~test_mask))).predict_outcome(
            frame.filter(pl.Series(test_mask)))
        parts.append(pred.with_columns(pl.Series("_row", np.flatnonzero(test_mask))))
        if progress:
            progress(done, k)
    return pl.concat(parts, how="diagonal_relaxed").sort("_row").drop("_row"), how


def evaluate_outcome_models(table: Any, level: float = 0.8, folds: int | None = None, random_state: int = 0,
                            progress: Callable[[int, int], None] | None = None,
                            items: dict[str, int] | None = None):
    """Held-out outcome predictions (`held_out_outcomes`: folds grouped by shared SFT stage).

    Args:
        items: evaluation items per score {"id": n, "ood": n} for the binomial floor, when the
            table has no `id_items` / `ood_items` columns.

    Returns:
        (summary, detail): one row per model and target (trials, spearman, mae, coverage of the
        expected-score interval, rerun_coverage of the one-run interval, both against the held-out
        trial's own outcome); one row per model, target and trial.
    """
    import polars as pl
    from scipy.stats import spearmanr

    frame = _as_frame(table)
    if "state" in frame.columns:
        frame = frame.filter(pl.col("state") == "COMPLETE")
    frame = frame.filter(pl.col("id").is_not_null() & pl.col("ood").is_not_null())
    n = frame.height
    items = items or {}
    models = {"outcome-model": OutcomeModel(level=level, random_state=random_state, id_items=items.get("id"),
                                            ood_items=items.get("ood")),
              "nearest-trials": NearestTrials(level=level)}
    if n < 3:
        return pl.DataFrame({"model": list(models), "trials": [n] * len(models)}), pl.DataFrame()
    detail = []
    for name, template in models.items():
        pred, how = held_out_outcomes(frame, template, folds=folds, random_state=random_state,
                                    progress=progress if name == "outcome-model" else None)
        for t in TARGETS:
            if t not in frame.columns:
                continue
            rr = (pred[f"{t}_rerun_low"].to_list(), pred[f"{t}_rerun_high"].to_list()) \
                if f"{t}_rerun_low" in pred.columns else ([None] * n, [None] * n)
            for a, m, lo, hi, rlo, rhi in zip(frame[t].to_list(), pred[t].to_list(), pred[f"{t}_low"].to_list(),
                                              pred[f"{t}_high"].to_list(), *rr):
                if a is not None and np.isfinite(a):
                    detail.append({"model": name, "target": t, "actual": float(a), "predicted": m,
                                   "low": lo, "high": hi, "rerun_low": rlo, "rerun_high": rhi})
    detail_frame = pl.DataFrame(detail, infer_schema_length=None)
    rows = []
    for name in models:
        for t in TARGETS:
            d = detail_frame.filter((pl.col("model") == name) & (pl.col("target") == t)) if detail else detail_frame
            if not d.height:
                continue
            a, p = d["actual"].to_numpy(), d["predicted"].to_numpy()
            rho = float(spearmanr(a, p)[0]) if len(a) > 2 and np.ptp(a) > 0 and np.ptp(p) > 0 else float("nan")
            rlo, rhi = d["rerun_low"].to_numpy().astype(float), d["rerun_high"].to_numpy().astype(float)
            rows.append({"model": name, "target": t, "trials": d.height, "spearman": rho,
                         "mae": float(np.mean(np.abs(a - p))),
                         "coverage": float(np.mean((a >= d["low"].to_numpy() - 1e-9)
                                                   & (a <= d["high"].to_numpy() + 1e-9))),
                         "rerun_coverage": float(np.mean((a >= rlo - 1e-9) & (a <= rhi + 1e-9)))
                         if np.isfinite(rlo).all() else float("nan"), "how": how})
    return pl.DataFrame(rows), detail_frame


def evaluate(table: Any, curves: dict[int, Any] | None = None, base_dir: str | Path | None = None,
             fractions=FRACTIONS, level: float = 0.8, progress: Callable[[str, int, int], None] | None = None,
             items: dict[str, int] | None = None) -> dict:
    """Evaluate both surrogates against their baselines on a trial table.

    Args:
        table: the trial table (polars), with a `curves` column of curves.parquet paths.
        curves: SFT curves by trial number, instead of reading the `curves` paths.
        base_dir: folder that relative `curves` paths are relative to.
        progress: called with (phase, done, total).
        items: evaluation items per score {"id": n, "ood": n} (binomial floor), see `OutcomeModel`.

    Returns:
        dict with `curve` and `outcome` summaries (polars), their `*_detail` frames, `counts` and `notes`.
    """
    notes: list[str] = []
    if curves is None:
        curves, notes = load_curves(table, base_dir)
    names = sorted(curves)
    curve_summary, curve_detail, counts = evaluate_curve_models(
        [curves[k] for k in names], fractions, level,
        progress=(lambda d, t: progress("curves", d, t)) if progress else None)
    outcome_summary, outcome_detail = evaluate_outcome_models(
        table, level, progress=(lambda d, t: progress("outcomes", d, t)) if progress else None, items=items)
    if counts["flat"]:
        notes.append(f"{counts['flat']} flat SFT curve(s) (OOD never changed) have no peak to predict: left out")
    if counts["duplicate"]:
        notes.append(f"{counts['duplicate']} trial(s) share an SFT stage with another: each curve is scored once")
    how = outcome_summary["how"][0] if "how" in outcome_summary.columns and outcome_summary.height else ""
    return {"curve": curve_summary, "curve_detail": curve_detail, "outcome": outcome_summary, "outcome_how": how,
            "outcome_detail": outcome_detail, "counts": counts, "notes": notes}
