"""Speed of the planner: `recommend` on 1,000 trials (target <= 3 s) and report generation on
1,000 trials with their curves (target <= 30 s); then `ptplan recommend` and `ptplan report` as
commands on a stored Optuna study of 1,000 finished trials (process start and storage read included).

Inputs are synthetic (ptplan.testing, planner/testing/_tables.py): timing only. Both figures include fitting the
outcome model (recommend fits one; the report fits one more per calibration fold). We report the
median over `--repeats` of wall time and of process CPU time (these machines are shared, so CPU
time is the steadier figure).

    .venv/bin/python benchmarks/bench_planner.py [--trials 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from ptplan._recommend import recommend
from ptplan._report import build_report
from ptplan.testing import synthetic_table
from _common import print_machine, timed




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000, help="completed trials in the table")
    ap.add_argument("--failed", type=int, default=20, help="failed trials added to the table")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    print_machine()

    with tempfile.TemporaryDirectory() as tmp:
        table = synthetic_table(args.trials, seed=0, failed=args.failed, curves_dir=Path(tmp) / "curves")
        recommend(table.head(50), 2e11)  # imports and first-call costs out of the timing
        for budget, what in ((2e11, "inside the run range"), (1e12, "extrapolating")):
            wall, cpu = timed(lambda: recommend(table, budget, "balanced"), args.repeats)
            print(f"recommend, {args.trials} trials, budget {budget:g} ({what}): {wall:.2f} s wall, {cpu:.2f} s CPU "
                  "(target <= 3 s)")
        out = Path(tmp) / "report"
        wall, cpu = timed(lambda: build_report(table, out, budget=2e11), args.repeats)
        rep = build_report(table, out, budget=2e11)
        print(f"report, {args.trials + args.failed} trials with curves ({len(rep.plots)} plots, 5-fold calibration): "
              f"{wall:.2f} s wall, {cpu:.2f} s CPU (target <= 30 s)")
        _commands(Path(tmp), args.trials)


def _commands(tmp: Path, n: int) -> None:
    """End to end: the commands on a journal-stored study built by the CLI tests' helper (no training)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "planner"))
    from test_study_cli import ptplan, write_plan

    from ptplan.testing import synthetic_study

    plan = write_plan(tmp, {"storage": f"journal://{tmp}/j.log"})
    synthetic_study(plan, n)
    for what, args, target in (("ptplan recommend", ("recommend", plan, "--json"), 3),
                               ("ptplan report", ("report", plan, "--out", tmp / "cli-report"), 30)):
        t0 = time.perf_counter()
        proc = ptplan(*args, timeout=300)
        wall = time.perf_counter() - t0
        ok = "ok" if proc.returncode == 0 else f"FAILED rc {proc.returncode}: {proc.stderr[-300:]}"
        print(f"{what}, stored study of {n} trials: {wall:.2f} s wall incl. process start ({ok}; target <= {target} s)")


if __name__ == "__main__":
    main()
