"""SYNTHETIC curves and trial tables, FOR UNIT TESTS AND BENCHMARK TIMING ONLY.

Their peaks are known by construction, which is what a unit test needs. They say nothing about
how real training behaves and are never a substitute for the recorded real curves under
benchmarks/data/: accuracy figures for the surrogates come from real trials only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

KINDS = ("rise-fall", "still-rising", "flat", "noisy")


def synthetic_curve(kind: str = "rise-fall", *, peak: float = 0.35, n_points: int = 21, start: float = 0.05,
                    height: float = 0.4, sharpness: float = 2.0, noise: float = 0.05, seed=None):
    """One synthetic SFT curve (UNIT TESTS ONLY) and its known peak.

    rise-fall: start + height * (x/peak)^k * exp(k (1 - x/peak)), peak exactly at `peak`;
    still-rising: saturating rise, the recorded peak is the last point (censored);
    flat: constant; noisy: rise-fall plus Gaussian noise of sd `noise`, quantized to 1/64.

    Returns:
        (curve, truth): curve is an array (n_points, 4) of fraction, ood, id, loss; truth holds the
        recorded peak (`fraction`, `value`, `censored`) and the smooth one (`smooth_peak`).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind {kind!r} (known: {', '.join(KINDS)})")
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, n_points)
    if kind in ("rise-fall", "noisy"):
        r = x / peak
        ood = start + height * r ** sharpness * np.exp(sharpness * (1.0 - r))
        smooth = peak
    elif kind == "still-rising":
        ood = start + height * (1.0 - np.exp(-x / max(peak, 1e-3)))
        smooth = 1.0
    else:
        ood = np.full_like(x, start)
        smooth = 0.0
    if kind == "noisy":
        ood = np.round(np.clip(ood + noise * rng.standard_normal(n_points), 0.0, 1.0) * 64) / 64
    ood = np.clip(ood, 0.0, 1.0)
    ids = 0.05 + 0.75 * (1.0 - np.exp(-x / 0.3))
    loss = 0.5 + 2.0 * np.exp(-x / 0.4)
    loss[0] = np.nan  # the point before SFT carries the previous stage's loss, which is dropped
    i = int(np.argmax(ood))
    truth = {"fraction": float(x[i]), "value": float(ood[i]), "smooth_peak": float(smooth),
             "censored": bool(i == n_points - 1 and ood[-1] > ood[-2])}
    return np.column_stack([x, ood, ids, loss]), truth


