"""Search efficiency (issue 6): replay search strategies against the recorded grid of real trials.

    OMP_NUM_THREADS=1 python benchmarks/bench_search.py [--reps 30] [--data benchmarks/data] [--out benchmarks]

Each strategy runs `--reps` times (seeds 0..reps-1) against each suite's seed-0 grid
(benchmarks/data/search_grid.parquet, recorded by benchmarks/record_search_grid.py). A proposal is
answered by the nearest recorded cell and charged the compute that cell recorded; strategies see
only what they paid for (ptplan.testing.replay). Reported: compute until the best found is within 1
point of the grid's best OOD (and weighted 0.5 ID + 0.5 OOD) cell, as % of the full grid's compute
(median [IQR]; a replay that never gets there counts as the cap, `--cap` x the grid), and the
normalized hypervolume of the found (ID, OOD) front at 10/30/50% of the grid's compute. Writes
search_results.md, search_compute.png and search_hypervolume.png under --out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch load: one thread per replay process

from _common import print_machine  # noqa: E402
from ptplan.testing.replay import (STRATEGIES, TOLERANCE, GridOracle, grid_truth, replay, score,  # noqa: E402
                             summarize, synthetic_grid, table_params)

ROOT = Path(__file__).resolve().parents[1]

PLAN = ROOT / "benchmarks" / "plans" / "search-grid.yaml"
# The replayed plan is the grid plan searched as `ptplan run` would search it: the surrogate sampler
# (the `ptplan` strategy) over the same space, multi-objective with the dominated pruner.
PLAN_SETS = ["study.sampler=surrogate", "study.objective.pruner=dominated"]
HV_AT = (0.1, 0.3, 0.5)
CURVE_AT = tuple(i / 50 for i in range(51))  # fractions of the grid's compute for the hypervolume plot

_STATE: dict = {}

ABOUT = {
    "ptplan": "ptplan's surrogate sampler (expected hypervolume improvement under the outcome model) with the "
              "dominated pruner and checkpoint reuse, multi-objective (ID, OOD)",
    "ptplan-noreuse": "the same without checkpoint reuse (ablation)",
    "surrogate": "the surrogate sampler alone: no pruning, no reuse (ablation)",
    "random": "Optuna's RandomSampler, multi-objective",
    "grid": "the seed study: every cell in the plan's order, first searched field outermost",
    "tpe": "Optuna's TPESampler (multivariate, constant liar, as `sampler: tpe`), multi-objective (ID, OOD)",
    "gp": "Optuna's GPSampler (as `sampler: gp`), multi-objective (ID, OOD)",
    "tpe+median": "TPE on the weighted objective with Optuna's MedianPruner (as `pruner: median`), fed the weighted "
                  "score at each tenth of the budget",
    "heuristic": "the seed paper's one-shot guess: briefest SFT (largest RL share), SFT at full rank, RL at the "
                 "lowest rank, other fields as the plan fixes them",
}


def load_plan():
    from ptplan.studies import read_plan as read
    from ptplan.studies import StudyPlan

    data, source = read(str(PLAN))
    return StudyPlan.from_mapping(data, PLAN_SETS, source)


def load_tables(data: Path, synthetic: bool, plan) -> tuple[list[dict], list[dict], bool]:
    grid, curves = data / "search_grid.parquet", data / "search_curves.parquet"
    if grid.exists() and curves.exists():
        import polars as pl

        return pl.read_parquet(grid).to_dicts(), pl.read_parquet(curves).to_dicts(), False
    if not synthetic:
        sys.exit(f"{grid} or {curves} is missing: record them with benchmarks/record_search_grid.py, "
                 "or pass --synthetic to try the benchmark on made-up tables")
    rows, curve_rows = synthetic_grid(plan, seeds=(0, 1), replicate=20)
    return rows, curve_rows, True


def split(rows: list[dict], curves: list[dict]) -> dict[tuple[str, int], tuple[list, list]]:
    """(suite, seed) -> (trial rows, curve rows)."""
    out: dict = {}
    for r in rows:
        out.setdefault((r["suite"], int(r["seed"])), ([], []))[0].append(r)
    for c in curves:
        key = (c["suite"], int(c["seed"]))
        if key in out:
            out[key][1].append(c)
    return out


def _init(plan, tables, cap, horizon, max_trials):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*surrogate sampler fell back.*")
    _STATE.update(plan=plan, tables=tables, cap=cap, horizon=horizon, max_trials=max_trials,
                  truth={k: grid_truth(rows) for k, (rows, _) in tables.items()})


STALL = 10  # stop a replay after this many proposals in a row that cost nothing (cells already paid for)


def run_one(job: tuple[str, tuple[str, int], int]) -> tuple:
    """One replay: (strategy, table, seed) -> (job, RepResult, hypervolume curve, seconds)."""
    name, key, seed = job
    plan, truth = _STATE["plan"], _STATE["truth"][key]
    rows, curves = _STATE["tables"][key]
    started = time.perf_counter()
    strategy = STRATEGIES[name](plan, seed)
    oracle = GridOracle(rows, curves, reuse=strategy.reuse)
    cap, horizon = _STATE["cap"] * truth.compute, _STATE["horizon"] * truth.compute
    t_ood, t_w = truth.best_ood - TOLERANCE, truth.best_weighted - TOLERANCE

    def saturated(ledger) -> bool:
        """Nothing left to measure: the whole grid front is found, or both targets are reached and
        the hypervolume curve is drawn to the horizon."""
        if not ledger.entries:
            return False
        if ledger.entries[-1].hypervolume >= truth.hypervolume * (1 - 1e-9):
            return True
        if len(ledger.entries) > STALL and ledger.entries[-1 - STALL].compute >= ledger.compute:
            return True  # the last STALL proposals were all paid for already: the strategy has stalled
        return ledger.compute >= horizon and ledger.compute_to("ood", t_ood) is not None \
            and ledger.compute_to("weighted", t_w) is not None

    ledger = replay(strategy, oracle, cap=cap, stop=saturated, max_trials=int(_STATE["max_trials"] * truth.n_cells))
    result = score(ledger, truth, HV_AT)
    curve = [ledger.hypervolume_at(f * truth.compute) / truth.hypervolume for f in CURVE_AT]
    return job, result, curve, time.perf_counter() - started


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def cell(values: list[float], reached: int, n: int, flops: float | None = None) -> str:
    med, q1, q3 = summarize(values)
    text = f"{pct(med)} [{pct(q1)}–{pct(q3)}]"
    if flops is not None:
        text += f" {flops:.2g}"
    return f"{text} ({reached}/{n})"


def seed_noise(tables: dict, truth: dict) -> list[str]:
    """Seed-to-seed spread from the replicate cells, and whether each grid's best stands out of it."""
    lines, diffs = [], []
    for (suite, seed), (rows, _) in sorted(tables.items()):
        if seed == 0 or (suite, 0) not in tables:
            continue
        names = table_params(rows)
        base = {tuple(r[f"param.{n}"] for n in names): r for r in tables[(suite, 0)][0] if r.get("state") == "COMPLETE"}
        pairs = [(base[k], r) for r in rows if r.get("state") == "COMPLETE"
                 and (k := tuple(r[f"param.{n}"] for n in names)) in base]
        if not pairs:
            continue
        d_ood = [abs(a["ood"] - b["ood"]) for a, b in pairs]
        d_id = [abs(a["id"] - b["id"]) for a, b in pairs]
        diffs += d_ood
        lines.append(f"- {suite}, seed 0 vs seed {seed} on {len(pairs)} matching cells: mean |ΔOOD| "
                     f"{statistics.mean(d_ood):.3f} (max {max(d_ood):.3f}), mean |ΔID| {statistics.mean(d_id):.3f}.")
    if not diffs:
        return ["- no replicate (seed 1) cells in the table: seed-to-seed spread not measured."]
    noise = statistics.mean(diffs)
    for key, t in sorted(truth.items()):
        if len(t.ranked_ood) < 2:
            continue
        gap = t.ranked_ood[0] - t.ranked_ood[1]
        within = sum(o >= t.best_ood - TOLERANCE - 1e-9 for o in t.ranked_ood)
        lines.append(f"- {key[0]} (seed 0): best OOD {t.ranked_ood[0]:.3f}, runner-up {t.ranked_ood[1]:.3f}: the gap "
                     f"{gap:.3f} is {'within' if gap <= noise else 'outside'} the seed-to-seed noise ({noise:.3f}); "
                     f"{within}/{t.n_cells} cells are within 1 point of the best.")
    return lines


