"""Surrogates: scikit-learn-style models fitted on a study's trial table (polars; no torch).

- `OODPeakModel`: from a partial SFT curve, where the OOD score will peak, how high, and whether
  the peak has already passed, with intervals. Baselines with the same interface: `BestSoFar`,
  `LossPatience`, `PowerLaw`.
- `OutcomeModel`: allocation (+ budget, backbone size) -> final ID, final OOD and OOD peak fraction
  of SFT, with intervals and an extrapolation flag. Baseline: `NearestTrials`.
- `evaluate`: leave-one-trial-out accuracy of both against their baselines.
- `peak_handover`: the `predicted-peak` hand-over policy a trial runner calls after each SFT evaluation.
"""

from ._baselines import BASELINES, BestSoFar, LossPatience, NearestTrials, PowerLaw
from ._curve import OODPeakModel, PeakPrediction, as_curve, peak_of, sft_curve, truncate
from ._eval import (TARGET_COVERAGE, TARGET_GAIN, TARGET_MAE, TARGET_SPEARMAN, evaluate, evaluate_curve_models, evaluate_outcome_models, fold_groups, held_out_outcomes, load_curves,
                    read_trial_curves)
from ._handover import handover_policy_for, peak_handover
from ._outcome import TARGETS, OutcomeModel, feature_columns

__all__ = [
    "BASELINES",
    "TARGETS",
    "TARGET_COVERAGE",
    "TARGET_GAIN",
    "TARGET_MAE",
    "TARGET_SPEARMAN",
    "BestSoFar",
    "LossPatience",
    "NearestTrials",
    "OODPeakModel",
    "OutcomeModel",
    "PeakPrediction",
    "PowerLaw",
    "as_curve",
    "evaluate",
    "evaluate_curve_models",
    "evaluate_outcome_models",
    "feature_columns",
    "fold_groups",
    "handover_policy_for",
    "held_out_outcomes",
    "load_curves",
    "peak_handover",
    "peak_of",
    "read_trial_curves",
    "sft_curve",
    "truncate",
]
