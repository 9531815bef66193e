"""Speed of the surrogates: outcome-model fit on 1,000 trials (target <= 2 s) and one OOD-peak
prediction from a partial SFT curve (target <= 50 ms).

Inputs are synthetic (surrogates/_synthetic.py): timing only, they say nothing about accuracy,
which `ptplan surrogate eval` measures on recorded real trials. We report the median over
`--repeats` of wall time and of process CPU time (these machines are shared, so CPU time is the
steadier figure).

    .venv/bin/python benchmarks/bench_surrogates.py [--trials 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

from surrogates import OODPeakModel, OutcomeModel, truncate
from surrogates._synthetic import synthetic_curve, synthetic_curves, synthetic_table


def _timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `fn()` over `repeats` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000, help="trials in the outcome model's table")
    ap.add_argument("--prior-curves", type=int, default=60, help="complete SFT curves the curve model is fitted on")
    ap.add_argument("--points", type=int, default=21, help="evaluation points per SFT curve")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; python {platform.python_version()}")

    table = synthetic_table(args.trials, seed=0)
    OutcomeModel().fit(table.head(50))  # imports and first-call costs out of the timing
    wall, cpu = _timed(lambda: OutcomeModel().fit(table), args.repeats)
    print(f"outcome model fit, {args.trials} trials: {wall:.2f} s wall, {cpu:.2f} s CPU (target <= 2 s)")

    prior = [c for c, _ in synthetic_curves(args.prior_curves, seed=0, kind="noisy", n_points=args.points)]
    wall, cpu = _timed(lambda: OODPeakModel().fit(prior), args.repeats)
    print(f"curve model fit, {args.prior_curves} prior curves of {args.points} points "
          f"(with leave-one-curve-out calibration): {wall:.2f} s wall, {cpu:.2f} s CPU")
    model = OODPeakModel().fit(prior)
    part = truncate(synthetic_curve("noisy", peak=0.4, n_points=args.points, seed=1)[0], 0.3)
    model.predict_peak([part])
    wall, cpu = _timed(lambda: model.predict_peak([part]), max(args.repeats, 20))
    print(f"one curve prediction (30% of the slice observed, {model.n_samples} posterior draws): "
          f"{wall * 1e3:.1f} ms wall, {cpu * 1e3:.1f} ms CPU (target <= 50 ms)")


if __name__ == "__main__":
    main()
