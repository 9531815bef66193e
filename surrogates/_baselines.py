"""Baselines the curve model must beat, with the same interface (`fit(curves)`, `predict_peak`).

Each is a fixed rule; `fit` only learns interval half-widths: split-conformal quantiles of the
rule's errors on the prior curves at several observed fractions (no prior curves: [0, 1]).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._curve import NOT_FITTED, PeakPrediction, _local_margin, as_curve, calibration_cases, peak_of
from ._outcome import NOT_FITTED as TABLE_NOT_FITTED
from ._outcome import TARGETS, _as_frame, _Encoder, feature_columns


class _RuleBaseline(BaseEstimator):
    """A peak rule: `_rule(curve) -> (location, value, behind)` on a partial curve (n, 4)."""

    def fit(self, curves: Sequence[Any] | None = None, y: None = None):
        """Learn the rule's error quantiles on complete prior curves (for its intervals)."""
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {self.level!r}")
        self._check_params()
        parsed = [as_curve(c) for c in (curves if curves is not None else [])]
        cal: dict[str, list] = {"f": [], "location": [], "value": []}
        for c in parsed:
            c = c[np.isfinite(c[:, 1])]
            truth = peak_of(c)
            if truth is None or truth["flat"] or len(c) < 3:
                continue
            for k in calibration_cases(c):
                loc, val, _ = self._rule(c[:k])
                cal["f"].append(float(c[k - 1, 0]))
                cal["location"].append(abs(loc - truth["fraction"]))
                cal["value"].append(abs(val - truth["value"]))
        self.n_curves_ = len(parsed)
        self.calibration_ = cal
        return self

    def _check_params(self) -> None:
        pass

    def predict_peak(self, curves: Sequence[Any], grid: Sequence[float] | None = None) -> PeakPrediction:
        """Apply the rule to each partial curve (`grid` is accepted for interface parity and unused)."""
        check_is_fitted(self, msg=NOT_FITTED.format(name=type(self).__name__))
        rows = []
        for curve in curves:
            c = as_curve(curve)
            f = float(c[:, 0].max()) if len(c) else 0.0
            if not np.isfinite(c[:, 1]).any():
                rows.append({"observed": f, "location": 0.5, "location_low": 0.0, "location_high": 1.0,
                             "value": 0.5, "value_low": 0.0, "value_high": 1.0,
                             "behind": 0.5, "behind_low": 0.0, "behind_high": 1.0})
                continue
            loc, val, behind = self._rule(c)
            wl, wv = self._width("location", f), self._width("value", f)
            rows.append({"observed": f, "location": loc, "location_low": max(loc - wl, 0.0),
                         "location_high": min(loc + wl, 1.0), "value": val, "value_low": max(val - wv, 0.0),
                         "value_high": min(val + wv, 1.0), "behind": behind, "behind_low": behind,
                         "behind_high": behind})
        return PeakPrediction.stack(rows, self.level)

    def predict(self, curves: Sequence[Any]) -> np.ndarray:
        """Predicted peak location (fraction of the SFT slice) of each partial curve."""
        return self.predict_peak(curves).location

    def _width(self, what: str, f: float) -> float:
        """Half-width: conformal quantile of the rule's errors on prior curves seen as far (1 without)."""
        return _local_margin(self.calibration_, what, f, self.level, default=1.0)

    def _rule(self, curve: np.ndarray) -> tuple[float, float, float]:
        raise NotImplementedError


class BestSoFar(_RuleBaseline):
    """The peak is the best point seen so far (the first of ties)."""

    def __init__(self, *, level: float = 0.8):
        self.level = level

    def _rule(self, curve):
        ok = curve[np.isfinite(curve[:, 1])]
        i = int(np.argmax(ok[:, 1]))
        return float(ok[i, 0]), float(ok[i, 1]), 1.0


class LossPatience(_RuleBaseline):
    """Early stopping on the training loss: the peak is the best-loss point once the loss has not
    improved by `min_delta` for `patience` evaluations, else the end of the slice."""

    def __init__(self, *, patience: int = 2, min_delta: float = 0.0, level: float = 0.8):
        self.patience = patience
        self.min_delta = min_delta
        self.level = level

    def _check_params(self) -> None:
        if int(self.patience) < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience!r}")

    def _rule(self, curve):
        ok = curve[np.isfinite(curve[:, 1])]
        best, best_i, waited = np.inf, None, 0
        for i, loss in enumerate(curve[:, 3]):
            if not np.isfinite(loss):
                continue
            if loss < best - self.min_delta:
                best, best_i, waited = loss, i, 0
            else:
                waited += 1
                if waited >= self.patience:
                    x = curve[best_i, 0]
                    j = int(np.argmin(np.abs(ok[:, 0] - x)))
                    return float(x), float(ok[j, 1]), 1.0
        return 1.0, float(ok[-1, 1]), 0.0


