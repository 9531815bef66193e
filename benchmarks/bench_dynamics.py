"""Controlled comparisons of the seed's post-training dynamics on a built-in suite, 3 seeds each (issues 7, 14).

    OMP_NUM_THREADS=1 python benchmarks/bench_dynamics.py [--split transfer|recall] [--seeds 0 1 2] [--jobs 2]

Every arm is a real staged trial (stages.run_trial) on transcriptomics with the built-in llama-0.5m.
`--split transfer` (default, issue 14): the trial of benchmarks/plans/transfer-grid.yaml (the
`transfer` OOD split, 1.6e12 FLOPs, CPT 60%, SFT full fine-tuning at lr 3e-4, RL LoRA 8 with
partial-credit rewards); the arms of a seed share the stage store of the recorded transfer grid
(runs/transfer-grid/transcriptomics-s<seed>/stages), so the grid's CPT, SFT and RL checkpoints are
reused. `--split recall` (issue 7): the earlier `quick`-like setting (1.2e12 FLOPs, CPT 30%, SFT lr
1e-4, the `recall` split). Writes benchmarks/dynamics_results[_recall].md, dynamics_curves[_recall].png
and benchmarks/data/dynamics_curves[_recall].parquet.

Effects, each judged on per-seed values, paired by seed (mean, standard error = sd / sqrt(seeds)):
  (a) CPT helps: OOD with CPT minus OOD without CPT at equal SFT compute, at the end of a short SFT
      and of a long one; holds when the mean paired difference exceeds 2 SE.
  (b) During SFT ID rises while OOD rises above its SFT-start score and the chance level and then
      falls (each by more than 2 binomial SE, as benchmarks/bench_peaks.py counts it), in the
      long-SFT arm; holds when every seed shows it.
  (c) RL from the SFT checkpoint raises OOD: OOD at the end of RL minus OOD at the end of SFT, same
      trial; holds when the mean gain exceeds 2 SE.
  (d) Under one budget the best OOD comes from a short SFT, a larger RL share and different SFT/RL
      ranks: the split/rank arm with the best mean final OOD, and its paired margin over the runner-up
      (holds when it is such an arm and the margin exceeds 2 SE).
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

RECALL_BASE = {
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

# arm -> (description, changes to the base trial)
RECALL_ARMS: dict[str, tuple[str, dict]] = {
    "cpt+sft": ("CPT 30%, SFT 70% (full FT), no RL", {"allocation.shares": {"cpt": 0.3, "sft": 0.7, "rl": 0.0}}),
    "sft-only": ("no CPT, SFT alone on the same SFT compute", {
        "allocation.shares": {"cpt": 0.0, "sft": 1.0, "rl": 0.0}, "budget.total": 0.7 * 1.2e12}),
    "short-sft/full/r4": ("CPT 30%, SFT 10% (full FT), RL 60% (LoRA 4)",
                          {"allocation.shares": {"cpt": 0.3, "sft": 0.1, "rl": 0.6}}),
    "mid-sft/full/r4": ("CPT 30%, SFT 35% (full FT), RL 35% (LoRA 4)", {}),
    "long-sft/full/r4": ("CPT 30%, SFT 60% (full FT), RL 10% (LoRA 4)",
                         {"allocation.shares": {"cpt": 0.3, "sft": 0.6, "rl": 0.1}}),
    "short-sft/r4/r4": ("CPT 30%, SFT 10% (LoRA 4), RL 60% (LoRA 4)",
                        {"allocation.shares": {"cpt": 0.3, "sft": 0.1, "rl": 0.6}, "allocation.sft.rank": 4}),
    # RL levers for (c), from the mid-sft arm's SFT checkpoint (reused): a larger RL learning rate, a larger
    # RL adapter, and a strong KL anchor to the SFT model
    "mid-sft/full/r4 rl-lr3e-4": ("as mid-sft/full/r4, RL lr 3e-4", {"allocation.rl.lr": 3.0e-4}),
    "mid-sft/full/r16 rl-lr3e-4": ("as mid-sft/full/r4, RL LoRA 16 at lr 3e-4",
                                   {"allocation.rl.lr": 3.0e-4, "allocation.rl.rank": 16}),
    "mid-sft/full/r4 rl-lr1e-3-kl0.2": ("as mid-sft/full/r4, RL lr 1e-3 with KL weight beta 0.2",
                                        {"allocation.rl.lr": 1.0e-3, "allocation.rl.beta": 0.2}),
}

# The transfer arms: mid-sft and long-sft are cells of the recorded transfer grid (sft_of_rest 0.5 and
# 0.85 at SFT lr 3e-4, full fine-tuning), so with the grid's stage store they cost no training.
TRANSFER_ARMS: dict[str, tuple[str, dict]] = {
    "cpt+sft": ("CPT 60%, SFT 40% (full FT), no RL", {"allocation.shares": {"cpt": 0.6, "sft": 0.4, "rl": 0.0}}),
    "sft-only": ("no CPT, SFT alone on the same SFT compute", {
        "allocation.shares": {"cpt": 0.0, "sft": 1.0, "rl": 0.0}, "budget.total": 0.4 * 1.6e12}),
    "short-sft/full/r8": ("CPT 60%, SFT 4% (full FT), RL 36% (LoRA 8)",
                          {"allocation.shares": {"cpt": 0.6, "sft": 0.04, "rl": 0.36}}),
    "mid-sft/full/r8": ("CPT 60%, SFT 20% (full FT), RL 20% (LoRA 8)", {}),
    "long-sft/full/r8": ("CPT 60%, SFT 34% (full FT), RL 6% (LoRA 8)",
                         {"allocation.shares": {"cpt": 0.6, "sft": 0.34, "rl": 0.06}}),
    "short-sft/r8/r16": ("CPT 60%, SFT 4% (LoRA 8), RL 36% (LoRA 16)",
                         {"allocation.shares": {"cpt": 0.6, "sft": 0.04, "rl": 0.36}, "allocation.sft.rank": 8,
                          "allocation.rl.rank": 16}),
    "mid-sft/full/r8 rl-lr3e-4": ("as mid-sft/full/r8, RL lr 3e-4", {"allocation.rl.lr": 3.0e-4}),
    "mid-sft/full/r8 exact-reward": ("as mid-sft/full/r8, RL rewards exact match only (no partial credit)",
                                     {"allocation.rl.reward": "exact"}),
}


def transfer_base() -> dict:
    from ptplan import Plan

    trial = Plan.load(ROOT / "benchmarks" / "plans" / "transfer-grid.yaml").trial.to_dict()
    trial["allocation"]["sft"]["lr"] = 3.0e-4
    return trial | {"name": "dynamics"}


# split -> (base trial, arms, budget, split/rank arms of (d), the long-SFT arm of (b), SFT compute of (a))
SPLITS = {
    "recall": (lambda: RECALL_BASE, RECALL_ARMS, 1.2e12, ("short-sft/full/r4", "mid-sft/full/r4", "long-sft/full/r4",
                                                          "short-sft/r4/r4"), (0.1 * 1.2e12, 0.7 * 1.2e12)),
    "transfer": (transfer_base, TRANSFER_ARMS, 1.6e12, ("short-sft/full/r8", "mid-sft/full/r8", "long-sft/full/r8",
                                                        "short-sft/r8/r16"), (0.04 * 1.6e12, 0.34 * 1.6e12)),
}
SPLIT = "transfer"  # set by main(); worker processes get it through run_arm's arguments


def arm_config(split: str, arm: str, seed: int) -> dict:
    from ptplan.stages import apply_overrides

    base, arms = SPLITS[split][0](), SPLITS[split][1]
    name = f"dynamics-{arm.replace('/', '_').replace(' ', '_')}-s{seed}"
    changes = {**arms[arm][1], "seed": seed, "name": name}
    return apply_overrides(base, [f"{path}={json.dumps(value)}" for path, value in changes.items()])


def run_arm(args: tuple[str, str, int, str]) -> dict:
    split, arm, seed, runs = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ptplan.stages import TrialConfig, TrialFailed, run_trial

    out = Path(runs) / f"s{seed}" / arm.replace("/", "_").replace(" ", "_")
    store = (ROOT / "runs" / "transfer-grid" / f"transcriptomics-s{seed}" / "stages" if split == "transfer"
             else Path(runs) / f"s{seed}" / "stages")
    if (out / "result.json").exists() and json.loads((out / "result.json").read_text()).get("status") == "complete":
        return json.loads((out / "result.json").read_text()) | {"arm": arm, "seed_": seed, "out": str(out)}
    try:
        result = run_trial(TrialConfig.from_dict(arm_config(split, arm, seed)), out, store)
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


def paired(xs: list[float]) -> tuple[float, float, str]:
    """Mean, standard error and a 'mean ± SE (n)' text of per-seed paired differences."""
    se = sd(xs) / len(xs) ** 0.5 if xs else float("nan")
    return statistics.mean(xs), se, f"{statistics.mean(xs):+.3f} ± {se:.3f} SE (n = {len(xs)} seeds; {', '.join(f'{x:+.3f}' for x in xs)})"


def rises_and_falls(curve) -> tuple[bool, bool, float, float]:
    """(rise, fall, peak fraction, ID gain) of a trial's SFT OOD curve, 2 binomial SE (bench_peaks.py)."""
    from bench_peaks import rise_and_fall
    from ptplan.stages.record import sft_slice
    from ptplan.surrogates import sft_curve

    c = sft_curve(curve)
    n = [float(r.get("ood_n") or 128) for r in sft_slice(curve.to_dicts())]
    st = rise_and_fall(c["ood"].to_list(), n, CHANCE)
    return st["rise"], st["fall"], c["fraction"][st["index"]], c["id"][-1] - c["id"][0]


