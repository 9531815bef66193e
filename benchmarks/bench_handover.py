"""`handover: predicted-peak` against fixed SFT/RL shares at equal budget (issue 14), 3 seeds, paired by seed.

    OMP_NUM_THREADS=1 python benchmarks/bench_handover.py [--seeds 0 1 2] [--jobs 2]

The trial is benchmarks/plans/transfer-grid.yaml's (transcriptomics, `transfer` OOD split, 1.6e12
FLOPs, CPT 60%, SFT full fine-tuning at lr 3e-4, RL LoRA 8 with partial-credit rewards). Arms:
- fixed: SFT takes `sft_of_rest` of the 40% CPT leaves, RL the rest, for 8 values of sft_of_rest;
- predicted-peak: SFT may take up to 85% of the rest (the longest fixed arm) and hands the remainder
  to RL once the curve model says the OOD peak has passed; `prior` is the product's default policy
  (no earlier curves), `fitted` learns its prior from the recorded transfer grid's SFT curves of the
  OTHER training seeds (benchmarks/data/transfer_curves.parquet), so a seed never sees its own curves.
Every arm of a seed uses the recorded grid's stage store (runs/transfer-grid/transcriptomics-s<seed>/
stages), so the grid's CPT and the cells it already ran are reused. Prints final OOD and ID per arm
(mean ± SE over seeds), the best fixed arm, each predicted-peak arm's paired difference to it, and the
compute each arm spent per stage. Writes benchmarks/handover_results.md.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import print_machine  # noqa: E402

FIXED = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85)
PEAK_ARMS = ("predicted-peak/prior", "predicted-peak/fitted")


def trial_config(arm: str, seed: int):
    from ptplan import Plan

    plan = Plan.load(ROOT / "benchmarks" / "plans" / "transfer-grid.yaml")
    trial = plan.trial.to_dict()
    trial["allocation"]["sft"]["lr"] = 3.0e-4
    rest = round(1 - trial["allocation"]["shares"]["cpt"], 10)
    sft_of_rest = FIXED[-1] if arm in PEAK_ARMS else float(arm.split("=")[1])
    sft = round(rest * sft_of_rest, 10)
    trial["allocation"]["shares"] = {"cpt": trial["allocation"]["shares"]["cpt"], "sft": sft, "rl": round(rest - sft, 10)}
    if arm in PEAK_ARMS:
        trial["allocation"]["rl"]["handover"] = "predicted-peak"
    return trial | {"seed": seed, "name": f"handover-{arm.replace('/', '-').replace('=', '')}-s{seed}"}


def grid_curves(exclude_seed: int) -> list:
    import polars as pl

    from ptplan.surrogates import sft_curve

    data = ROOT / "benchmarks" / "data"
    grid = pl.read_parquet(data / "transfer_grid.parquet").filter(
        (pl.col("suite") == "transcriptomics") & (pl.col("seed") != exclude_seed) & (pl.col("state") == "COMPLETE"))
    curves = pl.read_parquet(data / "transfer_curves.parquet")
    out, seen = [], set()
    for number, seed, key in grid.select("number", "seed", "key_sft").iter_rows():
        if (seed, key) in seen:
            continue
        seen.add((seed, key))
        c = sft_curve(curves.filter((pl.col("suite") == "transcriptomics") & (pl.col("seed") == seed)
                                    & (pl.col("number") == number)).sort("compute"))
        if c is not None:
            out.append(c)
    return out


def run_arm(job: tuple[str, int, str]) -> dict:
    arm, seed, runs = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ptplan.stages import TrialConfig, TrialFailed, TrialRunner
    from ptplan.surrogates import peak_handover

    out = Path(runs) / f"s{seed}" / arm.replace("/", "_").replace("=", "")
    done = out / "result.json"
    if done.exists() and json.loads(done.read_text()).get("status") == "complete":
        return json.loads(done.read_text()) | {"arm": arm, "seed_": seed}
    config = TrialConfig.from_dict(trial_config(arm, seed))
    policy = None
    if arm in PEAK_ARMS:
        rl = config.allocation.rl
        policy = peak_handover(rl.handover_confidence, curves=grid_curves(seed) if arm.endswith("fitted") else None)
    store = ROOT / "runs" / "transfer-grid" / f"transcriptomics-s{seed}" / "stages"
    try:
        return TrialRunner(config, out, store, handover_policy=policy).run() | {"arm": arm, "seed_": seed}
    except TrialFailed as err:
        return {"arm": arm, "seed_": seed, "status": "failed", "failure": str(err)}


def mse(xs: list[float]) -> str:
    se = statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else float("nan")
    return f"{statistics.mean(xs):.3f} ± {se:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "handover")
    args = ap.parse_args()
    print_machine()
    arms = [f"fixed sft_of_rest={x}" for x in FIXED] + list(PEAK_ARMS)
    jobs = [(arm, s, str(args.runs)) for s in args.seeds for arm in arms]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_arm, jobs))
    by = {(r["arm"], r["seed_"]): r for r in results if r.get("status") == "complete"}
    for r in results:
        if r.get("status") != "complete":
            print(f"{r['arm']} seed {r['seed_']}: {r.get('status')} {r.get('failure', '')}")
    seeds = args.seeds
    lines = ["| arm | seeds | final OOD (mean ± SE) | final ID | SFT share spent | RL share spent | FLOPs spent |",
             "|---|---|---|---|---|---|---|"]

    def col(arm, f):
        return [f(by[(arm, s)]) for s in seeds if (arm, s) in by]

    total = lambda r: r["budget"]["total"]  # noqa: E731
    spent = lambda r, st: r["ledger"]["stages"].get(st, {}).get("spent", {}).get("flops", 0.0) / total(r)  # noqa: E731
    for arm in arms:
        ood = col(arm, lambda r: r["final"]["ood"])
        if not ood:
            continue
        lines.append(f"| {arm} | {len(ood)} | {mse(ood)} | {mse(col(arm, lambda r: r['final']['id']))} | "
                     f"{statistics.mean(col(arm, lambda r: spent(r, 'sft'))):.3f} | "
                     f"{statistics.mean(col(arm, lambda r: spent(r, 'rl'))):.3f} | "
                     f"{statistics.mean(col(arm, lambda r: sum(spent(r, st) for st in ('cpt', 'sft', 'rl')) * total(r))):.3g} |")
    fixed = [a for a in arms if a.startswith("fixed") and all((a, s) in by for s in seeds)]
    best = max(fixed, key=lambda a: statistics.mean(col(a, lambda r: r["final"]["ood"])))
    best_ood = col(best, lambda r: r["final"]["ood"])
    lines.append("")
    lines.append(f"Best fixed arm: {best}, final OOD {mse(best_ood)} (mean ± SE over {len(best_ood)} seeds).")
    for arm in PEAK_ARMS:
        if not all((arm, s) in by for s in seeds):
            continue
        diff = [by[(arm, s)]["final"]["ood"] - by[(best, s)]["final"]["ood"] for s in seeds]
        se_best = statistics.stdev(best_ood) / len(best_ood) ** 0.5
        mean = statistics.mean(col(arm, lambda r: r["final"]["ood"]))
        ok = mean >= statistics.mean(best_ood) - se_best
        lines.append(f"- {arm}: final OOD {mse(col(arm, lambda r: r['final']['ood']))}; paired difference to the best "
                     f"fixed arm {mse(diff)}; at least the best fixed arm's mean minus one SE "
                     f"({statistics.mean(best_ood) - se_best:.3f}): {'yes' if ok else 'no'}. Hand-over at "
                     + ", ".join(f"{spent(by[(arm, s)], 'sft') / (0.4 * FIXED[-1]):.0%}" for s in seeds)
                     + " of the SFT slice it could have used.")
    text = (f"Command: `OMP_NUM_THREADS=1 python benchmarks/bench_handover.py --seeds {' '.join(map(str, seeds))}`\n\n"
            + "\n".join(lines) + "\n")
    (ROOT / "benchmarks" / "handover_results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
