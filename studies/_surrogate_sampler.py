"""`sampler: surrogate`: propose allocations by the outcome model's expected improvement.

After a few random trials, each proposal fits `surrogates.OutcomeModel` on the COMPLETE trials
(rebuilt from their params and values only, so an in-memory replay study works too) and picks,
from a pool of candidate points, the one with the largest expected improvement: of the (ID, OOD)
Pareto front's hypervolume for a multi-objective study, of the weighted score otherwise.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from ptplan.stages.record import hypervolume_improvement

from ._prune import pareto_points
from ._space import SHARE_PARAMS, Param

if TYPE_CHECKING:
    from ._config import StudyPlan

MC_SAMPLES = 64  # Monte Carlo draws per candidate for the expected hypervolume improvement
MAX_ENUMERATED = 4096  # finite spaces up to this many points are scored exhaustively
LOCAL_SCALE = 0.1  # local candidates: Gaussian steps of this fraction of each range around good trials
STARTUP_MIN_COMPLETE = 3  # the model needs at least this many COMPLETE trials


def default_n_startup(plan: "StudyPlan") -> int:
    """Random trials before the model takes over: a fifth of the study's target, kept within 4..10."""
    return max(4, min(10, plan.target() // 5))


def _distribution(p: Param):
    """The distribution `Param.suggest` asks Optuna for (non-grid), so relative samples are accepted."""
    if p.choices is not None:
        return optuna.distributions.CategoricalDistribution(p.values())
    if p.kind == "int":
        return optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return optuna.distributions.FloatDistribution(p.low, p.high, log=p.log, step=p.step)


def _key(params: dict[str, Any], names: list[str]) -> tuple:
    return tuple(round(v, 12) if isinstance(v, float) else v for v in (params.get(n) for n in names))


class SurrogateSampler(optuna.samplers.BaseSampler):
    """Optuna sampler proposing the candidate with the largest expected improvement under
    `surrogates.OutcomeModel`, after `n_startup` random trials.

    Multi-objective studies score candidates by expected hypervolume improvement of the (ID, OOD)
    front (Monte Carlo, independent normals from the model's predictive spread, reference (0, 0));
    weighted studies by analytic expected improvement of the weighted score. Candidates are
    `n_candidates` random points plus local steps around the best trials, or every unseen point of
    a small finite space. Points already complete, pruned, queued or running are not proposed
    again, and RUNNING trials' predicted outcomes join the front (a constant liar for parallel
    workers). Parameters outside the plan's search space, and every parameter during startup or
    when the model cannot be fitted, come from a seeded `RandomSampler`.

    Args:
        plan: the study's plan (search space, fixed trial config, objective).
        seed: makes proposals reproducible for the same trial history.
        n_startup: COMPLETE trials proposed at random before the model is used (never fewer than
            3); None: `default_n_startup(plan)`, a fifth of the study's target within 4..10.
        n_candidates: random candidates scored per proposal.
    """

    def __init__(self, plan: "StudyPlan", *, seed: int | None = None, n_startup: int | None = None,
                 n_candidates: int = 512):
        if n_startup is not None and (not isinstance(n_startup, int) or n_startup < 0):
            raise ValueError(f"n_startup must be an integer >= 0, got {n_startup!r}")
        if not isinstance(n_candidates, int) or n_candidates < 1:
            raise ValueError(f"n_candidates must be an integer >= 1, got {n_candidates!r}")
        self.plan = plan
        self.seed = seed if seed is not None else int(np.random.SeedSequence().entropy % (2 ** 31))
        self.n_startup = default_n_startup(plan) if n_startup is None else n_startup
        self.n_candidates = n_candidates
        self._random = optuna.samplers.RandomSampler(seed=self.seed)
        self._names = list(plan.space.params)
        self._space = {name: _distribution(p) for name, p in plan.space.params.items()}
        self.last_proposal: dict | None = None  # diagnostics of the latest model-based proposal

    # -- Optuna's sampler interface ---------------------------------------------------------------
    def infer_relative_search_space(self, study, trial) -> dict:
        from optuna.trial import TrialState

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) < max(self.n_startup, STARTUP_MIN_COMPLETE):
            return {}
        return dict(self._space)

    def sample_relative(self, study, trial, search_space: dict) -> dict[str, Any]:
        if not search_space:
            return {}
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False,
                                  states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING,
                                          TrialState.PRUNED))
        try:
            return self.propose(trials, study, trial.number)
        except (ValueError, np.linalg.LinAlgError) as err:  # a degenerate table: random for this trial
            warnings.warn(f"surrogate sampler fell back to random sampling for trial {trial.number}: {err}",
                          RuntimeWarning, stacklevel=2)
            return {}

    def sample_independent(self, study, trial, param_name: str, param_distribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._random.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._random.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()
        self.seed = int(np.random.SeedSequence().entropy % (2 ** 31))

    # -- the proposal -----------------------------------------------------------------------------
    def propose(self, trials: list, study, number: int) -> dict[str, Any]:
        """The best candidate by expected improvement, given the study's trials (any states)."""
        from optuna.trial import TrialState

        from ptplan.surrogates import OutcomeModel

        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
                    and all(n in t.params for n in self._names)]
        if len(complete) < STARTUP_MIN_COMPLETE:
            return {}
        multi = len(study.directions) > 1
        rng = np.random.default_rng([self.seed, number])
        table = self.table([t.params for t in complete], [t.values for t in complete], multi)
        model = OutcomeModel(random_state=int(rng.integers(2 ** 31))).fit(table)

        running = [t.params for t in trials if t.state == TrialState.RUNNING and t.number != number
                   and all(n in t.params for n in self._names)]
        seen = {_key(t.params, self._names) for t in trials if t.number != number}
        candidates = self._candidates(rng, complete, multi, seen)
        if not candidates:  # every point of a finite space was tried: let the random sampler pick
            return {}
        mean, std = model.predict(self.table(candidates, None, multi), return_std=True)
        std = np.maximum(std, 1e-9)
        if multi:
            observed = np.array([t.values[:2] for t in complete], dtype=float)
            if running:  # constant liar: a running trial is believed to land where the model predicts
                observed = np.vstack([observed, model.predict(self.table(running, None, multi))[:, :2]])
            front = np.array(pareto_points(observed), dtype=float).reshape(-1, 2)
            z = rng.standard_normal((MC_SAMPLES, 2))  # common random numbers across candidates
            draws = mean[:, None, :2] + std[:, None, :2] * z[None]
            score = hypervolume_improvement(np.clip(draws, 0.0, 1.0), front).mean(1)
            tie = mean[:, 0] + mean[:, 1]
        else:
            from scipy.stats import norm

            best = max(t.values[0] for t in complete)
            m, s = mean[:, 0], std[:, 0]
            u = (m - best) / s
            score = (m - best) * norm.cdf(u) + s * norm.pdf(u)
            tie = m
        score = np.where(score > 1e-12, score, 0.0)
        i = int(np.lexsort((-tie, -score))[0])
        self.last_proposal = {"trial": number, "score": float(score[i]), "candidates": len(candidates),
                              "mean": mean[i, :2].tolist(), "std": std[i, :2].tolist()}
        return dict(candidates[i])

    def table(self, params: list[dict], values: list | None, multi: bool):
        """Trial-table rows (studies/_table.py column names) of parameter sets, for the outcome model.

        Values: (ID, OOD) for a multi-objective study; for a weighted one the score goes in the `id`
        column (and `ood` stays empty), so the model's ID target is the weighted score.
        """
        import polars as pl

        fixed = self.plan.trial
        rows = []
        for i, p in enumerate(params):
            shares = self.plan.space.shares_for(p)
            row: dict[str, Any] = {f"share_{s}": shares[s] for s in ("cpt", "sft", "rl")}
            for s in ("cpt", "sft", "rl"):
                row[f"rank_{s}"] = p.get(f"allocation.{s}.rank", getattr(fixed.allocation, s).rank)
            row["budget_total"] = float(p.get("budget.total", fixed.budget.total))
            row["budget_unit"] = p.get("budget.unit", fixed.budget.unit)
            for name in self._names:
                if name not in SHARE_PARAMS:
                    row[f"param.{name}"] = p.get(name)
            if values is not None:
                v = values[i]
                row["id"], row["ood"] = (float(v[0]), float(v[1])) if multi else (float(v[0]), None)
            rows.append(row)
        schema = {"id": pl.Float64, "ood": pl.Float64} if values is not None else None
        return pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None, strict=False)

    def _candidates(self, rng, complete: list, multi: bool, seen: set) -> list[dict]:
        params = [self.plan.space.params[n] for n in self._names]
        finite = all(p.choices is not None or p.kind == "int" or p.step is not None for p in params)
        if finite and math.prod(len(p.values()) for p in params) <= MAX_ENUMERATED:
            combos = itertools.product(*(p.values() for p in params))
            return [c for c in (dict(zip(self._names, combo)) for combo in combos)
                    if _key(c, self._names) not in seen]
        pool = [self._random_point(rng) for _ in range(self.n_candidates)]
        if multi:
            ranked = sorted(complete, key=lambda t: -(t.values[0] + t.values[1]))
        else:
            ranked = sorted(complete, key=lambda t: -t.values[0])
        centers = [t.params for t in ranked[:5]]
        pool += [self._local_point(rng, centers[k % len(centers)]) for k in range(self.n_candidates // 2)]
        out, keys = [], set()
        for c in pool:
            k = _key(c, self._names)
            if k not in seen and k not in keys:
                keys.add(k)
                out.append(c)
        return out

    # -- candidate points, always inside the distributions ------------------------------------------
    def _random_point(self, rng) -> dict[str, Any]:
        return {n: self._draw(rng, self.plan.space.params[n], None) for n in self._names}

    def _local_point(self, rng, center: dict) -> dict[str, Any]:
        return {n: self._draw(rng, self.plan.space.params[n], center.get(n)) for n in self._names}

    @staticmethod
    def _draw(rng, p: Param, center: Any) -> Any:
        """A value of `p`: uniform (on the log scale for log ranges), or a small step from `center`."""
        if p.choices is not None:
            if center is not None and center in p.choices and rng.random() > 0.2:
                return center
            return p.choices[int(rng.integers(len(p.choices)))]
        lo, hi = (math.log(p.low), math.log(p.high)) if p.log else (float(p.low), float(p.high))
        if center is None:
            u = rng.uniform(lo, hi)
        else:
            c = math.log(center) if p.log else float(center)
            u = float(np.clip(c + rng.normal(0.0, LOCAL_SCALE * (hi - lo)), lo, hi))
        x = math.exp(u) if p.log else u
        if p.step is not None:
            k = min(round((x - p.low) / p.step), math.floor((p.high - p.low) / p.step + 1e-9))
            x = round(p.low + max(k, 0) * p.step, 12)
        if p.kind == "int":
            return int(min(max(round(x), p.low), p.high))
        return float(min(max(x, p.low), p.high))