CHANCE = [0.0, 0.0]  # (chance, best-constant) levels of the OOD items, set by main()


def analyse(results: list[dict], seeds: list[int], out_dir: Path, split: str) -> str:
    _, arms, budget, split_arms, (short_c, long_c) = SPLITS[split]
    by = {(r["arm"], r["seed_"]): r for r in results if r.get("status") == "complete"}
    curves = {k: curve_of(r["out"]) for k, r in by.items()}
    lines = ["| effect | measure | per-seed values: mean ± sd [min, max] | paired effect ± SE (n) | holds |",
             "|---|---|---|---|---|"]

    # (a) CPT helps at equal SFT compute
    for label, c in ((f"short SFT ({short_c / budget:.0%} of budget)", short_c), (f"long SFT ({long_c / budget:.0%})", long_c)):
        both = [s for s in seeds if ("cpt+sft", s) in curves and ("sft-only", s) in curves]
        if both:
            with_cpt = [ood_at_sft_compute(curves[("cpt+sft", s)], c) for s in both]
            without = [ood_at_sft_compute(curves[("sft-only", s)], c) for s in both]
            mean, se, text = paired([a - b for a, b in zip(with_cpt, without)])
            lines.append(f"| (a) CPT helps, {label} | OOD with CPT / without | {msd(with_cpt)} / {msd(without)} "
                         f"| {text} | {'yes' if mean > 2 * se else 'no'} |")

    # (b) ID rises while OOD rises above the SFT start and chance, then falls (long-SFT arm)
    long_arm = "cpt+sft"
    st = [rises_and_falls(curves[(long_arm, s)]) for s in seeds if (long_arm, s) in curves]
    if st:
        ok = all(r and f and g > 0 for r, f, _, g in st)
        lines.append(f"| (b) SFT dynamics ({arms[long_arm][0]}) | ID gain over SFT | {msd([x[3] for x in st])} | "
                     f"| |")
        lines.append(f"| | OOD peak fraction of the SFT slice | {msd([x[2] for x in st])} | | |")
        lines.append(f"| | seeds where OOD rises > 2 SE (and above chance {CHANCE[0]:.3f}) / falls > 2 SE after "
                     f"| {sum(x[0] for x in st)} / {sum(x[1] for x in st)} of {len(st)} | | "
                     f"{'yes' if ok else 'no'} |")

    # (c) RL raises OOD from the SFT checkpoint
    for arm in [a for a in arms if a not in ("cpt+sft", "sft-only")]:
        gains = []
        for s in seeds:
            if (arm, s) in curves:
                cv = curves[(arm, s)]
                gains.append(cv["ood"][-1] - cv.filter(cv["stage"] == "sft")["ood"][-1])
        if gains:
            mean, se, text = paired(gains)
            lines.append(f"| (c) RL after SFT, {arm} | OOD end of RL - end of SFT | {msd(gains)} | {text} "
                         f"| {'yes' if mean > 2 * se and mean > 0 else 'no'} |")

    # (d) which split/rank arm gives the best final OOD, and its paired margin over the runner-up
    finals = {arm: {s: by[(arm, s)]["final"]["ood"] for s in seeds if (arm, s) in by} for arm in split_arms}
    finals = {a: v for a, v in finals.items() if v}
    if len(finals) > 1:
        order = sorted(finals, key=lambda a: statistics.mean(finals[a].values()), reverse=True)
        best, runner = order[0], order[1]
        for arm in order:
            ids = [by[(arm, s)]["final"]["id"] for s in finals[arm]]
            lines.append(f"| (d) {arm}: {arms[arm][0]} | final OOD (final ID {statistics.mean(ids):.3f}) "
                         f"| {msd(list(finals[arm].values()))} | | {'best' if arm == best else ''} |")
        common = [s for s in finals[best] if s in finals[runner]]
        mean, se, text = paired([finals[best][s] - finals[runner][s] for s in common])
        length, sft_rank, rl_rank = best.split("/")
        holds = length == "short-sft" and sft_rank != rl_rank and mean > 2 * se
        lines.append(f"| (d) verdict | best arm {best} minus runner-up {runner} | | {text} | {'yes' if holds else 'no'} |")
    plots(curves, seeds, out_dir, split)
    return "\n".join(lines)


