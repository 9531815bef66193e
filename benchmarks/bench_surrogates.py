"""Speed of the surrogates: outcome-model fit on 1,000 trials (target <= 2 s) and one OOD-peak
prediction from a partial SFT curve (target <= 50 ms).

Inputs are synthetic (ptplan.testing, planner/testing/_tables.py): timing only, they say nothing about accuracy,
which `ptplan surrogate eval` measures on recorded real trials. We report the median over
`--repeats` of wall time and of process CPU time (these machines are shared, so CPU time is the
steadier figure).

    .venv/bin/python benchmarks/bench_surrogates.py [--trials 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse

from ptplan.surrogates import OODPeakModel, OutcomeModel, truncate
from ptplan.testing import synthetic_curve, synthetic_curves, synthetic_table
from _common import print_machine, timed




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000, help="trials in the outcome model's table")
    ap.add_argument("--prior-curves", type=int, default=60, help="complete SFT curves the curve model is fitted on")
    ap.add_argument("--points", type=int, default=21, help="evaluation points per SFT curve")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    print_machine()

    table = synthetic_table(args.trials, seed=0)
    OutcomeModel().fit(table.head(50))  # imports and first-call costs out of the timing
    wall, cpu = timed(lambda: OutcomeModel().fit(table), args.repeats)
    print(f"outcome model fit, {args.trials} trials: {wall:.2f} s wall, {cpu:.2f} s CPU (target <= 2 s)")

    prior = [c for c, _ in synthetic_curves(args.prior_curves, seed=0, kind="noisy", n_points=args.points)]
    wall, cpu = timed(lambda: OODPeakModel().fit(prior), args.repeats)
    print(f"curve model fit, {args.prior_curves} prior curves of {args.points} points "
          f"(with leave-one-curve-out calibration): {wall:.2f} s wall, {cpu:.2f} s CPU")
    model = OODPeakModel().fit(prior)
    part = truncate(synthetic_curve("noisy", peak=0.4, n_points=args.points, seed=1)[0], 0.3)
    model.predict_peak([part])
    wall, cpu = timed(lambda: model.predict_peak([part]), max(args.repeats, 20))
    print(f"one curve prediction (30% of the slice observed, {model.n_samples} posterior draws): "
          f"{wall * 1e3:.1f} ms wall, {cpu * 1e3:.1f} ms CPU (target <= 50 ms)")


if __name__ == "__main__":
    main()