def plots(out: Path, names: list[str], suites: list[str], stats: dict, curves: dict, cap: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    groups = suites + ["pooled"]
    width = 0.8 / len(groups)
    for ax, metric, title in zip(axes, ("ood", "weighted"), ("OOD", "weighted (0.5 ID + 0.5 OOD)")):
        for g, group in enumerate(groups):
            x = np.arange(len(names)) + (g - (len(groups) - 1) / 2) * width
            med, lo, hi = zip(*(summarize(stats[n][group][metric]) for n in names))
            med, lo, hi = (100 * np.array(v) for v in (med, lo, hi))
            ax.bar(x, med, width, label=group, alpha=0.85)
            ax.errorbar(x, med, yerr=[med - lo, hi - med], fmt="none", ecolor="k", capsize=2, lw=1)
        ax.axhline(100 * cap, color="grey", ls=":", lw=1)
        ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
        ax.set_title(f"compute to within 1 point of the grid's best {title}", fontsize=10)
        ax.set_ylabel("% of the full grid's compute (median, IQR)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "search_compute.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(suites), figsize=(6 * len(suites), 4.5), sharey=True, squeeze=False)
    for ax, suite in zip(axes[0], suites):
        for n in names:
            arr = np.array(curves[n][suite])
            ax.plot(100 * np.array(CURVE_AT), np.median(arr, 0), label=n, drawstyle="steps-post")
        ax.set_title(f"{suite}: Pareto front found vs compute")
        ax.set_xlabel("compute charged (% of the full grid's)")
        ax.set_ylabel("hypervolume / full grid's (median)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "search_hypervolume.png", dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=30, help="repetitions (seeds) per strategy and suite")
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help=f"comma-separated, from {', '.join(STRATEGIES)}")
    ap.add_argument("--cap", type=float, default=2.0, help="budget cap per replay, x the full grid's compute")
    ap.add_argument("--horizon", type=float, default=1.0,
                    help="once both targets are reached, replay until this x the grid's compute (hypervolume plot)")
    ap.add_argument("--max-trials", type=float, default=4.0,
                    help="trials per replay at most, x the grid's cells (a replay stopped there without reaching a "
                    "target counts as the cap)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    ap.add_argument("--synthetic", action="store_true", help="made-up tables when the recorded ones are missing")
    args = ap.parse_args()
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        sys.exit(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")

    print_machine()
    plan = load_plan()
    rows, curve_rows, synthetic = load_tables(args.data, args.synthetic, plan)
    recorded = {float(r["budget_total"]) for r in rows if r.get("budget_total") is not None}
    if recorded and recorded != {float(plan.trial.budget.total)}:
        sys.exit(f"the table was recorded with budget {sorted(recorded)} but {PLAN.name} now says "
                 f"{plan.trial.budget.total:g}: re-record the grid, or restore the plan it was recorded with")
    tables = split(rows, curve_rows)
    main_tables = {k: v for k, v in tables.items() if k[1] == 0}
    suites = sorted(k[0] for k in main_tables)
    _init(plan, main_tables, args.cap, args.horizon, args.max_trials)
    truth = _STATE["truth"]
    if synthetic:
        print("*** SYNTHETIC TABLES: made-up scores, for trying the script only; do not report these numbers ***")
    for (suite, _), t in sorted(truth.items()):
        print(f"{suite}: {t.n_cells} cells, full grid {t.compute:.3g} flops, best OOD {t.best_ood:.3f}, "
              f"best weighted {t.best_weighted:.3f}, front hypervolume {t.hypervolume:.3f}")

    jobs = [(n, key, seed) for n in names for key in sorted(main_tables)
            for seed in range(1 if n in ("grid", "heuristic") else args.reps)]  # deterministic: one replay
    started = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, initializer=_init,
                                 initargs=(plan, main_tables, args.cap, args.horizon, args.max_trials)) as pool:
            done = list(pool.map(run_one, jobs, chunksize=4))
    else:
        done = [run_one(j) for j in jobs]
    wall = time.perf_counter() - started

    # stats[name][suite|pooled][metric] -> list of fractions of the grid (cap where not reached)
    stats: dict = {n: {g: {"ood": [], "weighted": [], "reached_ood": 0, "reached_weighted": 0, "flops_ood": [],
                           "hv": [], "trials": [], "seconds": 0.0} for g in suites + ["pooled"]} for n in names}
    curves: dict = {n: {s: [] for s in suites} for n in names}
    for (name, (suite, _), _seed), res, curve, secs in done:
        t = truth[(suite, 0)]
        for g in (suite, "pooled"):
            s = stats[name][g]
            for metric, got in (("ood", res.to_ood), ("weighted", res.to_weighted)):
                s[metric].append(args.cap if got is None else got / t.compute)
                s[f"reached_{metric}"] += got is not None
            s["flops_ood"].append(args.cap * t.compute if res.to_ood is None else res.to_ood)
            s["hv"].append(res.hv)
            s["trials"].append(res.trials)
            s["seconds"] += secs
        curves[name][suite].append(curve)

    groups = suites + ["pooled"]
    md = ["Compute until the best found is within 1 point (0.01) of the grid's best cell, as % of the full "
          f"grid's compute (median [IQR], then the median in flops; in brackets the replays that got there; "
          f"one that did not counts as the cap, {pct(args.cap)} of the grid). {args.reps} seeds per strategy "
          "and suite (grid and heuristic are deterministic: one replay).", "",
          "| strategy | " + " | ".join(f"OOD: {g}" for g in groups) + " | "
          + " | ".join(f"weighted: {g}" for g in groups) + " |",
          "|---" * (1 + 2 * len(groups)) + "|"]
    for n in names:
        cells = [cell(stats[n][g]["ood"], stats[n][g]["reached_ood"], len(stats[n][g]["ood"]),
                      statistics.median(stats[n][g]["flops_ood"])) for g in groups]
        cells += [cell(stats[n][g]["weighted"], stats[n][g]["reached_weighted"], len(stats[n][g]["weighted"]))
                  for g in groups]
        md.append(f"| {n} | " + " | ".join(cells) + " |")
    md += ["", "Hypervolume of the found (ID, OOD) front over the full grid's front (reference (0, 0)), median at "
           + ", ".join(pct(f) for f in HV_AT) + " of the grid's compute; trials: median trials a replay ran before it "
           f"stopped (at the cap, after every cell completed, at {args.max_trials:g}x the grid's cells, once the "
           "whole grid front was found, or once both targets were reached and the replay had charged "
           f"{pct(args.horizon)} of the grid's compute).", "",
           "| strategy | " + " | ".join(f"{g} HV" for g in groups) + " | trials |", "|---" * (len(groups) + 2) + "|"]
    for n in names:
        hv = [" / ".join(f"{statistics.median(h[i] for h in stats[n][g]['hv']):.2f}" for i in range(len(HV_AT)))
              for g in groups]
        md.append(f"| {n} | " + " | ".join(hv) + f" | {statistics.median(stats[n]['pooled']['trials']):.0f} |")
    md += ["", "Strategies: " + "; ".join(f"**{n}**: {ABOUT.get(n, n)}" for n in names) + ". An Optuna sampler "
           "may propose a cell it already ran: like a plain Optuna loop, it is run and charged again (ptplan's "
           "sampler never repeats one). Every strategy proposes through the plan's search space as `ptplan run` "
           "does; each proposal is answered by the nearest recorded cell, charged what that cell recorded, and "
           "only what was paid for is revealed (ptplan.testing.replay).", ""]
    if "ptplan" in names and "random" in names:
        p, r = (summarize(stats[k]["pooled"]["ood"])[0] for k in ("ptplan", "random"))
        md += [f"- ptplan vs random, pooled median compute to within 1 OOD point: {pct(p)} vs {pct(r)} of the grid "
               f"({r / p:.1f}x less compute; issue 6 asks <= 30% and >= 3x)."]
    for (name, (suite, _), _seed), res, _, _ in done:
        if name in ("grid", "heuristic"):
            t = truth[(suite, 0)]
            md.append(f"- {name} on {suite}: {res.trials} trial(s), {pct(res.compute / t.compute)} of the grid, best OOD "
                      f"found {res.best_ood:.3f} (grid's best {t.best_ood:.3f}), best weighted {res.best_weighted:.3f} "
                      f"(grid's best {t.best_weighted:.3f}).")
    md += ["", "Seed-to-seed spread:"] + seed_noise(tables, truth)
    if synthetic:
        md.insert(0, "**SYNTHETIC TABLES: made-up scores; these numbers say nothing about ptplan.**\n")
    text = "\n".join(md)
    print()
    print(text)
    print(f"\n{len(jobs)} replays in {wall:.0f} s; seconds per replay: "
          + ", ".join(f"{n} {stats[n]['pooled']['seconds'] / max(len(stats[n]['pooled']['ood']), 1):.2f}"
                      for n in names))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_results.md").write_text(text + "\n")
    plots(args.out, names, suites, stats, curves, args.cap)
    print(f"wrote {args.out / 'search_results.md'}, search_compute.png, search_hypervolume.png")


if __name__ == "__main__":
    main()
