"""Outcome model: allocation (+ budget, backbone size) -> final ID, final OOD, OOD peak fraction of SFT.

Fitted on the study's trial table (polars, one row per trial, studies/_table.py). One Gaussian
process per target on encoded allocation features: a Matern kernel with one length scale per
feature for the shape of the response, plus a linear kernel so that predictions for budgets never
run follow the trend in log budget instead of falling back to the mean, plus noise. Interval widths
are calibrated on held-out residuals: two-fold cross-fitting with the hyperparameters refitted per
fold below 300 trials, closed-form leave-one-out above.

Noise the model knows: each score is a fraction of n evaluation items, so a row's score carries a
binomial variance p(1-p)/n (n from `id_items`/`ood_items` columns, else the estimator's arguments);
it enters the GP as a per-row noise floor. Replicates (rows with the same allocation and different
training seeds) give a pooled within-allocation variance (never below the floor); without
replicates the re-run noise falls back to the binomial floor. Runs of one training seed share that
seed's offset (regenerated data and checkpoints), which a study at one seed cannot see: the model
counts it as one draw of the re-run noise per seed in the table. Two intervals: `<t>_low/_high` for
the expected score of an allocation (its mean over seeds: latent variance + re-run noise / seeds),
`<t>_rerun_low/_rerun_high` for one new run of it with a new seed (latent + re-run noise * (1 +
1/seeds)). The GP's white-noise lower bound is low (1e-3 standardized) so the floor can carry it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

TARGETS = ("id", "ood", "ood_peak_fraction")
SCORES = ("id", "ood")  # binomial targets: fractions of evaluation items
BASE_FEATURES = ("share_cpt", "share_sft", "share_rl", "rank_cpt", "rank_sft", "rank_rl", "budget_total",
                 "parameters", "budget_unit", "suite")  # `suite`: tables that pool several studies' suites
LOG_COLUMNS = ("budget_total", "parameters")
FULL_RANK_CODE = 12.0  # rank 0 = full fine-tuning, encoded as log2 rank 4096: more capacity than any adapter
NOT_FITTED = ("This {name} is not fitted yet: call fit(table) first with the study's trial table "
              "(COMPLETE rows with final `id`, `ood` and allocation columns).")


def _is_duplicate_param(name: str) -> bool:
    """Searched plan paths that the table already holds as share_* / rank_* columns."""
    return name.startswith("param.allocation.shares.") or name.endswith(".rank")


def feature_columns(table) -> list[str]:
    """The allocation columns of a trial table that the outcome model uses, in a stable order."""
    cols = [c for c in BASE_FEATURES if c in table.columns]
    cols += sorted(c for c in table.columns if c.startswith("param.") and not _is_duplicate_param(c))
    return cols


def _as_frame(table: Any):
    import polars as pl

    if isinstance(table, pl.DataFrame):
        return table
    if isinstance(table, (list, dict)):
        return pl.DataFrame(table, strict=False)
    if hasattr(table, "to_dict") and hasattr(table, "columns"):  # pandas
        return pl.from_pandas(table)
    raise TypeError(f"expected a polars DataFrame (the trial table), got {type(table).__name__}")


class _Encoder:
    """Column -> numeric features: rank as log2 (full fine-tuning highest), budget and size as log10,
    searched numbers spanning a decade or more as log10, strings and booleans one-hot."""

    def __init__(self, frame, columns: list[str]):
        self.columns, self.kinds, self.categories = columns, {}, {}
        for col in columns:
            raw = [v for v in frame[col].to_list() if v is not None]
            if col == "budget_unit" or any(isinstance(v, (str, bool)) for v in raw):
                self.kinds[col] = "cat"
                self.categories[col] = sorted({str(v) for v in raw})
            elif col.startswith("rank_"):
                self.kinds[col] = "rank"
            else:
                vals = np.array([float(v) for v in raw if v == v], dtype=float)
                logish = col in LOG_COLUMNS or (len(vals) and vals.min() > 0 and vals.max() / vals.min() >= 10)
                self.kinds[col] = "log" if logish else "num"
        self.names = [f"{c}={k}" for c in columns if self.kinds[c] == "cat" for k in self.categories[c]]
        self.names = [c for c in columns if self.kinds[c] != "cat"] + self.names

    def transform(self, frame) -> tuple[np.ndarray, list[list[str]]]:
        """Encoded matrix (NaN where missing) and, per row, the columns whose value was never seen."""
        n = frame.height
        num, cat, unseen = [], [], [[] for _ in range(n)]
        for col in self.columns:
            kind = self.kinds[col]
            if col not in frame.columns:
                raise ValueError(f"missing column {col!r}: the model was fitted with it ({', '.join(self.columns)})")
            vals = frame[col].to_list()
            if kind == "cat":
                for k in self.categories[col]:
                    cat.append([float(v is not None and str(v) == k) for v in vals])
                for i, v in enumerate(vals):
                    if v is not None and str(v) not in self.categories[col]:
                        unseen[i].append(col)
                continue
            x = np.array([np.nan if v is None else float(v) for v in vals], dtype=float)
            if kind == "rank":
                x = np.where(x == 0, FULL_RANK_CODE, np.log2(np.where(x > 0, x, np.nan)))
            elif kind == "log":
                x = np.log10(np.where(x > 0, x, np.nan))
            num.append(x)
        X = np.column_stack(num + [np.asarray(c, dtype=float) for c in cat]) if num or cat else np.empty((n, 0))
        return X, unseen


def _lbfgs(obj_func, theta0, bounds):
    """L-BFGS-B on the log marginal likelihood with a bounded number of iterations (fit time)."""
    from scipy.optimize import minimize

    res = minimize(obj_func, theta0, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": 60})
    return res.x, res.fun


def _kernel(d: int):
    from sklearn.gaussian_process.kernels import ConstantKernel, DotProduct, Matern, WhiteKernel

    return (ConstantKernel(1.0, (1e-2, 1e2)) * Matern(np.ones(d), (0.3, 1e2), nu=2.5)
            + ConstantKernel(0.05, (1e-4, 1e1)) * DotProduct(1.0, sigma_0_bounds="fixed")
            + WhiteKernel(0.1, (1e-3, 2.0)))


def binomial_var(p, n) -> np.ndarray:
    """Variance of a score that is a fraction of `n` items with success rate `p` (p shrunk off 0 and 1
    by half an item, so a score of 0 still carries noise); 0 where n is unknown."""
    p, n = np.asarray(p, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.clip((p * n + 0.5) / (n + 1.0), 0.0, 1.0)
        v = q * (1 - q) / n
    return np.where(np.isfinite(v) & (n > 0), v, 0.0)


def _white(gp) -> float:
    """The fitted WhiteKernel noise level of a GP from `_kernel` (standardized units)."""
    return float(gp.kernel_.k2.noise_level)


def _gp(X: np.ndarray, z: np.ndarray, max_opt_samples: int, rng, start=None, alpha=None):
    """A GP on (X, z) with per-row noise `alpha` (standardized variance) on top of the learned white
    noise: hyperparameters by marginal likelihood on at most `max_opt_samples` rows, starting from
    the kernel `start` when given."""
    from sklearn.gaussian_process import GaussianProcessRegressor

    alpha = np.full(len(z), 1e-10) if alpha is None else np.maximum(alpha, 1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pick = rng.choice(len(z), min(len(z), max_opt_samples), replace=False)
        kernel = start if start is not None else _kernel(X.shape[1])
        kernel = GaussianProcessRegressor(kernel, alpha=alpha[pick], optimizer=_lbfgs).fit(X[pick], z[pick]).kernel_
        return GaussianProcessRegressor(kernel, alpha=alpha, optimizer=None).fit(X, z)


def _replicate_var(y: np.ndarray, groups: np.ndarray) -> tuple[int, int, float]:
    """Pooled within-allocation variance of `y` over allocations run more than once: (allocations,
    degrees of freedom, variance); (0, 0, nan) without replicates."""
    ss, dof, k = 0.0, 0, 0
    for g in np.unique(groups):
        v = y[groups == g]
        if len(v) > 1:
            ss += float(((v - v.mean()) ** 2).sum())
            dof += len(v) - 1
            k += 1
    return k, dof, ss / dof if dof else float("nan")


class _Process:
    """One target: a GP on standardized features, or the training mean when too few rows."""

    LOO_TRIALS = 300  # from here on hyperparameters are well determined and leave-one-out is honest

    def __init__(self, X: np.ndarray, y: np.ndarray, level: float, max_opt_samples: int, rng,
                 floor: np.ndarray | None = None, replicate_var: float | None = None, seeds: int = 1):
        self.n = len(y)
        self.mean_y = float(np.mean(y)) if len(y) else 0.5
        self.std_y = float(np.std(y)) if len(y) > 1 and np.std(y) > 1e-9 else 1.0
        self.scale, self.gp, self.replicate_var, self.seeds = 1.0, None, replicate_var, max(int(seeds), 1)
        floor = np.zeros(len(y)) if floor is None else np.asarray(floor, float)
        self.mean_floor = float(floor.mean()) if len(floor) else 0.0
        if len(y) < 3:
            return
        X = X if X.shape[1] else np.zeros((len(y), 1))
        z = (y - self.mean_y) / self.std_y
        alpha = floor / self.std_y ** 2
        self.gp = _gp(X, z, max_opt_samples, rng, alpha=alpha)
        self.scale = self._calibrate(X, z, level, max_opt_samples, rng, alpha)

    def _calibrate(self, X, z, level: float, max_opt_samples: int, rng, alpha) -> float:
        """Interval scale: the needed over the nominal half-width on held-out standardized residuals.

        Few trials: two-fold cross-fitting, hyperparameters refitted per fold (leave-one-out with
        hyperparameters tuned on all trials is over-confident there). Many: closed-form LOO.
        """
        from scipy.linalg import lapack
        from scipy.stats import norm

        n = len(z)
        if n < 10:
            return 1.5
        if n >= self.LOO_TRIALS:
            inv, info = lapack.dpotri(self.gp.L_, lower=1)  # K^-1 from its Cholesky factor
            if info != 0:
                return 1.0
            d = np.diag(inv)
            zs = np.abs(self.gp.alpha_.ravel() / d) * np.sqrt(d)  # |LOO residual| / LOO sd
        else:
            order = rng.permutation(n)
            halves = (order[: n // 2], order[n // 2:])
            zs = []
            for train, test in (halves, halves[::-1]):
                gp = _gp(X[train], z[train], max_opt_samples, rng, start=self.gp.kernel_, alpha=alpha[train])
                m, s = gp.predict(X[test], return_std=True)
                zs.append(np.abs(z[test] - m) / np.maximum(np.sqrt(s ** 2 + alpha[test]), 1e-9))
            zs = np.concatenate(zs)
        q = min(1.0, math.ceil((n + 1) * level) / n)
        return float(np.clip(np.quantile(zs, q) / norm.ppf(0.5 + level / 2), 0.5, 4.0))

    def predict(self, X: np.ndarray, items: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, sd of the expected score (mean over seeds) and sd of one re-run, in score units.

        Re-run noise: the binomial floor at the predicted score (`items` per query) plus the noise the
        GP saw within the study, or the pooled replicate variance where replicates show more. The
        fitted mean carries the offsets of the table's seeds: re-run noise / seeds on top of the
        latent variance."""
        if self.gp is None:
            spread = 0.5 if self.n < 2 else max(self.std_y, 0.1)
            return np.full(len(X), self.mean_y), np.full(len(X), spread), np.full(len(X), spread)
        m, s = self.gp.predict(X if X.shape[1] else np.zeros((len(X), 1)), return_std=True)
        latent = np.maximum(s ** 2 - _white(self.gp), 0.0) * (self.std_y * self.scale) ** 2
        mean = m * self.std_y + self.mean_y
        floor = binomial_var(np.clip(mean, 0, 1), items) if items is not None else np.full(len(X), self.mean_floor)
        within = floor + _white(self.gp) * self.std_y ** 2
        noise = np.maximum(within, self.replicate_var) if self.replicate_var is not None else within
        expected = latent + noise / self.seeds
        return mean, np.sqrt(expected), np.sqrt(expected + noise)


