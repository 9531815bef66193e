"""The `study:` section of a plan, validated into dataclasses, and the study's identity.

A study's identity is what makes its trials comparable: the search space, the objective and the
fixed trial configuration (budget included). Resuming with a plan whose identity differs is
refused with the difference shown. Where the study lives, how many trials, which sampler and how
workers keep their lease are not part of it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptplan.stages._config import ConfigError, TrialConfig, apply_overrides, from_dict

from ._space import SearchSpace, default_search

OBJECTIVES = ("multi", "weighted")
DEFAULT_TRIALS = 20
MACHINE_FIELDS = ("device",)  # trial fields that may differ between workers of one study


class StudyError(RuntimeError):
    """A study cannot be opened, resumed or run; the message says why and what to do."""


def _check(ok: bool, name: str, message: str, value: Any) -> None:
    if not ok:
        raise ConfigError(name, f"{message}, got {value!r}")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class ObjectiveConfig:
    """`multi`: maximize (ID, OOD), prunable with `pruner: dominated`; `weighted`: maximize
    (1 - w) * ID + w * OOD, with one of Optuna's pruners."""

    kind: str = "multi"
    ood_weight: float = 0.5
    pruner: str | None = None  # None: the study's default (StudyConfig.default_pruner)

    def __post_init__(self):
        from ._study import MULTI_PRUNERS, PRUNERS

        _check(self.kind in OBJECTIVES, "kind", f"must be one of {', '.join(OBJECTIVES)}", self.kind)
        _check(isinstance(self.ood_weight, (int, float)) and not isinstance(self.ood_weight, bool)
               and 0.0 <= self.ood_weight <= 1.0, "ood_weight", "must be a number in [0, 1]", self.ood_weight)
        _check(self.pruner is None or self.pruner in PRUNERS, "pruner", f"must be one of {', '.join(PRUNERS)}",
               self.pruner)
        _check(self.kind == "multi" or self.pruner not in MULTI_PRUNERS, "pruner",
               "`dominated` prunes against the (ID, OOD) Pareto front and needs `kind: multi`; a weighted "
               f"objective takes {', '.join(p for p in PRUNERS if p not in MULTI_PRUNERS)}", self.pruner)


@dataclass
class HeartbeatConfig:
    """Seconds between a running trial's heartbeats, and silence after which its worker counts as dead."""

    interval: int = 10
    grace: int = 60

    def __post_init__(self):
        _check(_int(self.interval) and self.interval >= 1, "interval", "must be an integer >= 1 (seconds)",
               self.interval)
        _check(_int(self.grace) and self.grace > self.interval, "grace",
               f"must be an integer above `interval` ({self.interval} s)", self.grace)


@dataclass
class StudyConfig:
    """How a plan is searched and where its study lives."""

    name: str | None = None
    dir: str | None = None
    storage: str | None = None
    sampler: str = "surrogate"  # surrogate (outcome-model expected improvement) | tpe | gp | nsga2 | random | grid
    seed: int | None = None
    trials: int | None = None
    retries: int = 2
    max_failures: int | None = None
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    search: dict[str, Any] | None = None

    def default_pruner(self) -> str:
        """A grid runs every cell to the end; otherwise `dominated` (multi) or `median` (weighted)."""
        if self.sampler == "grid":
            return "none"
        return "dominated" if self.objective.kind == "multi" else "median"

    def __post_init__(self):
        from ._storage import check_storage_url
        from ._study import SAMPLERS

        _check(self.sampler in SAMPLERS, "sampler", f"must be one of {', '.join(SAMPLERS)}", self.sampler)
        if self.objective.pruner is None:
            self.objective.pruner = self.default_pruner()
        _check(self.name is None or (isinstance(self.name, str) and self.name.strip()), "name",
               "must be a non-empty string", self.name)
        _check(self.dir is None or (isinstance(self.dir, str) and self.dir.strip()), "dir",
               "must be a folder path", self.dir)
        if self.storage is not None:
            check_storage_url(self.storage, field="storage")
        _check(self.seed is None or _int(self.seed), "seed", "must be an integer", self.seed)
        _check(self.trials is None or (_int(self.trials) and self.trials >= 0), "trials",
               "must be an integer >= 0", self.trials)
        _check(_int(self.retries) and self.retries >= 0, "retries", "must be an integer >= 0", self.retries)
        _check(self.max_failures is None or (_int(self.max_failures) and self.max_failures >= 1), "max_failures",
               "must be an integer >= 1", self.max_failures)