class PowerLaw(_RuleBaseline):
    """A monotone power law ood = a - b x^-c (b >= 0) fitted to the points so far: the peak is at the
    end of the slice, with the extrapolated value."""

    def __init__(self, *, level: float = 0.8):
        self.level = level

    def _rule(self, curve):
        ok = curve[np.isfinite(curve[:, 1])]
        x, y = ok[:, 0], ok[:, 1]
        pos = x > 0
        if pos.sum() < 2:
            return 1.0, float(y[-1]), 0.0
        xp, yp = x[pos], y[pos]
        best = (np.inf, float(yp.mean()))
        for c in np.geomspace(0.05, 3.0, 25):
            z = -(xp ** -c)
            zc = z - z.mean()
            b = float(zc @ (yp - yp.mean()) / (zc @ zc)) if zc @ zc > 0 else 0.0
            b = max(b, 0.0)
            a = float(yp.mean() - b * z.mean())
            sse = float(np.sum((yp - a - b * z) ** 2))
            if sse < best[0]:
                best = (sse, a - b)  # value at x = 1
        return 1.0, float(np.clip(best[1], 0.0, 1.0)), 0.0


BASELINES = {"best-so-far": BestSoFar, "loss-patience": LossPatience, "power-law": PowerLaw}


class NearestTrials(BaseEstimator):
    """Outcome baseline: the mean of the `k` most similar trials (standardized allocation features),
    with the spread of their outcomes as the interval."""

    def __init__(self, *, k: int = 5, level: float = 0.8):
        self.k = k
        self.level = level

    def fit(self, table: Any, y: None = None) -> "NearestTrials":
        import polars as pl

        if int(self.k) < 1:
            raise ValueError(f"k must be >= 1, got {self.k!r}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {self.level!r}")
        frame = _as_frame(table)
        if "state" in frame.columns:
            frame = frame.filter(pl.col("state") == "COMPLETE")
        if not frame.height:
            raise ValueError("no COMPLETE trials to fit on")
        self.encoder_ = _Encoder(frame, feature_columns(frame))
        X, _ = self.encoder_.transform(frame)
        self.fill_ = np.nan_to_num(np.nanmedian(X, 0)) if X.size else np.zeros(X.shape[1])
        X = np.where(np.isnan(X), self.fill_, X)
        self.center_, self.scale_ = X.mean(0), np.where(X.std(0) > 1e-12, X.std(0), 1.0)
        self.X_ = (X - self.center_) / self.scale_
        self.y_ = np.column_stack([
            np.array([np.nan if v is None else float(v) for v in frame[t].to_list()]) if t in frame.columns
            else np.full(frame.height, np.nan) for t in TARGETS])
        return self

    def predict_outcome(self, table: Any):
        import polars as pl

        check_is_fitted(self, msg=TABLE_NOT_FITTED.format(name=type(self).__name__))
        X, _ = self.encoder_.transform(_as_frame(table))
        Z = (np.where(np.isnan(X), self.fill_, X) - self.center_) / self.scale_
        dist = ((Z[:, None, :] - self.X_[None, :, :]) ** 2).sum(-1)
        a = (1 - self.level) / 2
        cols: dict[str, Any] = {}
        for j, t in enumerate(TARGETS):
            mean, lo, hi = [], [], []
            for row in dist:
                ok = np.flatnonzero(np.isfinite(self.y_[:, j]))
                near = self.y_[ok[np.argsort(row[ok])[: int(self.k)]], j] if len(ok) else np.array([np.nan])
                mean.append(float(np.mean(near)))
                lo.append(float(np.quantile(near, a)))
                hi.append(float(np.quantile(near, 1 - a)))
            cols[t], cols[f"{t}_low"], cols[f"{t}_high"] = mean, lo, hi
        return pl.DataFrame(cols)

    def predict(self, table: Any) -> np.ndarray:
        """Predicted (id, ood, ood_peak_fraction) per row, shape (n, 3)."""
        frame = self.predict_outcome(table)
        return np.column_stack([frame[t].to_numpy() for t in TARGETS])
