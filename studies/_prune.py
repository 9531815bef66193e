"""Pruning for multi-objective studies, which Optuna's pruners cannot do.

A running trial is stopped when its predicted final (ID, OOD) is dominated by the current Pareto
front with high confidence. The prediction comes from the trials already COMPLETE: at each tenth
of the budget, a per-objective linear fit of the final score on the score at that tenth, with a
one-sided conformal upper bound from leave-one-out residuals. Pure Python and numpy: no torch.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ptplan.stages.record import REPORT_STEPS, pareto_front


CHECKPOINTS_ATTR = "checkpoints"  # user attr: {"1": [id, ood], ..., "10": [id, ood]}, per tenth of the budget


def _pair(value: Any) -> tuple[float, float] | None:
    try:
        a, b = float(value[0]), float(value[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    return (a, b) if math.isfinite(a) and math.isfinite(b) else None


def _upper_bound(x: np.ndarray, y: np.ndarray, x0: float, level: float) -> tuple[float, float]:
    """Prediction at x0 of the least-squares line y ~ a + b x, and its one-sided `level` upper bound
    from leave-one-out residuals (finite-sample quantile; the largest residual when few trials)."""
    n = len(x)
    X = np.column_stack([np.ones(n), x])
    if np.ptp(x) <= 1e-12:
        X = X[:, :1]  # every trial had the same score here: the prediction is the mean final score
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    pinv = np.linalg.pinv(X.T @ X)
    hat = np.einsum("ij,jk,ik->i", X, pinv, X)
    loo = (y - X @ coef) / np.maximum(1.0 - hat, 1e-6)
    q = np.quantile(loo, min(1.0, math.ceil((n + 1) * level) / n))
    pred = float(coef[0] + (coef[1] * x0 if len(coef) > 1 else 0.0))
    return pred, pred + max(float(q), 0.0)


class DominatedPruner:
    """Stops a multi-objective trial whose predicted final (ID, OOD) the front dominates.

    Args:
        n_startup: COMPLETE trials with a checkpoint at the current tenth needed before pruning.
        min_step: first tenth of the budget at which a trial may be pruned.
        level: one-sided confidence of each upper bound on the final ID and OOD.
        steps: report steps per budget (a tenth each).
    """

    def __init__(self, *, n_startup: int = 5, min_step: int = 3, level: float = 0.97, steps: int = REPORT_STEPS):
        if not (isinstance(n_startup, int) and n_startup >= 2):
            raise ValueError(f"n_startup must be an integer >= 2, got {n_startup!r}")
        if not (isinstance(min_step, int) and 1 <= min_step <= steps):
            raise ValueError(f"min_step must be an integer in [1, {steps}], got {min_step!r}")
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        self.n_startup, self.min_step, self.level, self.steps = n_startup, min_step, level, steps

    def step_of(self, fraction: float) -> int:
        """The last report step reached at `fraction` of the budget."""
        return min(self.steps, int(fraction * self.steps + 1e-9))

    def predict(self, step: int, current: Sequence[float], history: Sequence[Mapping]) -> dict | None:
        """Predicted final (ID, OOD) and upper bounds from a score at `step`; None with too few trials.

        `history` holds one mapping per COMPLETE trial: `checkpoints` ({step: (id, ood)}, keys may be
        strings as stored in user attrs) and `final` ((id, ood)).
        """
        xs, ys = [], []
        for h in history:
            cps = h.get("checkpoints") or {}
            at = _pair(cps.get(step, cps.get(str(step))) if isinstance(cps, Mapping) else None)
            final = _pair(h.get("final"))
            if at is not None and final is not None:
                xs.append(at)
                ys.append(final)
        if len(xs) < self.n_startup:
            return None
        x, y = np.array(xs), np.array(ys)
        if (np.ptp(x, axis=0) <= 1e-12).any():
            # every trial had the same score here (e.g. a shared CPT stage): the score says nothing
            # about this trial's final, so there is no evidence to prune on
            return None
        (pid, uid), (pood, uood) = (_upper_bound(x[:, j], y[:, j], float(current[j]), self.level) for j in (0, 1))
        return {"n": len(xs), "pred": (pid, pood), "upper": (uid, uood)}

    def should_prune(self, fraction: float, current: Sequence[float], history: Sequence[Mapping],
                     front: Sequence[Sequence[float]]) -> tuple[bool, str]:
        """Whether to stop a trial at `fraction` of its budget with (ID, OOD) `current`, and why."""
        step = self.step_of(fraction)
        if step < self.min_step:
            return False, f"at {step}/{self.steps} of the budget: no pruning before {self.min_step}/{self.steps}"
        if step >= self.steps:
            return False, "the budget is spent"
        if _pair(current) is None:
            return False, f"no finite (ID, OOD) score at {step}/{self.steps} of the budget"
        got = self.predict(step, current, history)
        if got is None:
            return False, (f"fewer than {self.n_startup} COMPLETE trials with a score at {step}/{self.steps} "
                           "of the budget, or their scores there are all equal (nothing to predict from)")
        uid, uood = got["upper"]
        said = (f"predicted final ID <= {uid:.3f}, OOD <= {uood:.3f} ({self.level:.0%} upper bounds from "
                f"{got['n']} trials, score at {step / self.steps:.0%} of the budget: ID {current[0]:.3f}, "
                f"OOD {current[1]:.3f})")
        for point in front:
            f = _pair(point)
            if f is not None and f[0] >= uid and f[1] >= uood and (f[0] > uid or f[1] > uood):
                return True, f"{said} dominated by front point ID {f[0]:.3f}, OOD {f[1]:.3f}"
        return False, f"{said} not dominated by the front"


def pareto_points(points: Iterable[Sequence[float]]) -> list[tuple[float, float]]:
    """Non-dominated finite (ID, OOD) pairs (maximize both), by ID ascending (so OOD descending)."""
    return sorted(set(pareto_front(p for p in map(_pair, points) if p is not None)))


def checkpoint_history(trials) -> tuple[list[dict], list[tuple[float, float]]]:
    """(history, front) from COMPLETE Optuna trials of a multi-objective study."""
    history, finals = [], []
    for t in trials:
        final = t.user_attrs.get("final") if isinstance(t.user_attrs.get("final"), dict) else None
        pair = _pair((final["id"], final["ood"])) if final and "id" in final and "ood" in final else None
        pair = pair or (_pair(t.values) if t.values else None)
        if pair is None:
            continue
        finals.append(pair)
        history.append({"checkpoints": t.user_attrs.get(CHECKPOINTS_ATTR) or {}, "final": pair})
    return history, pareto_points(finals)
