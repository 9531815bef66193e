"""Curve model: predict where the OOD score of an SFT stage peaks from the part of the curve seen so far.

A curve is the SFT slice of a trial: the last point before SFT (fraction 0) and the SFT evaluation
points, with `fraction` = compute into SFT / the SFT slice. The recorded peak is the first point
with the highest OOD score (as `stages` records it), so the model predicts that discrete argmax
on the evaluation grid, not a smooth maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from ptplan.stages.record import peak_index, sft_slice

CALIBRATION_FRACTIONS = (0.15, 0.3, 0.45, 0.6, 0.75)
DEFAULT_GRID_POINTS = 11  # evaluation points per slice assumed when a curve does not show its spacing
_MIN_NOISE = 5e-3  # score units: the least evaluation noise assumed
_MIN_WIDTH = 0.02  # interval widths below this count as this in the calibration scores
NOT_FITTED = ("This {name} is not fitted yet: call fit(curves) first, with the complete SFT curves of "
              "earlier trials (an empty list is allowed and gives a prior-only model).")

# Shape grid of the rise-then-fall family h(x; p, q, d, t, m): peak at p (p > 1: still rising at the
# end of the slice), a gamma-shaped rise (x/p)^q exp(q (1 - x/p)) before it (q < 1 concave, q > 1
# S-shaped), and after it a fall by d (in units of the rise) towards a floor,
# 1 - d (1 - exp(-((x - p)/t)^m)): large t is a steady decline, small t a drop that levels off,
# m = 2 a smooth top.
_P = np.r_[0.0, np.linspace(1 / 80, 1.0, 80), np.geomspace(1.05, 4.0, 16)]
_Q = np.array([0.5, 1.0, 2.0, 4.0])
_D = np.array([0.0, 0.3, 0.6, 1.0, 1.5])
_T = np.array([0.05, 0.1, 0.2, 0.35, 0.6, 1.2])
_M = np.array([1.0, 2.0])
_GRID = [a.ravel() for a in np.meshgrid(_P, _Q, _D, _T, _M, indexing="ij")]
_CENSORED_PRIOR = 0.25  # share of the uninformed prior on peaks beyond the end of the slice


def _broad_prior() -> np.ndarray:
    w = np.where(_GRID[0] <= 1.0, (1 - _CENSORED_PRIOR) / np.sum(_P <= 1.0), _CENSORED_PRIOR / np.sum(_P > 1.0))
    return w / (len(_GRID[0]) / len(_P))


_BROAD = _broad_prior()


# -- curves -------------------------------------------------------------------------------------
def as_curve(curve: Any) -> np.ndarray:
    """A curve as a float array (n, 4): fraction, ood, id, loss (NaN where absent), sorted by fraction.

    Accepts an array-like (n, k >= 2) with columns in that order, a polars/pandas DataFrame or a
    mapping with a `fraction` (or `x`) and an `ood` column, and optional `id` and `loss`.
    """
    if hasattr(curve, "columns") or isinstance(curve, dict):
        cols = list(curve.columns) if hasattr(curve, "columns") else list(curve)
        xcol = "fraction" if "fraction" in cols else "x" if "x" in cols else None
        if xcol is None or "ood" not in cols:
            raise ValueError(f"a curve needs `fraction` (or `x`) and `ood` columns, got {cols}")
        n = len(np.asarray(curve[xcol]))
        out = np.full((n, 4), np.nan)
        for j, name in enumerate((xcol, "ood", "id", "loss")):
            if name in cols:
                out[:, j] = np.asarray(curve[name], dtype=float)
    else:
        arr = np.asarray(curve, dtype=float)
        if arr.ndim == 1 and arr.size == 0:
            arr = arr.reshape(0, 2)
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise ValueError(f"a curve must be an array (n_points, 2..4) of fraction, ood[, id, loss]; "
                             f"got shape {arr.shape}")
        out = np.full((arr.shape[0], 4), np.nan)
        out[:, : min(arr.shape[1], 4)] = arr[:, :4]
    out = out[np.isfinite(out[:, 0])]
    if len(out) and (out[:, 0].min() < -1e-6 or out[:, 0].max() > 1 + 1e-6):
        raise ValueError(f"curve fractions must lie in [0, 1] (compute into SFT / the SFT slice), got "
                         f"{out[:, 0].min():.3g}..{out[:, 0].max():.3g}")
    out[:, 0] = np.clip(out[:, 0], 0.0, 1.0)
    return out[np.argsort(out[:, 0], kind="stable")]


def sft_curve(curves: Any):
    """The SFT slice of a trial's curves (a `curves.parquet` path or its polars frame), or None.

    Returns a polars DataFrame with fraction, ood, id, loss, compute: the last point before SFT
    (its train loss, from another stage, is dropped) and the SFT points.
    """
    import polars as pl

    frame = pl.read_parquet(curves) if isinstance(curves, (str, Path)) else curves
    series = sft_slice(frame.to_dicts())
    if not series:
        return None
    if series[0]["stage"] != "sft":  # the point SFT starts from: its train loss is another stage's
        series[0] = dict(series[0], loss=None)
    c0, c1 = series[0]["compute"], series[-1]["compute"]
    span = (c1 - c0) or 1.0

    def num(v):
        return float("nan") if v is None else float(v)

    return pl.DataFrame({
        "fraction": [min(max((r["compute"] - c0) / span, 0.0), 1.0) for r in series],
        "ood": [num(r["ood"]) for r in series], "id": [num(r["id"]) for r in series],
        "loss": [num(r["loss"]) for r in series], "compute": [float(r["compute"]) for r in series],
    })


def truncate(curve: Any, observed: float) -> np.ndarray:
    """The points of a curve up to `observed` (a fraction of the SFT slice)."""
    c = as_curve(curve)
    return c[c[:, 0] <= observed + 1e-9]


def peak_of(curve: Any) -> dict | None:
    """The recorded OOD peak of a complete curve: first argmax, its value, censored flag, flat flag."""
    c = as_curve(curve)
    c = c[np.isfinite(c[:, 1])]
    if not len(c):
        return None
    i, censored = peak_index(c[:, 1])
    return {"fraction": float(c[i, 0]), "value": float(c[i, 1]), "censored": bool(censored),
            "flat": bool(np.ptp(c[:, 1]) < 1e-12)}


def future_grid(curve: np.ndarray, default_points: int = DEFAULT_GRID_POINTS) -> np.ndarray:
    """Fractions of the evaluation points still to come after a partial curve (evenly spaced).

    The spacing is that of the observed points; with fewer than two, `default_points` per slice.
    """
    x = np.unique(curve[:, 0]) if len(curve) else np.empty(0)
    f = float(x.max()) if len(x) else 0.0
    if f >= 1.0 - 1e-9:
        return np.empty(0)
    if len(x) < 2:
        g = np.linspace(0.0, 1.0, max(default_points, 2))
        return g[g > f + 1e-9]
    step = float(np.median(np.diff(x)))
    k = max(int(round((1.0 - f) / step)), 1)
    return np.linspace(f, 1.0, k + 1)[1:]


# -- predictions --------------------------------------------------------------------------------
@dataclass
class PeakPrediction:
    """Predicted OOD peak of partial SFT curves, one entry per curve; intervals are central `level`.

    location: fraction of the SFT slice at which OOD peaks; value: the peak OOD score; behind: the
    probability that the peak is already among the observed points; observed: fraction seen.
    """

    observed: np.ndarray
    location: np.ndarray
    location_low: np.ndarray
    location_high: np.ndarray
    value: np.ndarray
    value_low: np.ndarray
    value_high: np.ndarray
    behind: np.ndarray
    behind_low: np.ndarray
    behind_high: np.ndarray
    level: float = 0.8

    def __len__(self) -> int:
        return len(self.location)

    def row(self, i: int) -> dict:
        return {f.name: float(getattr(self, f.name)[i]) for f in fields(self) if f.name != "level"}

    def to_frame(self):
        import polars as pl

        return pl.DataFrame({f.name: getattr(self, f.name) for f in fields(self) if f.name != "level"})

    @classmethod
    def stack(cls, rows: list[dict], level: float) -> "PeakPrediction":
        names = [f.name for f in fields(cls) if f.name != "level"]
        return cls(**{n: np.array([r[n] for r in rows], dtype=float) for n in names}, level=level)


def _conformal_margin(scores: Sequence[float], level: float) -> float:
    """Split-conformal margin: the finite-sample `level` quantile of nonconformity scores (0 if < 4)."""
    s = np.asarray([v for v in scores if not np.isnan(v)])
    if len(s) < 4:
        return 0.0
    q = min(1.0, math.ceil((len(s) + 1) * level) / len(s))
    m = float(np.quantile(s, q, method="higher"))
    return m if np.isfinite(m) else -0.5  # all but a few are exact: shrink the rest (to the point at most)


def _local_margin(calibration: dict, what: str, f: float, level: float, default: float = 0.0,
                  neighbours: int = 20) -> float:
    """Conformal margin from the calibration cases observed at fractions nearest to `f`.

    `calibration` holds the observed fraction `f` of each leave-one-out case and its scores by
    quantity. A fully observed curve needs no margin; fewer than 4 cases give `default`.
    """
    if f >= 1.0 - 1e-9:
        return 0.0
    fs, scores = np.asarray(calibration.get("f", [])), np.asarray(calibration.get(what, []))
    if len(scores) < 4:
        return default
    dist = np.abs(fs - f)
    radius = max(float(np.sort(dist)[min(neighbours, len(dist)) - 1]), 0.05)
    return _conformal_margin(scores[dist <= radius + 1e-12], level)


def calibration_cases(curve: np.ndarray) -> list[int]:
    """Prefix lengths of a complete curve at the calibration fractions (distinct, not the whole curve)."""
    ks = sorted({int(np.sum(curve[:, 0] <= f + 1e-9)) for f in CALIBRATION_FRACTIONS})
    return [k for k in ks if 0 < k < len(curve)]


def _score(point: float, lo: float, hi: float, truth: float) -> float:
    """Conformal score: the least margin (in interval widths, see `_widen`) that covers the truth.

    A truth equal to the point estimate is covered at any margin (-inf): exact cases, such as a
    peak already behind, must not stop the other intervals from shrinking.
    """
    if abs(truth - point) < 1e-12:
        return -math.inf
    edge = lo - truth if truth < point else truth - hi
    return edge / max(hi - lo, _MIN_WIDTH)


def _widen(point: float, lo: float, hi: float, margin: float, bounds=(0.0, 1.0)) -> tuple[float, float]:
    """Grow (or, for a negative margin, shrink) an interval by `margin` widths, keeping the point inside."""
    w = margin * max(hi - lo, _MIN_WIDTH)
    lo, hi = min(lo - w, point), max(hi + w, point)
    return max(lo, bounds[0]), min(hi, bounds[1])


# -- the rise-then-fall family ---------------------------------------------------------------------
def _rise(x, p, q):
    r = x / np.where(p > 0, p, 1.0)
    with np.errstate(over="ignore", under="ignore"):
        return np.where(p > 0, r ** q * np.exp(q * (1.0 - r)), 1.0)


def _fall(x, p, d, t, m):
    with np.errstate(over="ignore", under="ignore"):
        return 1.0 - d * (1.0 - np.exp(-(np.clip(x - p, 0.0, None) / t) ** m))


def _shape(x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """h(x) at points x (n,) for grid rows `rows` (default: the whole grid): (G, n), h(p) = 1."""
    x = np.asarray(x, dtype=float)
    if rows is not None:
        p, q, d, t, m = (g[rows][:, None] for g in _GRID)
        return np.where(x[None, :] <= p, _rise(x[None, :], p, q), _fall(x[None, :], p, d, t, m))
    # separable: the rise depends on (p, q) and the fall on (p, d, t, m) only
    P = _P[:, None, None]
    rise = _rise(x[None, None, :], P, _Q[None, :, None])  # (P, Q, n)
    D, T, M = (a.ravel()[None, :, None] for a in np.meshgrid(_D, _T, _M, indexing="ij"))
    fall = _fall(x[None, None, :], P, D, T, M)  # (P, DTM, n)
    before = (x[None, :] <= _P[:, None])[:, None, None, :]  # (P, 1, 1, n)
    out = np.where(before, rise[:, :, None, :], fall[:, None, :, :])
    return out.reshape(-1, len(x))


@dataclass
class _LinearPrior:
    """Gaussian prior on the offset c and amplitude a of c + a * h(x)."""

    mean: tuple[float, float] = (0.0, 0.0)
    sd: tuple[float, float] = (1.0, 1.0)


def _evidence(h: np.ndarray, y: np.ndarray, sd: np.ndarray, prior: _LinearPrior):
    """Bayesian linear regression of y on [1, h_g] for every grid row g, in closed form.

    `sd` is the noise standard deviation of each point. Returns the log marginal likelihood (G,),
    the posterior mean of (c, a) (G, 2) and the posterior covariance as its three distinct
    entries (c11, c12, c22), each (G,).
    """
    w = 1.0 / np.square(np.broadcast_to(sd, y.shape))
    lc, la = 1.0 / prior.sd[0] ** 2, 1.0 / prior.sd[1] ** 2
    mc, ma = prior.mean
    hw = h * w
    sh, shh = hw.sum(1), np.einsum("gn,gn->g", hw, h)
    a11, a12, a22 = w.sum() + lc, sh, shh + la
    b1 = (w @ y) + lc * mc
    b2 = hw @ y + la * ma
    det = a11 * a22 - a12 * a12
    m1, m2 = (a22 * b1 - a12 * b2) / det, (a11 * b2 - a12 * b1) / det
    quad = (w @ (y * y)) + lc * mc * mc + la * ma * ma - (b1 * m1 + b2 * m2)
    logev = (-0.5 * quad - 0.5 * np.log(det) + 0.5 * math.log(lc * la)
             - 0.5 * float(np.sum(np.log(2 * math.pi / w))))
    return logev, np.stack([m1, m2], -1), (a22 / det, -a12 / det, a11 / det)


def score_resolution(values: np.ndarray, max_examples: int = 1024) -> float | None:
    """The step of scores that are fractions of a test-set size (1/64 for 64 examples), or None.

    Needs eight distinct scores strictly between 0 and 1 so that a coarse step is not guessed
    from a few lucky values; scores with partial credit have no step.
    """
    v = np.unique(np.asarray(values, dtype=float))
    v = v[np.isfinite(v) & (v > 0) & (v < 1)]
    if len(v) < 8:
        return None
    ks = np.arange(1, max_examples + 1)
    prod = v[:, None] * ks[None, :]
    ok = np.all(np.abs(prod - np.round(prod)) < 1e-6 * ks[None, :], axis=0)
    return float(1.0 / ks[np.argmax(ok)]) if ok.any() else None


def _on_grid(values: np.ndarray, step: float | None) -> bool:
    if step is None:
        return False
    v = values[np.isfinite(values)] / step
    return bool(np.all(np.abs(v - np.round(v)) < 1e-6 / step))


def _least_squares(h: np.ndarray, y: np.ndarray):
    """Least-squares fit of y on [1, h_g] for every grid row: residual sums of squares (G,) and (c, a)."""
    n = len(y)
    sh, shh = h.sum(1), (h * h).sum(1)
    sy, shy = y.sum(), h @ y
    det = n * shh - sh * sh
    ok = det > 1e-12 * max(n, 1) * np.maximum(shh, 1e-12)
    safe = np.where(ok, det, 1.0)
    a = np.where(ok, (n * shy - sh * sy) / safe, 0.0)
    c = np.where(ok, (sy - a * sh) / max(n, 1), sy / max(n, 1))
    resid = y[None, :] - c[:, None] - a[:, None] * h
    return (resid * resid).sum(1), np.stack([c, a], -1)


def _smooth_p(post: np.ndarray, width: float = 1.5) -> np.ndarray:
    """Blur a grid posterior along the peak-location axis (index units) so one curve is not a spike."""
    k = np.exp(-0.5 * (np.arange(-4, 5) / width) ** 2)
    k /= k.sum()
    cube = post.reshape(len(_P), -1)
    pad = np.pad(cube, ((4, 4), (0, 0)), mode="edge")
    out = sum(k[i] * pad[i: i + len(_P)] for i in range(len(k)))
    return (out / out.sum()).ravel()


class OODPeakModel(BaseEstimator):
    """Predicts the OOD peak of an SFT stage (where, how high, already passed?) from a partial curve.

    The OOD curve is modelled as c + a * h(x), h a rise to a peak at p and a fall after it (p > 1:
    still rising at the end of the slice); the shape of h lives on a fixed grid. Its prior is the
    mixture of the grid posteriors of the prior curves (empirical Bayes) plus an uninformed part;
    (c, a) are integrated in closed form. Evaluation noise is learned from the prior curves, with a
    binomial part when scores are fractions of a test set. Prediction draws curves from the
    posterior, adds noise at the evaluation points still to come and takes the recorded argmax
    (first of ties), so the answer is the distribution of the peak the trial will record. Interval
    widths get conformal margins from the prior curves, left out one at a time.

    Args:
        level: central probability of the intervals.
        n_samples: posterior draws per prediction.
        n_bootstrap: Bayesian-bootstrap draws over prior curves for the interval of `behind`.
        noise: evaluation noise (score units), beyond any binomial part; None: learned.
        calibrate: calibrate interval widths on the prior curves (leave one curve out).
        bandwidth: with `features` (the SFT settings of each curve's trial, e.g. log learning rate,
            log rank, SFT share), a prior curve's weight in a query's prior is a Gaussian kernel of the
            standardized feature distance with this bandwidth: curves of similar settings shape the prior
            most. Without features every prior curve weighs the same.
        random_state: seed of the posterior draws.
    """

    def __init__(self, *, level: float = 0.8, n_samples: int = 2000, n_bootstrap: int = 64,
                 noise: float | None = None, calibrate: bool = True, bandwidth: float = 1.0,
                 random_state: int | None = 0):
        self.level = level
        self.n_samples = n_samples
        self.n_bootstrap = n_bootstrap
        self.noise = noise
        self.calibrate = calibrate
        self.bandwidth = bandwidth
        self.random_state = random_state

    # -- fit ---------------------------------------------------------------------------------------
    def fit(self, curves: Sequence[Any] | None = None, y: None = None,
            features: Any = None) -> "OODPeakModel":
        """Learn the prior over curve shapes from complete SFT curves of earlier trials.

        Args:
            curves: complete curves (see `as_curve`); empty or None gives the uninformed prior.
            features: optional (n_curves, d) SFT settings of each curve's trial (numbers; see
                `bandwidth`); queries then pass theirs to `predict_peak`.
        """
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {self.level!r}")
        if int(self.n_samples) < 10:
            raise ValueError(f"n_samples must be >= 10, got {self.n_samples!r}")
        if self.noise is not None and not self.noise > 0:
            raise ValueError(f"noise must be > 0 or None, got {self.noise!r}")
        if not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {self.bandwidth!r}")
        parsed = [as_curve(c) for c in (curves if curves is not None else [])]
        feats = None
        if features is not None:
            feats = np.asarray(features, dtype=float).reshape(len(parsed), -1) if len(parsed) else None
        with threadpool_limits(1, user_api="blas"):  # small arrays: extra BLAS threads only contend
            return self._fit([c[np.isfinite(c[:, 1])] for c in parsed], feats)

    def _fit(self, parsed: list[np.ndarray], feats: np.ndarray | None = None) -> "OODPeakModel":
        keep = [i for i, c in enumerate(parsed) if len(c) >= 3 and np.ptp(c[:, 1]) > 1e-12]
        informative = [parsed[i] for i in keep]
        self.features_ = None
        if feats is not None and keep:
            f = feats[keep]
            self.feature_mean_ = np.nanmean(f, axis=0)
            self.feature_scale_ = np.where(np.nanstd(f, axis=0) > 0, np.nanstd(f, axis=0), 1.0)
            self.features_ = self._standardize(f)
        self.n_curves_ = len(parsed)
        self.n_informative_ = len(informative)
        lengths = [len(c) for c in parsed if len(c) >= 2]
        self.grid_points_ = int(np.median(lengths)) if lengths else DEFAULT_GRID_POINTS

        broad_lin = _LinearPrior((0.0, 0.0), (1.0, 1.0))
        fits = []
        for c in informative:
            h = _shape(c[:, 0])
            sse, coef = _least_squares(h, c[:, 1])
            g = int(np.argmin(sse))
            resid = c[:, 1] - coef[g, 0] - coef[g, 1] * h[g]
            # the grid fit uses up about four degrees of freedom: inflate its residuals (at most 2x)
            fits.append((h, resid * math.sqrt(len(c) / max(len(c) - 4, len(c) / 2)), coef[g]))
        self.resolution_ = score_resolution(np.concatenate([c[:, 1] for c in parsed])) if parsed else None
        self.noise_, self.noise_scale_ = self._noise_model(fits, informative)
        if fits:
            cs = np.array([m[0] for _, _, m in fits])
            amps = np.array([m[1] for _, _, m in fits])
            spread = 1.4826 * np.median(np.abs(amps - np.median(amps)))
            self.linear_prior_ = _LinearPrior((float(np.median(cs)), float(np.median(amps))),
                                              (1.0, float(max(spread * 2.0, 0.1))))
        else:
            self.linear_prior_ = _LinearPrior((0.0, 0.0), (1.0, 0.5))
        posts = []
        for (h, _, _), c in zip(fits, informative):
            logev, _, _ = _evidence(h, c[:, 1], self._sd(c[:, 1]), broad_lin)
            w = np.exp(logev - logev.max()) * _BROAD
            posts.append(_smooth_p(w / w.sum()))
        self.components_ = np.array(posts) if posts else np.empty((0, len(_GRID[0])))
        self.components_sum_ = self.components_.sum(0)
        self.calibration_ = {"f": [], "location": [], "value": []}
        if self.calibrate and len(informative) >= 4:
            self._calibrate(informative, [h for h, _, _ in fits])
        return self

    def _noise_model(self, fits, curves) -> tuple[float, float]:
        """Evaluation noise: var = noise^2 + scale * q(1 - q)/n_test, by regressing the squared
        residuals of the prior fits on the binomial term (which is 0 when scores have no step)."""
        if self.noise is not None:
            return float(self.noise), 0.0
        if not fits:
            return 0.05, 0.0
        r2 = np.concatenate([r * r for _, r, _ in fits])
        v = np.concatenate([self._binomial_var(c[:, 1]) for c in curves])
        if self.resolution_ is None or np.ptp(v) < 1e-12:
            return max(math.sqrt(float(np.mean(r2))), _MIN_NOISE), 0.0
        from scipy.optimize import nnls

        (s0, k), _ = nnls(np.column_stack([np.ones_like(v), v]), r2)
        return max(math.sqrt(s0), _MIN_NOISE), float(k)

    def _binomial_var(self, y: np.ndarray) -> np.ndarray:
        step = self.resolution_
        if step is None:
            return np.zeros_like(y)
        q = np.clip(y, step, 1.0 - step)
        return q * (1.0 - q) * step

    def _sd(self, y: np.ndarray) -> np.ndarray:
        return np.sqrt(self.noise_ ** 2 + self.noise_scale_ * self._binomial_var(y))

    def _standardize(self, f: np.ndarray) -> np.ndarray:
        return np.nan_to_num((np.asarray(f, dtype=float) - self.feature_mean_) / self.feature_scale_)

    def _weights(self, x: np.ndarray | None, exclude: int | None = None) -> np.ndarray | None:
        """Kernel weights of the prior curves for a query's standardized features (None: equal)."""
        if x is None or self.features_ is None or not len(self.components_):
            return None
        d2 = ((self.features_ - x) ** 2).sum(1)
        w = np.exp(-0.5 * d2 / self.bandwidth ** 2)
        if exclude is not None:
            w[exclude] = 0.0
        return w if w.sum() > 1e-12 else None

    def _prior(self, exclude: int | None = None, x: np.ndarray | None = None) -> np.ndarray:
        """The empirical-Bayes prior on the shape grid, optionally without prior curve `exclude` and
        weighted towards curves with features near `x` (standardized)."""
        comps = self.components_
        n = len(comps) - (exclude is not None)
        if n <= 0:
            return _BROAD.copy()
        w = self._weights(x, exclude)
        if w is not None:
            n_eff = w.sum() ** 2 / (w ** 2).sum()
            w0 = max(1.0 / (n_eff + 1), 0.02)
            return w0 * _BROAD + (1 - w0) * (w @ comps) / w.sum()
        total = self.components_sum_ - (comps[exclude] if exclude is not None else 0.0)
        w0 = max(1.0 / (n + 1), 0.02)
        return w0 * _BROAD + (1 - w0) * total / n

    def _calibrate(self, curves: list[np.ndarray], shapes: list[np.ndarray]) -> None:
        """Conformal margins of the intervals, leave one curve out, at several observed fractions."""
        rng = check_random_state(self.random_state)
        n = max(self.n_samples // 4, 200)
        cases = []
        for j, (c, h) in enumerate(zip(curves, shapes)):
            truth = peak_of(c)
            prior = self._prior(exclude=j, x=None if self.features_ is None else self.features_[j])
            for k in calibration_cases(c):
                d = self._draw(c[:k], prior, None, rng, n, h=h[:, :k])
                cases.append((d, truth))
        cal: dict[str, list] = {"f": [], "location": [], "value": []}
        for d, truth in cases:
            r = self._summarize(d)
            cal["f"].append(d["observed"])
            cal["location"].append(_score(r["location"], r["location_low"], r["location_high"], truth["fraction"]))
            cal["value"].append(_score(r["value"], r["value_low"], r["value_high"], truth["value"]))
        self.calibration_ = cal

    # -- predict -----------------------------------------------------------------------------------
    def predict_peak(self, curves: Sequence[Any], grid: Sequence[float] | None = None,
                     features: Any = None) -> PeakPrediction:
        """Predict the OOD peak of each partial curve.

        Args:
            curves: partial curves (points up to the fraction observed so far).
            grid: fractions of all evaluation points of the slice; default: continue the observed spacing.
            features: (n_curves, d) SFT settings of each query, as given to `fit` (ignored when fit had none).
        """
        check_is_fitted(self, msg=NOT_FITTED.format(name=type(self).__name__))
        rng = check_random_state(self.random_state)
        parsed = [as_curve(c) for c in curves]
        xs = [None] * len(parsed)
        if features is not None and getattr(self, "features_", None) is not None:
            xs = list(self._standardize(np.asarray(features, dtype=float).reshape(len(parsed), -1)))
        with threadpool_limits(1, user_api="blas"):
            rows = [self._predict_one(c, self._prior(x=x), grid, rng, int(self.n_samples), x)
                    for c, x in zip(parsed, xs)]
        return PeakPrediction.stack(rows, self.level)

    def predict(self, curves: Sequence[Any]) -> np.ndarray:
        """Predicted peak location (fraction of the SFT slice) of each partial curve."""
        return self.predict_peak(curves).location

    def _predict_one(self, curve: np.ndarray, prior: np.ndarray, grid, rng, n_samples: int,
                     x: np.ndarray | None = None) -> dict:
        d = self._draw(curve, prior, grid, rng, n_samples)
        if d is None:  # nothing observed and nothing to come: no evidence at all
            f = float(curve[:, 0].max()) if len(curve) else 0.0
            return {"observed": f, "location": 0.5, "location_low": 0.0, "location_high": 1.0, "value": 0.5,
                    "value_low": 0.0, "value_high": 1.0, "behind": 0.5, "behind_low": 0.0, "behind_high": 1.0}
        out = self._summarize(d)
        f = d["observed"]
        out["location_low"], out["location_high"] = _widen(
            out["location"], out["location_low"], out["location_high"],
            _local_margin(self.calibration_, "location", f, self.level))
        out["value_low"], out["value_high"] = _widen(
            out["value"], out["value_low"], out["value_high"],
            _local_margin(self.calibration_, "value", f, self.level))
        out["behind_low"], out["behind_high"] = self._behind_interval(out["behind"], d, prior, rng, self._weights(x))
        return out

    def _draw(self, curve: np.ndarray, prior: np.ndarray, grid, rng, n_samples: int,
              h: np.ndarray | None = None) -> dict | None:
        """Posterior draws of the recorded peak of one partial curve (None without any evaluation point).

        `h` may hold the family at the curve's finite points (saves recomputing it).
        """
        f = float(curve[:, 0].max()) if len(curve) else 0.0
        obs = curve[np.isfinite(curve[:, 1])]
        x, y = obs[:, 0], obs[:, 1]
        if grid is not None:
            g = np.asarray(grid, dtype=float)
            xf = np.unique(g[g > f + 1e-9])
        else:
            xf = future_grid(curve, self.grid_points_)
        if not len(y) and not len(xf):
            return None
        if len(y):
            h = _shape(x) if h is None else h
            logev, mean, cov = _evidence(h, y, self._sd(y), self.linear_prior_)
        else:
            g = len(_GRID[0])
            lp = self.linear_prior_
            logev, mean = np.zeros(g), np.tile(np.array(lp.mean), (g, 1))
            cov = (np.full(g, lp.sd[0] ** 2), np.zeros(g), np.full(g, lp.sd[1] ** 2))
        logpost = np.log(np.maximum(prior, 1e-300)) + logev
        post = np.exp(logpost - logpost.max())
        post /= post.sum()
        gs = rng.choice(len(post), size=n_samples, p=post)
        c11, c12, c22 = (c[gs] for c in cov)
        l11 = np.sqrt(np.maximum(c11, 0))
        l21 = np.where(l11 > 0, c12 / np.where(l11 > 0, l11, 1), 0)
        l22 = np.sqrt(np.maximum(c22 - l21 ** 2, 0))
        z1, z2 = rng.standard_normal(n_samples), rng.standard_normal(n_samples)
        cs = mean[gs, 0] + l11 * z1
        amps = mean[gs, 1] + l21 * z1 + l22 * z2
        if len(xf):
            hf = _shape(xf, gs)
            mu = np.clip(cs[:, None] + amps[:, None] * hf, 0.0, 1.0)
            yf = np.clip(mu + self._sd(mu) * rng.standard_normal(hf.shape), 0.0, 1.0)
            step = self.resolution_ if _on_grid(y, self.resolution_) else None
            if step is not None:  # scores are fractions of a test set: a future tie is no new peak
                yf = np.round(yf / step) * step
        else:
            yf = np.empty((n_samples, 0))
        full = np.concatenate([np.broadcast_to(y, (n_samples, len(y))), yf], axis=1)
        xs = np.concatenate([x, xf])
        idx = np.argmax(full, axis=1)
        loc, behind = xs[idx], idx < len(y)
        # the peak sits on the evaluation grid; spread each future draw over its grid cell so that
        # interval ends are not forced onto grid points (which would make every interval over-cover)
        half = 0.5 * float(np.median(np.diff(xs))) if len(xs) > 1 else 0.0
        spread = np.clip(loc + np.where(behind, 0.0, half * rng.uniform(-1.0, 1.0, n_samples)), 0.0, 1.0)
        return {"observed": f, "location": loc, "spread": spread, "value": full[np.arange(n_samples), idx],
                "behind": behind, "grid_rows": gs, "can_be_behind": bool(len(y)), "can_be_ahead": bool(len(xf))}

    def _summarize(self, d: dict) -> dict:
        """Point estimates (medians) and raw central intervals from posterior draws."""
        a = (1 - self.level) / 2
        lo, hi = np.quantile(d["spread"], [a, 1 - a])
        v_lo, v_mid, v_hi = np.quantile(d["value"], [a, 0.5, 1 - a])
        return {"observed": d["observed"], "location": float(np.median(d["location"])),
                "location_low": float(lo), "location_high": float(hi), "value": float(v_mid),
                "value_low": float(v_lo), "value_high": float(v_hi), "behind": float(d["behind"].mean())}

    def _behind_interval(self, p: float, d: dict, prior: np.ndarray, rng,
                         weights: np.ndarray | None = None) -> tuple[float, float]:
        """Interval of P(peak behind): Bayesian bootstrap over prior curves (kernel-weighted when the
        query has features), Beta(J + 2) when too few."""
        a = (1 - self.level) / 2
        comps = self.components_
        if not (d["can_be_behind"] and d["can_be_ahead"]):  # certain: nothing seen, or nothing to come
            return p, p
        if len(comps) < 2:
            return self._beta(p, len(comps), a)
        gs, behind = d["grid_rows"], d["behind"]
        u = rng.dirichlet(np.ones(len(comps)), size=int(self.n_bootstrap))
        n = len(comps)
        if weights is not None:
            u = u * weights[None, :]
            u /= u.sum(1, keepdims=True)
            n = weights.sum() ** 2 / (weights ** 2).sum()
        w0 = max(1.0 / (n + 1), 0.02)
        ratio = (w0 * _BROAD[gs][None, :] + (1 - w0) * (u @ comps[:, gs])) / prior[gs][None, :]
        pb = (ratio * behind[None, :]).sum(1) / ratio.sum(1)
        lo, hi = np.quantile(pb, [a, 1 - a])
        return float(min(lo, p)), float(max(hi, p))

    @staticmethod
    def _beta(p: float, n_curves: int, a: float) -> tuple[float, float]:
        from scipy.stats import beta

        k = n_curves + 2
        lo, hi = beta.ppf([a, 1 - a], p * k + 0.5, (1 - p) * k + 0.5)
        return float(min(lo, p)), float(max(hi, p))
