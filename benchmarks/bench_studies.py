"""Study-layer benchmarks (issue: Optuna studies).

    python benchmarks/bench_studies.py                      # overhead, status, reuse (micro reuse grid)
    python benchmarks/bench_studies.py --only overhead --trials 3
    python benchmarks/bench_studies.py --only reuse --scale preset   # the real paper-epoch-split (long)
    python benchmarks/bench_studies.py --only gpu            # trials/hour with K = 1, 4, 8 workers on one GPU

What each part measures:
- overhead: real trials of the `smoke` preset through the study layer. Per trial, the Optuna wall
  time (start to complete) is split into training (stage timings), evaluation (start eval + the
  ledger's eval seconds) and the rest. "study layer" is Optuna wall minus run_trial's own total
  (sampling, storage writes, lease); "all but training+eval" also counts data building, model
  loading and writing results. Trial 0 also pays the one-off torch/transformers import.
- status: `ptplan status` (a fresh process, as a user runs it) on a SYNTHETIC 1,000-trial study:
  trials written with optuna.trial.create_trial and ptplan's user attrs. This is storage load,
  not training.
- reuse: paper-epoch-split (9 cells sharing one CPT stage); compute saved by checkpoint reuse,
  as charged by the ledgers, against the compute charged to all trials.
- gpu: trials per hour with K concurrent local workers sharing one GPU (skipped without CUDA).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PTPLAN = [sys.executable, "-m", "ptplan._cli"]

from ptplan.testing import MICRO_SETS  # noqa: E402 - micro trial sizes as `--set` overrides


def _sets(items):
    return [x for item in items for x in ("--set", item)]


def _plan(preset: str, overrides: list[str]):
    from ptplan.studies import read_plan as load_plan
    from ptplan.studies import StudyPlan

    data, source = load_plan(preset)
    return StudyPlan.from_mapping(data, overrides, source)


def _ptplan(*args, env=None) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([*PTPLAN, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    return proc, time.perf_counter() - t0


# -- overhead ------------------------------------------------------------------------------------
def bench_overhead(trials: int, work_dir: Path) -> None:
    from ptplan.studies import open_session, work

    sp = _plan("smoke", [f"study.dir={work_dir / 'overhead'}", "study.sampler=random"])
    session = open_session(sp)
    t0 = time.perf_counter()
    work(session, trials, echo=lambda line: print("   ", line, flush=True))
    print(f"  ran {trials} smoke trials in {time.perf_counter() - t0:.1f} s")
    rows = []
    for t in session.admin.get_trials():
        if t.state.name != "COMPLETE":
            continue
        wall = (t.datetime_complete - t.datetime_start).total_seconds()
        timings, ledger = t.user_attrs["timings"], t.user_attrs["ledger"]
        train = sum(timings.get(s, 0.0) for s in ("cpt", "sft", "rl"))
        evals = timings.get("eval_start", 0.0) + sum(st["eval"]["seconds"] for st in ledger["stages"].values())
        study_layer = wall - timings["total"]
        rest = wall - train - evals
        rows.append((t.number, wall, train, evals, study_layer, rest))
        print(f"  trial {t.number}: wall {wall:6.1f} s  training {train:6.1f} s  eval {evals:5.1f} s  "
              f"study layer {study_layer:5.2f} s ({study_layer / wall:5.2%})  all but training+eval "
              f"{rest:5.2f} s ({rest / wall:5.2%})")
    if rows:
        later = rows[1:] or rows
        print(f"  median over trials{' after the first' if len(rows) > 1 else ''}: study layer "
              f"{statistics.median(r[4] / r[1] for r in later):.2%} of trial time, all but training+eval "
              f"{statistics.median(r[5] / r[1] for r in later):.2%}")


# -- status --------------------------------------------------------------------------------------


def bench_status(work_dir: Path, n: int = 1000) -> None:
    import yaml

    from ptplan.testing import synthetic_study

    from ptplan.studies import read_plan as load_plan

    for kind in ("sqlite", "journal"):
        folder = work_dir / f"status-{kind}"
        data, _ = load_plan("smoke")
        data["study"] = {"dir": str(folder), "storage": f"sqlite:///{folder}/study.db" if kind == "sqlite"
                         else f"journal://{folder}/journal.log"}
        plan = folder / "plan.yaml"
        folder.mkdir(parents=True, exist_ok=True)
        plan.write_text(yaml.safe_dump(data))
        t0 = time.perf_counter()
        synthetic_study(plan, n, failed_every=10)
        build = time.perf_counter() - t0
        times = []
        for _ in range(3):
            proc, dt = _ptplan("status", plan)
            assert proc.returncode == 0, proc.stderr
            times.append(dt)
        proc, dt_all = _ptplan("status", plan, "--limit", 0)
        print(f"  {kind:7s}: `ptplan status` on a synthetic {n}-trial study: median {statistics.median(times):.2f} s "
              f"(runs {', '.join(f'{t:.2f}' for t in times)}; all {n} rows: {dt_all:.2f} s; "
              f"writing the synthetic trials took {build:.1f} s)")


# -- reuse ---------------------------------------------------------------------------------------
def bench_reuse(work_dir: Path, scale: str) -> None:
    overrides = [f"study.dir={work_dir / 'reuse'}"] + (MICRO_SETS if scale == "micro" else [])
    t0 = time.perf_counter()
    proc, _ = _ptplan("run", "paper-epoch-split", *_sets(overrides),
                      env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:])
        raise SystemExit("paper-epoch-split failed")
    from ptplan.studies import open_session

    sp = _plan("paper-epoch-split", overrides)
    trials = [t for t in open_session(sp, create=False).admin.get_trials() if t.state.name == "COMPLETE"]
    unit = sp.trial.budget.unit
    charged = sum(t.user_attrs["ledger"]["spent"][unit] for t in trials)
    charged_flops = sum(t.user_attrs["ledger"]["spent"]["flops"] for t in trials)
    saved = sum(t.user_attrs["compute_saved"]["value"] for t in trials)
    saved_flops = sum(t.user_attrs["compute_saved"]["flops"] for t in trials)
    reused = sum(1 for t in trials if t.user_attrs["compute_saved"]["stages"])
    print(f"  paper-epoch-split ({scale} sizes): {len(trials)} cells in {wall:.0f} s; {reused} trials reused a "
          f"stage; compute saved {saved:g} of {charged:g} {unit} charged ({saved / charged:.1%}); "
          f"{saved_flops:.3g} of {charged_flops:.3g} FLOPs ({saved_flops / charged_flops:.1%})")


# -- gpu -----------------------------------------------------------------------------------------
def bench_gpu(work_dir: Path, trials: int) -> None:
    try:
        import torch
    except ImportError:
        print("  skipped: torch is not installed")
        return
    if not torch.cuda.is_available():
        print("  skipped: no CUDA device on this machine")
        return
    base = None
    for k in (1, 4, 8):
        n = max(trials, 2 * k)
        overrides = [f"study.dir={work_dir / f'gpu-{k}'}", "device=cuda", "study.sampler=random"]
        proc, wall = _ptplan("run", "quick", "--jobs", k, "--trials", n, *_sets(overrides))
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:])
            raise SystemExit(f"K={k} failed")
        per_hour = n / wall * 3600
        base = base or per_hour
        print(f"  K={k}: {n} quick trials in {wall:.0f} s = {per_hour:.0f} trials/hour ({per_hour / base:.1f}x K=1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="overhead,status,reuse", help="comma list of overhead,status,reuse,gpu")
    parser.add_argument("--trials", type=int, default=3, help="smoke trials for the overhead part")
    parser.add_argument("--scale", choices=("micro", "preset"), default="micro",
                        help="reuse part: micro sizes (~1 min) or the preset as shipped (long on a CPU)")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work_dir = args.dir or Path(tempfile.mkdtemp(prefix="bench-studies-"))
    print(f"bench_studies: work folder {work_dir}; {os.cpu_count()} CPUs")
    parts = {"overhead": lambda: bench_overhead(args.trials, work_dir), "status": lambda: bench_status(work_dir),
             "reuse": lambda: bench_reuse(work_dir, args.scale), "gpu": lambda: bench_gpu(work_dir, args.trials)}
    for name in args.only.split(","):
        print(f"[{name}]", flush=True)
        parts[name.strip()]()


if __name__ == "__main__":
    main()