def synthetic_curves(n: int, *, seed: int = 0, kind: str = "rise-fall", peaks=(0.15, 0.6), **kw):
    """`n` synthetic curves (UNIT TESTS ONLY) with peaks drawn uniformly from `peaks`."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        peak = float(rng.uniform(*peaks))
        height = float(rng.uniform(0.25, 0.5))
        out.append(synthetic_curve(kind, peak=peak, height=height, seed=int(rng.integers(2**31)), **kw))
    return out


def _truth_outcome(share_sft, share_rl, rank_sft, lr_sft, log_budget, start_warm):
    """The known response surface of synthetic tables: brief SFT, more RL, moderate SFT rank win."""
    cap = np.where(rank_sft == 0, 12.0, np.log2(np.maximum(rank_sft, 1)))
    ood = (0.25 + 0.35 * share_rl - 0.5 * (share_sft - 0.2) ** 2 - 0.01 * (cap - 6.0) ** 2
           + 0.04 * (log_budget - 11.0) + 0.03 * start_warm)
    idv = 0.3 + 0.4 * share_sft + 0.02 * cap + 0.05 * (log_budget - 11.0) - 0.05 * np.abs(np.log10(lr_sft) + 2.7)
    peak = np.clip(0.15 + 0.25 * (np.log10(3e-3) - np.log10(lr_sft)) + 0.01 * cap, 0.05, 1.0)
    return np.clip(idv, 0, 1), np.clip(ood, 0, 1), peak


def synthetic_table(n_trials: int = 60, *, seed: int = 0, noise: float = 0.02, curves_dir=None,
                    n_points: int = 11, failed: int = 0):
    """A synthetic trial table (UNIT TESTS AND TIMING ONLY) with a known response surface.

    Columns follow studies/_table.py. With `curves_dir`, each trial also gets a curves.parquet
    in the recorded schema (start, CPT, SFT, RL points) and the `curves` column points at it.
    """
    import polars as pl

    rng = np.random.default_rng(seed)
    n = n_trials + failed
    cpt = rng.uniform(0.1, 0.5, n)
    sor = rng.uniform(0.2, 0.8, n)
    share_sft, share_rl = (1 - cpt) * sor, (1 - cpt) * (1 - sor)
    rank_sft = rng.choice([0, 16, 64, 256], n)
    rank_rl = rng.choice([4, 16, 64], n)
    lr = 10 ** rng.uniform(-4, math.log10(3e-3), n)
    start = rng.choice(["warm", "cold"], n)
    budget = rng.choice([1e11, 2e11, 4e11], n)
    params = rng.choice([5e5, 2e6], n)
    idv, ood, peak = _truth_outcome(share_sft, share_rl, rank_sft, lr, np.log10(budget), (start == "warm") * 1.0)
    idv = np.clip(idv + noise * rng.standard_normal(n), 0, 1)
    ood = np.clip(ood + noise * rng.standard_normal(n), 0, 1)
    state = np.array(["COMPLETE"] * n_trials + ["FAIL"] * failed)
    curves, peak_frac, peak_val, censored = [], [], [], []
    for i in range(n):
        kind = "still-rising" if peak[i] >= 1.0 else "noisy"
        curve, truth = synthetic_curve(kind, peak=float(peak[i]), n_points=n_points, noise=0.02,
                                       height=float(0.2 + 0.2 * ood[i]), seed=int(rng.integers(2**31)))
        peak_frac.append(truth["fraction"])
        peak_val.append(truth["value"])
        censored.append(truth["censored"])
        if curves_dir is None:
            curves.append(None)
            continue
        path = Path(curves_dir) / f"trial-{i}" / "curves.parquet"
        _write_curves(path, curve, budget[i], cpt[i], share_sft[i], idv[i], ood[i])
        curves.append(str(path))
    ok = state == "COMPLETE"
    return pl.DataFrame({
        "number": np.arange(n), "state": state,
        "id": np.where(ok, idv, np.nan), "ood": np.where(ok, ood, np.nan),
        "share_cpt": cpt, "share_sft": share_sft, "share_rl": share_rl,
        "rank_cpt": np.zeros(n, dtype=int), "rank_sft": rank_sft, "rank_rl": rank_rl,
        "param.allocation.sft.lr": lr, "param.allocation.rl.start": start,
        "budget_unit": ["flops"] * n, "budget_total": budget, "parameters": params,
        "spent": budget, "spent_sft": budget * share_sft,
        "ood_peak_fraction": peak_frac, "ood_peak_value": peak_val, "ood_peak_censored": censored,
        "failure_reason": [None if s else "oom" for s in ok], "curves": curves,
    }).with_columns(pl.col("id").fill_nan(None), pl.col("ood").fill_nan(None))


def _write_curves(path: Path, sft: np.ndarray, budget: float, cpt: float, share_sft: float, idv: float,
                  ood: float) -> None:
    import polars as pl

    path.parent.mkdir(parents=True, exist_ok=True)
    c0, span = budget * cpt, budget * share_sft
    rows = [("start", 0, 0.0, 0.0, 0.0, None), ("cpt", 10, c0 / 2, 0.0, 0.0, 2.5),
            ("cpt", 20, c0, sft[0, 2], sft[0, 1], 2.0)]
    rows += [("sft", 5 * k, c0 + span * x, i, o, lo) for k, (x, o, i, lo) in enumerate(sft[1:], 1)]
    rows += [("rl", 4, c0 + span + (budget - c0 - span) / 2, idv, ood, None), ("rl", 8, budget, idv, ood, None)]
    pl.DataFrame({
        "stage": [r[0] for r in rows], "step": [r[1] for r in rows], "compute": [float(r[2]) for r in rows],
        "flops": [float(r[2]) for r in rows], "tokens": [float(r[2]) / 1e6 for r in rows],
        "id": [float(r[3]) for r in rows], "ood": [float(r[4]) for r in rows],
        "loss": [None if r[5] is None or np.isnan(r[5]) else float(r[5]) for r in rows],
        "reward": [None] * len(rows), "id_tasks": [json.dumps({})] * len(rows),
        "ood_tasks": [json.dumps({})] * len(rows),
    }, schema_overrides={"loss": pl.Float64, "reward": pl.Float64}).write_parquet(path)