class OutcomeModel(BaseEstimator):
    """Predicts final ID, final OOD and the OOD peak fraction of SFT from a trial's allocation.

    Features are the trial table's shares, ranks, searched plan fields (`param.*`), budget
    (log10) and backbone size (`parameters`, log10) when present. Each prediction carries a
    central `level` interval and an extrapolation flag: a query outside the range of the
    training trials in any feature (or with a category never seen), e.g. a budget never run.

    Args:
        level: central probability of the intervals.
        features: table columns to use; None: `feature_columns(table)`.
        max_opt_samples: trials used to fit the kernel hyperparameters (all trials are used for
            the posterior); bounds the fitting time on large tables.
        random_state: seed for the hyperparameter subsample and optimizer.
        id_items, ood_items: evaluation items behind one ID / OOD score (the plan's
            `data.sizes.id_test` / `ood_test`) for tables without `id_items` / `ood_items` columns;
            None there: no binomial floor.
    """

    def __init__(self, *, level: float = 0.8, features: list[str] | None = None, max_opt_samples: int = 100,
                 random_state: int | None = 0, id_items: int | None = None, ood_items: int | None = None):
        self.level = level
        self.features = features
        self.max_opt_samples = max_opt_samples
        self.random_state = random_state
        self.id_items = id_items
        self.ood_items = ood_items

    def _items(self, frame, target: str) -> np.ndarray | None:
        """Items per row behind `target`'s score: the `<target>_items` column, else the argument."""
        default = {"id": self.id_items, "ood": self.ood_items}.get(target)
        if target not in SCORES:
            return None
        col = f"{target}_items"
        if col in frame.columns:
            vals = [default if v is None else v for v in frame[col].to_list()]
            return np.array([np.nan if v is None else float(v) for v in vals])
        return None if default is None else np.full(frame.height, float(default))

    def fit(self, table: Any, y: None = None) -> "OutcomeModel":
        """Fit on the COMPLETE rows of a trial table (polars DataFrame)."""
        import polars as pl

        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {self.level!r}")
        if int(self.max_opt_samples) < 3:
            raise ValueError(f"max_opt_samples must be >= 3, got {self.max_opt_samples!r}")
        frame = _as_frame(table)
        if "state" in frame.columns:
            frame = frame.filter(pl.col("state") == "COMPLETE")
        missing = [t for t in ("id", "ood") if t not in frame.columns]
        if missing:
            raise ValueError(f"the trial table has no {', '.join(missing)} column (final scores)")
        cols = list(self.features) if self.features is not None else feature_columns(frame)
        absent = [c for c in cols if c not in frame.columns]
        if absent:
            raise ValueError(f"feature columns not in the table: {', '.join(absent)}")
        if not frame.height:
            raise ValueError("no COMPLETE trials to fit on")
        for name in ("id_items", "ood_items"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, np.integer)) and v > 0):
                raise ValueError(f"{name} must be a positive integer or None, got {v!r}")
        with threadpool_limits(1, user_api="blas"):  # small matrices: extra BLAS threads only contend
            return self._fit(frame, cols)

    def _fit(self, frame, cols: list[str]) -> "OutcomeModel":
        rng = check_random_state(self.random_state)
        self.encoder_ = _Encoder(frame, cols)
        X, _ = self.encoder_.transform(frame)
        self.feature_names_ = self.encoder_.names
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.fill_ = np.nan_to_num(np.nanmedian(X, 0)) if X.size else np.zeros(X.shape[1])
        X = np.where(np.isnan(X), self.fill_, X)
        self.low_, self.high_ = (X.min(0), X.max(0)) if len(X) else (np.zeros(0), np.zeros(0))
        center, scale = X.mean(0), X.std(0)
        self.active_ = scale > 1e-12  # constant features carry no signal but still bound extrapolation
        self.center_, self.scale_ = center, np.where(self.active_, scale, 1.0)
        Z = ((X - self.center_) / self.scale_)[:, self.active_]
        self.processes_ = {}
        self.n_trials_ = {}
        self.replicates_ = {}  # per target: (allocations with >= 2 runs, degrees of freedom, variance)
        self.noise_source_ = {}
        groups = np.unique(np.round(X, 9), axis=0, return_inverse=True)[1].ravel() if len(X) else np.zeros(0, int)
        seed_col = "seed" if "seed" in frame.columns else None
        self.seeds_ = len(set(frame[seed_col].drop_nulls().to_list())) or 1 if seed_col else 1
        for t in TARGETS:
            yv = (np.array([np.nan if v is None else float(v) for v in frame[t].to_list()])
                  if t in frame.columns else np.full(frame.height, np.nan))
            ok = np.isfinite(yv)
            self.n_trials_[t] = int(ok.sum())
            items = self._items(frame, t)
            floor = binomial_var(yv, items)[ok] if items is not None else np.zeros(int(ok.sum()))
            rep = _replicate_var(yv[ok], groups[ok])
            self.replicates_[t] = rep
            rep_var = None
            if rep[1] > 0:
                rep_var = max(rep[2], float(floor.mean()) if len(floor) else 0.0)
                self.noise_source_[t] = f"replicates ({rep[0]} allocations, {rep[1]} df)"
            else:
                self.noise_source_[t] = "binomial floor" if items is not None and t in SCORES else "none"
            self.processes_[t] = _Process(Z[ok], yv[ok], self.level, int(self.max_opt_samples), rng, floor, rep_var,
                                          self.seeds_)
        return self

    def _design(self, table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        frame = _as_frame(table)
        X, unseen = self.encoder_.transform(frame)
        X = np.where(np.isnan(X), self.fill_, X)
        tol = 1e-9 + 1e-6 * (self.high_ - self.low_)
        out = (X < self.low_ - tol) | (X > self.high_ + tol)
        names = []
        for i in range(len(X)):
            cols = {self.feature_names_[j].split("=")[0] for j in np.flatnonzero(out[i])} | set(unseen[i])
            names.append(",".join(sorted(cols)))
        Z = ((X - self.center_) / self.scale_)[:, self.active_]
        return Z, np.array([bool(n) for n in names]), names

    def predict(self, table: Any, return_std: bool = False):
        """Predicted (id, ood, ood_peak_fraction) per row, shape (n, 3); with `return_std`, also the
        calibrated standard deviations of one re-run."""
        check_is_fitted(self, msg=NOT_FITTED.format(name=type(self).__name__))
        Z, _, _ = self._design(table)
        frame = _as_frame(table)
        out = [self.processes_[t].predict(Z, self._items(frame, t)) for t in TARGETS]
        mean = np.clip(np.column_stack([o[0] for o in out]), 0.0, 1.0)
        return (mean, np.column_stack([o[2] for o in out])) if return_std else mean

    def predict_outcome(self, table: Any):
        """Predictions with intervals and the extrapolation flag, as a polars DataFrame (one row per query).

        Columns per target (id, ood, ood_peak_fraction): <target> (predicted mean), <target>_low /
        _high (interval for the allocation's expected score, the mean over seeds), <target>_sd,
        <target>_rerun_low / _rerun_high (interval for the score of one new run), <target>_rerun_sd;
        extrapolating; outside (the features outside the training range, comma-separated).
        """
        import polars as pl
        from scipy.stats import norm

        check_is_fitted(self, msg=NOT_FITTED.format(name=type(self).__name__))
        Z, flag, names = self._design(table)
        frame = _as_frame(table)
        z = norm.ppf(0.5 + self.level / 2)
        cols: dict[str, Any] = {}
        for t in TARGETS:
            m, s, r = self.processes_[t].predict(Z, self._items(frame, t))
            cols[t] = np.clip(m, 0.0, 1.0)
            cols[f"{t}_low"] = np.clip(m - z * s, 0.0, 1.0)
            cols[f"{t}_high"] = np.clip(m + z * s, 0.0, 1.0)
            cols[f"{t}_sd"] = s
            cols[f"{t}_rerun_low"] = np.clip(m - z * r, 0.0, 1.0)
            cols[f"{t}_rerun_high"] = np.clip(m + z * r, 0.0, 1.0)
            cols[f"{t}_rerun_sd"] = r
        cols["extrapolating"] = flag
        cols["outside"] = names
        return pl.DataFrame(cols)

    def extrapolating(self, table: Any) -> np.ndarray:
        """Whether each query lies outside the training trials' range in some feature."""
        check_is_fitted(self, msg=NOT_FITTED.format(name=type(self).__name__))
        return self._design(table)[1]
