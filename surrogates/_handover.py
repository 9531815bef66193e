"""The `predicted-peak` hand-over policy: the OOD-peak curve model decides when SFT's peak has passed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._curve import OODPeakModel


def peak_handover(confidence: float = 0.8, level: float = 0.8,
                  curves: Sequence[Any] | None = None) -> Callable[[Sequence[Sequence[float]], int], str | None]:
    """A hand-over policy for `ptplan.stages.TrialRunner`: given the SFT curve so far (fraction of the
    slice, OOD, ID, loss) and the stage's evaluation count, a reason to end SFT now, or None.

    `curves`: complete SFT curves of earlier trials that the curve model learns its prior from
    (default none: a broad prior and wide intervals)."""
    model = OODPeakModel(level=level).fit(list(curves) if curves is not None else None)

    def decide(curve: Sequence[Sequence[float]], eval_points: int) -> str | None:
        arr = np.asarray(curve, dtype=float)
        grid = [i / eval_points for i in range(eval_points + 1)]
        pred = model.predict_peak([arr], grid=grid).row(0)
        seen = float(arr[-1, 0])
        if pred["behind"] >= confidence:
            why = f"OOD peak passed with probability {pred['behind']:.2f}"
        elif pred["location_high"] <= seen + 1.0 / eval_points:
            why = f"OOD peak predicted within the next evaluation interval (<= {pred['location_high']:.0%})"
        else:
            return None
        return f"{why} at {seen:.0%} of SFT; predicted peak at {pred['location']:.0%} (OOD {pred['value']:.3f})"

    return decide


def handover_policy_for(config: Any) -> Callable | None:
    """The hand-over policy a trial configuration asks for (`allocation.rl.handover`), or None."""
    rl = config.allocation.rl
    if rl.handover != "predicted-peak" or config.allocation.shares.get("rl", 0) <= 0:
        return None
    return peak_handover(rl.handover_confidence)
