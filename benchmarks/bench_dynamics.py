"""Controlled comparisons of the seed's post-training dynamics on a built-in suite, 3 seeds each (issue 7).

    OMP_NUM_THREADS=1 python benchmarks/bench_dynamics.py [--seeds 0 1 2] [--jobs 2] [--runs runs/dynamics]

Every arm is a real staged trial (stages.run_trial) of the `quick` setting: transcriptomics on the
built-in llama-0.5m, 1.2e12 FLOPs, SFT at lr 1e-4, dense SFT evaluation. Trials of one seed share
their CPT checkpoint through one stage store. Writes benchmarks/dynamics_results.md (table: mean,
standard deviation and range over seeds, and a verdict per effect), benchmarks/dynamics_*.png (curve
plots) and benchmarks/data/dynamics_curves.parquet (every curve point, for `ptplan surrogate eval`).

Effects (issue 7), each judged on per-seed values:
  (a) CPT helps: OOD with CPT minus OOD without CPT at equal SFT compute, at the end of a short SFT
      (10% of the budget) and at the end of a long one (70%); holds when the mean difference exceeds
      the larger of the two arms' seed-to-seed standard deviations.
  (b) During SFT ID rises while OOD peaks before 60% of the SFT slice and ends >= 3 points below
      its peak: per seed, from the long-SFT arm's curve.
  (c) RL from the SFT checkpoint raises OOD: OOD at the end of RL minus OOD at the end of SFT, same
      trial; holds when the mean gain exceeds the seed-to-seed standard deviation of the gain.
  (d) Under one budget the best OOD comes from a short SFT, a larger RL share and different SFT/RL
      ranks: the arm with the best mean final OOD among the split/rank arms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import print_machine  # noqa: E402

BASE = {
    "name": "dynamics",
    "backbone": {"name": "llama-0.5m"},
    "data": {"suite": "transcriptomics", "sizes": {"cpt": 2000, "sft": 2000, "rl": 256, "id_test": 64, "ood_test": 128}},
    "budget": {"total": 1.2e12, "unit": "flops"},
    "allocation": {
        "shares": {"cpt": 0.3, "sft": 0.35, "rl": 0.35},
        "cpt": {"rank": 0, "lr": 3.0e-3, "batch_size": 32},
        "sft": {"rank": 0, "lr": 1.0e-4, "batch_size": 32},
        "rl": {"rank": 4, "lr": 1.0e-4, "batch_size": 4, "generations": 4, "beta": 1.0e-3, "start": "warm",
               "max_completion_length": 24},
    },
    "eval": {"points": {"cpt": 2, "sft": 12, "rl": 4}, "batch_size": 64},
}
SFT_ONLY_BUDGET = 0.7 * 1.2e12  # the long-SFT arm's SFT slice, given to SFT alone (no CPT)

# arm -> (description, changes to BASE)
ARMS: dict[str, tuple[str, dict]] = {
    "cpt+sft": ("CPT 30%, SFT 70% (full FT), no RL", {"allocation.shares": {"cpt": 0.3, "sft": 0.7, "rl": 0.0}}),
    "sft-only": ("no CPT, SFT alone on the same SFT compute", {
        "allocation.shares": {"cpt": 0.0, "sft": 1.0, "rl": 0.0}, "budget.total": SFT_ONLY_BUDGET}),
    "short-sft/full/r4": ("CPT 30%, SFT 10% (full FT), RL 60% (LoRA 4)",
                          {"allocation.shares": {"cpt": 0.3, "sft": 0.1, "rl": 0.6}}),
    "mid-sft/full/r4": ("CPT 30%, SFT 35% (full FT), RL 35% (LoRA 4)", {}),
    "long-sft/full/r4": ("CPT 30%, SFT 60% (full FT), RL 10% (LoRA 4)",
                         {"allocation.shares": {"cpt": 0.3, "sft": 0.6, "rl": 0.1}}),
    "short-sft/r4/r4": ("CPT 30%, SFT 10% (LoRA 4), RL 60% (LoRA 4)",
                        {"allocation.shares": {"cpt": 0.3, "sft": 0.1, "rl": 0.6}, "allocation.sft.rank": 4}),
}
# RL levers for (c), from the mid-sft arm's SFT checkpoint (reused): a larger RL learning rate, a larger
# RL adapter, and a strong KL anchor to the SFT model
RL_ARMS = {
    "mid-sft/full/r4 rl-lr3e-4": ("as mid-sft/full/r4, RL lr 3e-4", {"allocation.rl.lr": 3.0e-4}),
    "mid-sft/full/r16 rl-lr3e-4": ("as mid-sft/full/r4, RL LoRA 16 at lr 3e-4",
                                   {"allocation.rl.lr": 3.0e-4, "allocation.rl.rank": 16}),
    "mid-sft/full/r4 rl-lr1e-3-kl0.2": ("as mid-sft/full/r4, RL lr 1e-3 with KL weight beta 0.2",
                                        {"allocation.rl.lr": 1.0e-3, "allocation.rl.beta": 0.2}),
}
ARMS.update(RL_ARMS)
SPLIT_ARMS = ("short-sft/full/r4", "mid-sft/full/r4", "long-sft/full/r4", "short-sft/r4/r4")


def arm_config(arm: str, seed: int) -> dict:
    from ptplan.stages import apply_overrides

    name = f"dynamics-{arm.replace('/', '_').replace(' ', '_')}-s{seed}"
    changes = {**ARMS[arm][1], "seed": seed, "name": name}
    return apply_overrides(BASE, [f"{path}={json.dumps(value)}" for path, value in changes.items()])

def run_arm(args: tuple[str, int, str]) -> dict:
    arm, seed, runs = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ptplan.stages import TrialConfig, TrialFailed, run_trial

    out = Path(runs) / f"s{seed}" / arm.replace("/", "_").replace(" ", "_")
    store = Path(runs) / f"s{seed}" / "stages"
    if (out / "result.json").exists() and json.loads((out / "result.json").read_text()).get("status") == "complete":
        return json.loads((out / "result.json").read_text()) | {"arm": arm, "seed_": seed, "out": str(out)}
    try:
        result = run_trial(TrialConfig.from_dict(arm_config(arm, seed)), out, store)
    except TrialFailed as err:
        return {"arm": arm, "seed_": seed, "out": str(out), "status": "failed", "failure": str(err)}
    return result | {"arm": arm, "seed_": seed, "out": str(out)}


def curve_of(out: str):
    import polars as pl

    return pl.read_parquet(Path(out) / "curves.parquet")


def sft_stats(curve) -> dict:
    """ID and OOD at the start and end of SFT, the OOD peak and its fraction of the SFT slice."""
    from ptplan.surrogates import peak_of, sft_curve

    sft = sft_curve(curve)
    peak = peak_of(sft)
    return {"id_start": sft["id"][0], "id_end": sft["id"][-1], "ood_start": sft["ood"][0], "ood_end": sft["ood"][-1],
            "ood_peak": peak["value"], "peak_fraction": peak["fraction"]}


def ood_at_sft_compute(curve, sft_compute: float) -> float:
    """OOD at the SFT evaluation nearest to `sft_compute` FLOPs into SFT."""
    from ptplan.surrogates import sft_curve

    sft = sft_curve(curve)
    into = (sft["compute"] - sft["compute"][0]).to_list()[1:]  # SFT's own evaluations, not the point before
    i = min(range(len(into)), key=lambda j: abs(into[j] - sft_compute))
    return sft["ood"][i + 1]


def msd(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.3f} ± {sd(xs):.3f} [{min(xs):.3f}, {max(xs):.3f}]"


def sd(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def analyse(results: list[dict], seeds: list[int], out_dir: Path) -> str:
    by = {(r["arm"], r["seed_"]): r for r in results if r.get("status") == "complete"}
    curves = {k: curve_of(r["out"]) for k, r in by.items()}
    lines = ["| effect | measure | value (mean ± sd [min, max] over seeds) | holds |", "|---|---|---|---|"]

    # (a) CPT helps at equal SFT compute
    for label, frac in (("short SFT (10% of budget)", 0.1), ("long SFT (70%)", 0.7)):
        c = frac * 1.2e12
        with_cpt = [ood_at_sft_compute(curves[("cpt+sft", s)], c) for s in seeds if ("cpt+sft", s) in curves]
        without = [ood_at_sft_compute(curves[("sft-only", s)], c) for s in seeds if ("sft-only", s) in curves]
        if with_cpt and without:
            diff = statistics.mean(with_cpt) - statistics.mean(without)
            holds = diff > max(sd(with_cpt), sd(without))
            lines.append(f"| (a) CPT helps, {label} | OOD with CPT | {msd(with_cpt)} | |")
            lines.append(f"| | OOD without CPT | {msd(without)} | |")
            lines.append(f"| | difference of means | {diff:+.3f} (spread {max(sd(with_cpt), sd(without)):.3f}) "
                         f"| {'yes' if holds else 'no'} |")

    # (b) ID rises while OOD peaks early and falls
    st = [sft_stats(curves[("cpt+sft", s)]) for s in seeds if ("cpt+sft", s) in curves]
    if st:
        rise = [x["id_end"] - x["id_start"] for x in st]
        frac = [x["peak_fraction"] for x in st]
        drop = [x["ood_peak"] - x["ood_end"] for x in st]
        ok = all(r > 0 for r in rise) and all(f < 0.6 for f in frac) and all(d >= 0.03 for d in drop)
        lines.append(f"| (b) SFT dynamics (CPT 30% + SFT 70%) | ID end - ID start of SFT | {msd(rise)} | |")
        lines.append(f"| | OOD peak fraction of the SFT slice | {msd(frac)} | |")
        lines.append(f"| | OOD peak | {msd([x['ood_peak'] for x in st])} | |")
        lines.append(f"| | OOD peak - OOD end | {msd(drop)} | {'yes' if ok else 'no'} (every seed: rise > 0, "
                     f"peak < 60%, drop >= 0.03) |")

    # (c) RL raises OOD from the SFT checkpoint
    for arm in (*SPLIT_ARMS, *RL_ARMS):
        gains = []
        for s in seeds:
            if (arm, s) not in curves:
                continue
            cv = curves[(arm, s)]
            sft_end = cv.filter(cv["stage"] == "sft")["ood"][-1]
            gains.append(cv["ood"][-1] - sft_end)
        if gains:
            holds = statistics.mean(gains) > sd(gains) and statistics.mean(gains) > 0
            lines.append(f"| (c) RL after SFT, {arm} | OOD end of RL - OOD end of SFT | {msd(gains)} "
                         f"| {'yes' if holds else 'no'} |")

    # (d) which split/rank arm gives the best final OOD
    finals = {arm: [by[(arm, s)]["final"]["ood"] for s in seeds if (arm, s) in by] for arm in SPLIT_ARMS}
    finals = {a: v for a, v in finals.items() if v}
    if finals:
        best = max(finals, key=lambda a: statistics.mean(finals[a]))
        for arm, v in finals.items():
            ids = [by[(arm, s)]["final"]["id"] for s in seeds if (arm, s) in by]
            lines.append(f"| (d) {arm}: {ARMS[arm][0]} | final OOD (final ID {statistics.mean(ids):.3f}) | {msd(v)} "
                         f"| {'best' if arm == best else ''} |")
        runner = sorted((statistics.mean(v) for v in finals.values()), reverse=True)
        margin = runner[0] - runner[1] if len(runner) > 1 else float("nan")
        split, sft_rank, rl_rank = best.split("/")
        holds = split == "short-sft" and sft_rank != rl_rank and margin > sd(finals[best])
        lines.append(f"| (d) verdict | best arm {best}, margin over runner-up {margin:+.3f} "
                     f"(spread {sd(finals[best]):.3f}) | | {'yes' if holds else 'no'} |")
    plots(curves, seeds, out_dir)
    return "\n".join(lines)


def plots(curves: dict, seeds: list[int], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, arm in zip(axes[:2], ("cpt+sft", "sft-only"), strict=True):
        for s in seeds:
            if (arm, s) not in curves:
                continue
            cv = curves[(arm, s)]
            x = [c / 1.2e12 for c in cv["compute"].to_list()]
            ax.plot(x, cv["ood"].to_list(), color="C1", alpha=0.8, label="OOD" if s == seeds[0] else None)
            ax.plot(x, cv["id"].to_list(), color="C0", alpha=0.8, label="ID" if s == seeds[0] else None)
        ax.set_title(f"{arm} ({len(seeds)} seeds)")
        ax.set_xlabel("compute (fraction of 1.2e12 FLOPs)")
        ax.set_ylabel("score")
        ax.legend()
    ax = axes[2]
    for i, arm in enumerate(SPLIT_ARMS):
        for s in seeds:
            if (arm, s) in curves:
                cv = curves[(arm, s)]
                ax.plot([c / 1.2e12 for c in cv["compute"].to_list()], cv["ood"].to_list(), color=f"C{i}",
                        alpha=0.7, label=arm if s == seeds[0] else None)
    ax.set_title("OOD under one budget: SFT/RL splits and ranks")
    ax.set_xlabel("compute (fraction of budget)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "dynamics_curves.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "dynamics")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = ap.parse_args()
    print_machine()
    # one CPT per seed first (the arms of a seed share it), then the rest
    jobs = [(arm, s, str(args.runs)) for arm in args.arms for s in args.seeds]
    jobs.sort(key=lambda j: (j[0] != "cpt+sft", j[1]))
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_arm, jobs))
    for r in results:
        if r.get("status") != "complete":
            print(f"{r['arm']} seed {r['seed_']}: {r.get('status')} {r.get('failure', '')}")
    import polars as pl

    frames = [curve_of(r["out"]).with_columns(pl.lit(r["arm"]).alias("arm"), pl.lit(r["seed_"]).alias("seed"))
              for r in results if r.get("status") == "complete"]
    (args.out / "data").mkdir(parents=True, exist_ok=True)
    pl.concat(frames, how="diagonal_relaxed").write_parquet(args.out / "data" / "dynamics_curves.parquet")
    table = analyse(results, args.seeds, args.out)
    header = (f"Command: `OMP_NUM_THREADS=1 python benchmarks/bench_dynamics.py --seeds {' '.join(map(str, args.seeds))}`"
              f"\n\nArms: " + "; ".join(f"`{a}` = {ARMS[a][0]}" for a in args.arms) + "\n\n")
    (args.out / "dynamics_results.md").write_text(header + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