@dataclass
class ResourcesConfig:
    """What one trial asks of a cluster node (`resources:`; read by `ptplan submit` and the accounting)."""

    gpus_per_trial: int = 0

    def __post_init__(self):
        _check(_int(self.gpus_per_trial) and self.gpus_per_trial >= 0, "gpus_per_trial", "must be an integer >= 0",
               self.gpus_per_trial)
        _check(self.gpus_per_trial <= 1, "gpus_per_trial", "must be 0 or 1: a trial runs in one process on one "
               "device (multi-GPU trials under `accelerate launch` are not built yet)", self.gpus_per_trial)


@dataclass
class StudyPlan:
    """A resolved plan: the study settings, the fixed trial config and the search space."""

    data: dict
    source: str
    study: StudyConfig
    trial: TrialConfig
    space: SearchSpace
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)

    @classmethod
    def from_mapping(cls, data: dict, overrides: list[str] | tuple = (), source: str = "<plan>") -> "StudyPlan":
        data = apply_overrides(data, list(overrides))
        raw = data.get("study")
        study = from_dict(StudyConfig, raw if raw is not None else {}, "study")
        resources = from_dict(ResourcesConfig, data.get("resources") or {}, "resources")
        base = {k: v for k, v in data.items() if k not in ("study", "resources")}
        trial = TrialConfig.from_dict(copy.deepcopy(base))
        search = study.search if study.search is not None else default_search(base)
        if not search:
            raise ConfigError("study.search", "is empty and the plan gives no stage shares to search; "
                              "name the fields to search, e.g. `allocation.sft.rank: {choices: [16, 64]}`")
        space = SearchSpace.parse(search, base, grid=study.sampler == "grid")
        return cls(data, source, study, trial, space, resources)

    # -- derived settings ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.study.name or self.trial.name

    @property
    def run_dir(self) -> Path:
        return Path(self.study.dir or Path("runs") / self.name).expanduser().resolve()

    @property
    def grid(self) -> bool:
        return self.study.sampler == "grid"

    def target(self, trials: int | None = None) -> int:
        """COMPLETE trials to reach: --trials, else `study.trials`, else the grid size or 20."""
        if trials is not None:
            return trials
        if self.study.trials is not None:
            return self.study.trials
        return self.space.n_cells() if self.grid else DEFAULT_TRIALS

    def max_failures(self, target: int) -> int:
        return self.study.max_failures or max(target, 5)

    @property
    def directions(self) -> list[str]:
        return ["maximize", "maximize"] if self.study.objective.kind == "multi" else ["maximize"]

    def identity(self) -> dict:
        trial = self.trial.to_dict()
        for key in MACHINE_FIELDS:
            trial.pop(key, None)
        obj = self.study.objective
        objective = {"kind": obj.kind} if obj.kind == "multi" else {"kind": obj.kind, "ood_weight": obj.ood_weight}
        return json.loads(json.dumps({"trial": trial, "search": self.space.to_dict(), "grid": self.grid,
                                      "objective": objective}, default=str))

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]

    def resolved(self, storage_url: str) -> dict:
        """The plan as workers read it: overrides applied, run folder and storage made explicit."""
        data = copy.deepcopy(self.data)
        study = data.setdefault("study", {}) or {}
        data["study"] = study
        study["dir"] = str(self.run_dir)
        study["storage"] = storage_url
        study.setdefault("name", self.name)
        return data
