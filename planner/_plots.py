"""Report plots (matplotlib, Agg): each takes the trial table and writes one PNG, or returns a note
saying why it was skipped. Call `setup()` before the first plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

STAGE_COLORS = {"start": "#999999", "cpt": "#8c6bb1", "sft": "#2b8cbe", "rl": "#e6550d"}


def setup():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _floats(frame, col: str) -> np.ndarray:
    if col not in frame.columns:
        return np.full(frame.height, np.nan)
    return np.array([np.nan if v is None else float(v) for v in frame[col].to_list()], dtype=float)


def pareto(done, front: list[dict], rec, path: Path) -> Path | str:
    """ID vs OOD of the completed trials, the Pareto front and the recommended point."""
    if done.height == 0:
        return "no completed trials"
    plt = setup()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(_floats(done, "id"), _floats(done, "ood"), s=18, color="#888888", label="completed trials")
    if front:
        f = sorted(front, key=lambda r: r["id"])
        ax.plot([r["id"] for r in f], [r["ood"] for r in f], "o-", color="#2b8cbe", label="Pareto front")
    if rec is not None and rec.ok and rec.predicted.get("id") and rec.predicted["id"].get("mean") is not None:
        pi, po = rec.predicted["id"], rec.predicted["ood"]
        xerr = None if pi.get("low") is None else [[pi["mean"] - pi["low"]], [pi["high"] - pi["mean"]]]
        yerr = None if po.get("low") is None else [[po["mean"] - po["low"]], [po["high"] - po["mean"]]]
        ax.errorbar([pi["mean"]], [po["mean"]], xerr=xerr, yerr=yerr, fmt="*", ms=14, color="#e6550d",
                    label=f"recommended ({rec.objective}{', extrapolating' if rec.extrapolating else ''})")
    ax.set_xlabel("final ID score")
    ax.set_ylabel("final OOD score")
    ax.set_title("Pareto front: ID vs OOD")
    ax.legend(fontsize=8)
    return _save(fig, path)


def curves(picked: list[tuple[str, dict, Any]], path: Path) -> Path | str:
    """ID and OOD through CPT -> SFT -> RL for a few trials; the OOD peak of SFT marked.

    Args:
        picked: (label, row, curves frame) per trial.
    """
    if not picked:
        return "no trial has a readable curves.parquet"
    plt = setup()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    colors = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"]
    for (label, row, c), color in zip(picked, colors):
        x = np.asarray(c["compute"].to_numpy(), dtype=float)
        span = x.max() if len(x) and x.max() > 0 else 1.0
        x = x / span
        for ax, metric in zip(axes, ("id", "ood")):
            ax.plot(x, c[metric].to_numpy(), "-o", ms=3, color=color, label=label)
        st = c["stage"].to_list()
        sft = [i for i, s in enumerate(st) if s == "sft"]
        if sft:
            o = c["ood"].to_numpy()
            k = max([max(sft[0] - 1, 0)] + sft, key=lambda i: o[i])  # SFT's first point is the checkpoint before it
            axes[1].plot([x[k]], [o[k]], marker="^", ms=11, color=color, markeredgecolor="black")
        for i in range(1, len(st)):
            if st[i] != st[i - 1] and st[i - 1] != "start":
                for ax in axes:
                    ax.axvline((x[i - 1] + x[i]) / 2, color=color, lw=0.6, ls=":")
    for ax, name in zip(axes, ("ID", "OOD")):
        ax.set_xlabel("fraction of the trial's compute (CPT -> SFT -> RL; dotted: stage changes)")
        ax.set_ylabel(f"{name} score")
        ax.set_title(f"{name} through the stages" + (" (triangle: SFT's OOD peak)" if name == "OOD" else ""))
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def peak_vs_sft(done, path: Path) -> Path | str:
    """Where SFT's OOD score peaked (fraction of SFT) against the SFT share."""
    x, y = _floats(done, "share_sft"), _floats(done, "ood_peak_fraction")
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return "no trial recorded an SFT OOD peak"
    cens = np.array([bool(v) for v in done["ood_peak_censored"].to_list()]) if "ood_peak_censored" in done.columns \
        else np.zeros(done.height, bool)
    plt = setup()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.scatter(x[ok & ~cens], y[ok & ~cens], color="#2b8cbe", label="peak observed")
    if (ok & cens).any():
        ax.scatter(x[ok & cens], y[ok & cens], marker="^", color="#e6550d", label="censored (still rising at SFT end)")
    ax.set_xlabel("SFT share of the budget")
    ax.set_ylabel("OOD peak location (fraction of SFT)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("OOD peak location vs SFT share")
    ax.legend(fontsize=8)
    return _save(fig, path)


def heatmap(done, path: Path, bins: int = 5) -> Path | str:
    """Mean final OOD per (SFT share bin, RL rank) cell; the count in each cell."""
    x, y = _floats(done, "share_sft"), _floats(done, "rank_rl")
    ood = _floats(done, "ood")
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(ood)
    if not ok.any():
        return "no completed trial with SFT share and RL rank"
    x, y, ood = x[ok], y[ok], ood[ok]
    lo, hi = float(x.min()), float(x.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, min(bins, max(1, len(np.unique(x)))) + 1)
    xi = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    ranks = sorted(np.unique(y))
    grid = np.full((len(ranks), len(edges) - 1), np.nan)
    count = np.zeros_like(grid, dtype=int)
    for a, b, v in zip(xi, y, ood):
        j = ranks.index(b)
        grid[j, a] = v if count[j, a] == 0 else grid[j, a] + v
        count[j, a] += 1
    grid = np.where(count > 0, grid / np.maximum(count, 1), np.nan)
    plt = setup()
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.6 * len(ranks) + 1.8))
    im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="viridis", origin="lower")
    for j in range(grid.shape[0]):
        for i in range(grid.shape[1]):
            if count[j, i]:
                ax.text(i, j, f"{grid[j, i]:.2f}\nn={count[j, i]}", ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks(range(len(edges) - 1), [f"{edges[i]:.2f}-{edges[i + 1]:.2f}" for i in range(len(edges) - 1)],
                  fontsize=7)
    ax.set_yticks(range(len(ranks)), ["full" if r == 0 else f"{r:g}" for r in ranks])
    ax.set_xlabel("SFT share of the budget")
    ax.set_ylabel("RL rank")
    ax.set_title("mean final OOD by allocation")
    fig.colorbar(im, ax=ax, label="mean OOD")
    return _save(fig, path)


def calibration(actual: np.ndarray, mean: np.ndarray, low: np.ndarray, high: np.ndarray, how: str,
                path: Path) -> Path:
    """Held-out predicted vs actual OOD with the 80% intervals."""
    plt = setup()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    inside = (actual >= low) & (actual <= high)
    ax.errorbar(actual, mean, yerr=[mean - low, high - mean], fmt="o", ms=4, alpha=0.7, color="#2b8cbe",
                ecolor="#9ecae1")
    lim = [min(actual.min(), low.min()) - 0.02, max(actual.max(), high.max()) + 0.02]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set_xlabel("actual final OOD")
    ax.set_ylabel("predicted final OOD (80% interval)")
    ax.set_title(f"surrogate calibration ({how}): {inside.mean():.0%} inside")
    return _save(fig, path)


def ledger(frame, unit: str, path: Path) -> Path | str:
    """Spent per stage per trial (stacked bars)."""
    cols = [f"spent_{s}" for s in ("cpt", "sft", "rl")]
    if not any(c in frame.columns for c in cols):
        return "no per-stage spend recorded"
    vals = np.nan_to_num(np.column_stack([_floats(frame, c) for c in cols]))
    keep = vals.sum(1) > 0
    if not keep.any():
        return "no trial spent budget yet"
    numbers = _floats(frame, "number") if "number" in frame.columns else np.arange(frame.height, dtype=float)
    vals, numbers = vals[keep], numbers[keep]
    plt = setup()
    fig, ax = plt.subplots(figsize=(min(12, 3 + 0.25 * len(vals)), 4))
    x = np.arange(len(vals))
    bottom = np.zeros(len(vals))
    for k, s in enumerate(("cpt", "sft", "rl")):
        ax.bar(x, vals[:, k], bottom=bottom, color=STAGE_COLORS[s], label=s.upper(), width=0.85)
        bottom += vals[:, k]
    if len(x) <= 40:
        ax.set_xticks(x, [f"{n:.0f}" for n in numbers], fontsize=7)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"spent ({unit})")
    ax.set_title("budget ledger per stage")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def failures(frame, path: Path) -> Path | str:
    """Failed trials by reason class."""
    if "failure_reason" not in frame.columns:
        return "no failure reasons recorded"
    reasons = [r for r in frame["failure_reason"].to_list() if r]
    if not reasons:
        return "no failed trials"
    counts: dict[str, int] = {}
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    names = sorted(counts, key=lambda k: -counts[k])
    plt = setup()
    fig, ax = plt.subplots(figsize=(6, 0.8 + 0.45 * len(names) + 1))
    ax.barh(names, [counts[n] for n in names], color="#de2d26")
    ax.invert_yaxis()
    ax.set_xlabel("trials")
    ax.set_title("failures by reason")
    return _save(fig, path)