def plots(curves: dict, seeds: list[int], out_dir: Path, split: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, _, budget, split_arms, _ = SPLITS[split]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, arm in zip(axes[:2], ("cpt+sft", "sft-only"), strict=True):
        for s in seeds:
            if (arm, s) not in curves:
                continue
            cv = curves[(arm, s)]
            x = [c / budget for c in cv["compute"].to_list()]
            ax.plot(x, cv["ood"].to_list(), color="C1", alpha=0.8, label="OOD" if s == seeds[0] else None)
            ax.plot(x, cv["id"].to_list(), color="C0", alpha=0.8, label="ID" if s == seeds[0] else None)
        ax.set_title(f"{arm} ({len(seeds)} seeds)")
        ax.set_xlabel(f"compute (fraction of {budget:.2g} FLOPs)")
        ax.set_ylabel("score")
        ax.legend()
    ax = axes[2]
    for i, arm in enumerate(split_arms):
        for s in seeds:
            if (arm, s) in curves:
                cv = curves[(arm, s)]
                ax.plot([c / budget for c in cv["compute"].to_list()], cv["ood"].to_list(), color=f"C{i}",
                        alpha=0.7, label=arm if s == seeds[0] else None)
    ax.set_title("OOD under one budget: SFT/RL splits and ranks")
    ax.set_xlabel("compute (fraction of budget)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / f"dynamics_curves{'' if split == 'transfer' else '_recall'}.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=sorted(SPLITS), default="transfer")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--runs", type=Path, help="trial folders (default runs/dynamics[-recall])")
    ap.add_argument("--arms", nargs="+", help="a subset of the split's arms")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = ap.parse_args()
    arms = SPLITS[args.split][1]
    bad = sorted(set(args.arms or []) - set(arms))
    if bad:
        ap.error(f"unknown arm(s) {bad} of split {args.split}: {', '.join(arms)}")
    suffix = "" if args.split == "transfer" else "_recall"
    runs = args.runs or ROOT / "runs" / f"dynamics{'' if args.split == 'transfer' else '-recall'}"
    print_machine()
    from ptplan.stages import TrialConfig, build_suite
    from ptplan.stages._tasks._base import chance_level, majority_level

    data = TrialConfig.from_dict(SPLITS[args.split][0]()).data
    built = build_suite(data.suite, data.seed, data.sizes, data.ood)
    CHANCE[:] = [chance_level(built), majority_level(built.ood_test)]
    # one CPT per seed first (the arms of a seed share it), then the rest
    jobs = [(args.split, arm, s, str(runs)) for arm in (args.arms or list(arms)) for s in args.seeds]
    jobs.sort(key=lambda j: (j[1] != "cpt+sft", j[2]))
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_arm, jobs))
    for r in results:
        if r.get("status") != "complete":
            print(f"{r['arm']} seed {r['seed_']}: {r.get('status')} {r.get('failure', '')}")
    import polars as pl

    frames = [curve_of(r["out"]).with_columns(pl.lit(r["arm"]).alias("arm"), pl.lit(r["seed_"]).alias("seed"))
              for r in results if r.get("status") == "complete"]
    (args.out / "data").mkdir(parents=True, exist_ok=True)
    pl.concat(frames, how="diagonal_relaxed").write_parquet(args.out / "data" / f"dynamics_curves{suffix}.parquet")
    table = analyse(results, args.seeds, args.out, args.split)
    header = (f"Command: `OMP_NUM_THREADS=1 python benchmarks/bench_dynamics.py --split {args.split} --seeds "
              f"{' '.join(map(str, args.seeds))}`\n\nArms: "
              + "; ".join(f"`{a}` = {arms[a][0]}" for a in (args.arms or arms)) + "\n\n")
    (args.out / f"dynamics_results{suffix}.md").write_text(header + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
