"""No allocation proposed twice by accident: per-process sampler streams and a duplicate filter.

Every process that opens a study to run trials (a `ptplan run`, each of its workers, a rerun after
a crash) seeds its sampler from the plan seed plus a key unique to that process and run, so two
processes never replay one stream. On top of that, `DistinctSampler` wraps the plan's sampler and
refuses a proposal whose parameters equal those of a COMPLETE, PRUNED, RUNNING or WAITING trial (or of a
proposal another process has just made and not yet started), unless the space has no unseen point
left. Enqueued trials (grid cells, retries of failed or lost trials) keep their fixed parameters.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

if TYPE_CHECKING:
    from ._config import StudyPlan

PROPOSAL_ATTR = "ptplan_proposal"  # system attr: the parameters a sampler proposed for a trial
MAX_TRIES = 32  # proposals drawn from the plan's sampler before falling back to random ones


def process_seed(base: int, index: int | None, n_trials: int) -> int:
    """A seed from the plan seed, the worker index, the study's size at open, the process and the time."""
    import numpy as np

    key = (index or 0, n_trials, os.getpid(), time.time_ns() % (2 ** 32))
    return int(np.random.SeedSequence(entropy=base, spawn_key=key).generate_state(1)[0] % (2 ** 31))


def params_key(params: dict[str, Any], names: list[str]) -> tuple:
    return tuple(round(v, 12) if isinstance(v, float) else v for v in (params.get(n) for n in names))


@contextlib.contextmanager
def _proposal_lock(folder: Path):
    """One proposer at a time among the processes of this machine (best effort: none if unwritable)."""
    import fcntl

    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".propose.lock", "a")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class DistinctSampler(optuna.samplers.BaseSampler):
    """Wraps a sampler so that each trial's parameters differ from every other live or finished trial's.

    Args:
        base: the plan's sampler (TPE, GP, NSGA-II, random or surrogate), already seeded.
        plan: the study's plan (search space; its run folder holds the proposal lock).
        seed: seed of the random fallback used when `base` keeps proposing taken points.
    """

    def __init__(self, base: optuna.samplers.BaseSampler, plan: "StudyPlan", seed: int | None = None):
        from ._surrogate_sampler import _distribution

        self.base, self.plan = base, plan
        self._names = list(plan.space.params)
        self._space = {name: _distribution(p) for name, p in plan.space.params.items()}
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self.repeated = 0  # proposals accepted although taken (the space had no unseen point left)

    def _size(self) -> float:
        size = 1
        for p in self.plan.space.params.values():
            try:
                size *= len(p.values())
            except ValueError:
                return math.inf
        return size

    def _draw(self, sampler, study, trial) -> dict[str, Any]:
        space = sampler.infer_relative_search_space(study, trial) if sampler is self.base else {}
        out = dict(sampler.sample_relative(study, trial, space)) if space else {}
        for name, dist in self._space.items():
            if name not in out:
                out[name] = sampler.sample_independent(study, trial, name, dist)
        return out

    # -- Optuna's sampler interface ---------------------------------------------------------------
    def infer_relative_search_space(self, study, trial) -> dict:
        return dict(self._space)

    def sample_relative(self, study, trial, search_space: dict) -> dict[str, Any]:
        from optuna.trial import TrialState

        if not search_space or trial.system_attrs.get("fixed_params"):
            return {}  # an enqueued cell or retry: its parameters are fixed on purpose
        with _proposal_lock(self.plan.run_dir):
            live = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING,
                                                            TrialState.WAITING, TrialState.PRUNED))
            taken = set()
            for t in live:
                if t.number == trial.number:
                    continue
                params = t.params or t.system_attrs.get("fixed_params") or t.system_attrs.get(PROPOSAL_ATTR)
                if params:
                    taken.add(params_key(params, self._names))
            exhausted = len(taken) >= self._size()
            proposal = None
            for sampler in (self.base, self._random):
                for _ in range(MAX_TRIES):
                    candidate = self._draw(sampler, study, trial)
                    if exhausted or params_key(candidate, self._names) not in taken:
                        proposal = candidate
                        break
                if proposal is not None:
                    break
            if proposal is None:  # every draw was taken: a (nearly) exhausted finite space
                proposal, self.repeated = candidate, self.repeated + 1
            study._storage.set_trial_system_attr(trial._trial_id, PROPOSAL_ATTR, proposal)
        return proposal

    def sample_independent(self, study, trial, param_name: str, param_distribution) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
        self._random.reseed_rng()
