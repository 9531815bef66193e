"""The plan: a YAML file or a preset, read into the trial sections (`ptplan.stages` config) plus the
`study:` section, validated into dataclasses, and the study's identity.

A study's identity is what makes its trials comparable: the search space, the objective and the
fixed trial configuration (budget included). Resuming with a plan whose identity differs is
refused with the difference shown. Where the study lives, how many trials, which sampler and how
workers keep their lease are not part of it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ptplan.stages._config import TrialConfig, apply_overrides, check_choices, from_dict, option
from ptplan.stages.errors import ConfigError, PlanError, StudyError  # noqa: F401 - StudyError: re-exported

from ._space import SearchSpace, default_search

SamplerName = Literal["surrogate", "tpe", "gp", "nsga2", "random", "grid"]  # the keys of `_study.SAMPLERS`
PrunerName = Literal["dominated", "median", "hyperband", "successive_halving", "none"]  # `_study.PRUNERS`
MULTI_PRUNERS = ("dominated",)  # the pruners a multi-objective study takes; the others need `kind: weighted`
DEFAULT_TRIALS = 20
MACHINE_FIELDS = ("device", "accel", "tracking")  # trial fields that may differ between workers of one study


STUDY_SECTIONS = ("study", "resources")  # plan sections besides the trial configuration


# -- plan files and presets -------------------------------------------------------------------------
def preset_names() -> list[str]:
    """Plans shipped inside the package (`ptplan/presets/*.yaml`)."""
    from importlib import resources

    folder = resources.files("ptplan") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    from importlib import resources

    return (resources.files("ptplan") / "presets" / f"{name}.yaml").read_text()


def read_plan(plan: str | Path) -> tuple[dict, str]:
    """Return (mapping, source) for a plan file path or a preset name."""
    import yaml

    path = Path(plan)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise PlanError(f"plan file {plan} does not exist")
        text, source = path.read_text(), str(path)
    elif str(plan) in preset_names():
        text, source = preset_text(str(plan)), f"preset:{plan}"
    else:
        raise PlanError(f"{str(plan)!r} is neither a plan file nor a preset (presets: {', '.join(preset_names())})")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PlanError(f"{source}:{where} is not valid YAML: {getattr(err, 'problem', err)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PlanError(f"{source}: a plan must be a mapping of sections, got {type(data).__name__}")
    return data, source


def _overrides(overrides: list[str] | tuple | dict | None) -> list[str]:
    """`key=value` strings, or a mapping {"budget.total": 8e11} turned into them."""
    if not overrides:
        return []
    if isinstance(overrides, dict):
        return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    return list(overrides)


def trial_config(plan: dict, overrides: list[str] | tuple | dict | None = None) -> TrialConfig:
    """The trial part of a plan mapping, with overrides applied, validated (no study section needed)."""
    data = apply_overrides(plan, _overrides(overrides))
    return TrialConfig.from_dict({k: v for k, v in data.items() if k not in STUDY_SECTIONS})


def _check(ok: bool, name: str, message: str, value: Any) -> None:
    if not ok:
        raise ConfigError(name, f"{message}, got {value!r}")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class ObjectiveConfig:
    """`multi`: maximize (ID, OOD), prunable with `pruner: dominated`; `weighted`: maximize
    (1 - w) * ID + w * OOD, with one of Optuna's pruners."""

    kind: Literal["multi", "weighted"] = option("multi", "multi: maximize (ID, OOD); weighted: maximize "
                                                "(1 - ood_weight) * ID + ood_weight * OOD")
    ood_weight: float = option(0.5, "OOD's weight in a weighted objective, in [0, 1]")
    pruner: PrunerName | None = option(None, "stop unpromising trials early (default: dominated for multi, median "
                                       "for weighted, none on a grid)")

    def __post_init__(self):
        check_choices(self)
        _check(isinstance(self.ood_weight, (int, float)) and not isinstance(self.ood_weight, bool)
               and 0.0 <= self.ood_weight <= 1.0, "ood_weight", "must be a number in [0, 1]", self.ood_weight)
        others = [p for p in typing.get_args(PrunerName) if p not in MULTI_PRUNERS]
        _check(self.kind == "multi" or self.pruner not in MULTI_PRUNERS, "pruner",
               "`dominated` prunes against the (ID, OOD) Pareto front and needs `kind: multi`; a weighted "
               f"objective takes {', '.join(others)}", self.pruner)


@dataclass
class HeartbeatConfig:
    """Seconds between a running trial's heartbeats, and silence after which its worker counts as dead."""

    interval: int = option(10, "seconds between a running trial's heartbeats")
    grace: int = option(60, "seconds of silence after which a worker counts as dead and its trial is retried")

    def __post_init__(self):
        _check(_int(self.interval) and self.interval >= 1, "interval", "must be an integer >= 1 (seconds)",
               self.interval)
        _check(_int(self.grace) and self.grace > self.interval, "grace",
               f"must be an integer above `interval` ({self.interval} s)", self.grace)


@dataclass
class StudyConfig:
    """How a plan is searched and where its study lives."""

    name: str | None = option(None, "study name (default: the trial `name`)")
    dir: str | None = option(None, "run folder (default runs/<name>)")
    storage: str | None = option(None, "sqlite:///FILE, journal:///FILE, postgresql://... or mysql://... "
                                 "(default: inside the run folder)")
    sampler: SamplerName = option("surrogate", "surrogate: ptplan's outcome model proposes by expected "
                                  "improvement; or Optuna's tpe, gp, nsga2, random, grid")
    seed: int | None = option(None, "sampler seed (default: the trial `seed`)")
    trials: int | None = option(None, "COMPLETE trials to reach (default: the grid size, else 20)")
    retries: int = option(2, "times a trial whose worker died is retried")
    max_failures: int | None = option(None, "failed trials after which a run stops (default: max(trials, 5))")
    objective: ObjectiveConfig = option(factory=ObjectiveConfig, help="what the study maximizes")
    heartbeat: HeartbeatConfig = option(factory=HeartbeatConfig, help="worker liveness")
    search: dict[str, Any] | None = option(None, "plan fields to search: `path: {low, high[, log]}` or "
                                           "`path: {choices: [...]}` (default: the stage shares)")

    def default_pruner(self) -> str:
        """A grid runs every cell to the end; otherwise `dominated` (multi) or `median` (weighted)."""
        if self.sampler == "grid":
            return "none"
        return "dominated" if self.objective.kind == "multi" else "median"

    def __post_init__(self):
        from ._storage import check_storage_url

        check_choices(self)
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

    gpus_per_trial: int = option(0, "GPUs a SLURM task asks for one trial (0 or 1; multi-GPU trials are not built "
                                 "yet)")

    def __post_init__(self):
        _check(_int(self.gpus_per_trial) and self.gpus_per_trial >= 0, "gpus_per_trial", "must be an integer >= 0",
               self.gpus_per_trial)
        _check(self.gpus_per_trial <= 1, "gpus_per_trial", "must be 0 or 1: a trial runs in one process on one "
               "device (multi-GPU trials under `accelerate launch` are not built yet)", self.gpus_per_trial)


@dataclass
class Plan:
    """A resolved plan: the study settings, the fixed trial config and the search space.

    `Plan.load("quick", overrides={"budget.total": 8e11})` reads a plan file or a preset.
    """

    data: dict
    source: str
    study: StudyConfig
    trial: TrialConfig
    space: SearchSpace
    resources: ResourcesConfig = option(factory=ResourcesConfig, help="what one trial asks of a cluster node")

    @classmethod
    def load(cls, plan: "str | Path | Plan", overrides: list[str] | tuple | dict | None = None) -> "Plan":
        """A plan file path or preset name (or a Plan, returned with the overrides applied)."""
        if isinstance(plan, Plan):
            return cls.from_mapping(plan.data, overrides, plan.source) if overrides else plan
        data, source = read_plan(plan)
        return cls.from_mapping(data, overrides, source)

    @classmethod
    def from_mapping(cls, data: dict, overrides: list[str] | tuple | dict | None = (),
                     source: str = "<plan>") -> "Plan":
        data = apply_overrides(data, _overrides(overrides))
        raw = data.get("study")
        study = from_dict(StudyConfig, raw if raw is not None else {}, "study")
        resources = from_dict(ResourcesConfig, data.get("resources") or {}, "resources")
        base = {k: v for k, v in data.items() if k not in STUDY_SECTIONS}
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

    def identity(self, legacy: bool = False) -> dict:
        """What makes trials comparable. User data files count by split, not by path: their content is
        checked separately (`data_digests`), so a corrected copy elsewhere is the same study."""
        trial = self.trial.to_dict()
        for key in MACHINE_FIELDS:
            trial.pop(key, None)
        if not legacy and trial.get("data", {}).get("files"):
            trial["data"]["files"] = sorted(trial["data"]["files"])
        obj = self.study.objective
        objective = {"kind": obj.kind} if obj.kind == "multi" else {"kind": obj.kind, "ood_weight": obj.ood_weight}
        return json.loads(json.dumps({"trial": trial, "search": self.space.to_dict(), "grid": self.grid,
                                      "objective": objective}, default=str))

    def fingerprint(self, legacy: bool = False) -> str:
        return hashlib.sha256(json.dumps(self.identity(legacy), sort_keys=True).encode()).hexdigest()[:16]

    def data_digests(self) -> dict[str, str]:
        """SHA-256 of each user data file (split -> digest); {} for a built-in suite. Unreadable: ''."""
        from ptplan.stages._trial import _file_digest

        out = {}
        for split, path in sorted((self.trial.data.files or {}).items()):
            try:
                out[split] = _file_digest(path)
            except OSError:
                out[split] = ""
        return out

    def resolved(self, storage_url: str) -> dict:
        """The plan as workers read it: overrides applied, run folder and storage made explicit."""
        data = copy.deepcopy(self.data)
        study = data.setdefault("study", {}) or {}
        data["study"] = study
        study["dir"] = str(self.run_dir)
        study["storage"] = storage_url
        study.setdefault("name", self.name)
        return data


StudyPlan = Plan  # the name studies/ used before the Python API; kept for callers of 0.1


# -- the field reference: `ptplan init` comments and the README's field list --------------------------
def _type_name(annotation: Any) -> str:
    choices = typing.get_args(annotation) if typing.get_origin(annotation) is Literal else None
    if choices:
        return " \\| ".join(map(str, choices))
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [_type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(inner) + (" \\| null" if type(None) in args else "")
    if args:
        return f"{annotation.__name__}[{', '.join(_type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    value = f.default_factory()
    return None if dataclasses.is_dataclass(value) else value


def plan_fields() -> list[dict]:
    """Every plan field (trial sections, then `study`): path, type, default, help; sections included."""
    out = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            path = f"{prefix}{f.name}"
            hint = hints[f.name]
            section = dataclasses.is_dataclass(hint)
            out.append({"path": path, "type": "section" if section else _type_name(hint),
                        "default": None if section else _default(f), "help": f.metadata.get("help", "")})
            if section:
                walk(hint, path + ".")

    walk(TrialConfig, "")
    out.append({"path": "study", "type": "section", "default": None,
                "help": "how the plan is searched and where its study lives"})
    walk(StudyConfig, "study.")
    out.append({"path": "resources", "type": "section", "default": None,
                "help": "what one trial asks of a cluster node (`ptplan submit`; not part of the study identity)"})
    walk(ResourcesConfig, "resources.")
    return out


def fields_markdown() -> str:
    """The field reference as a Markdown table (the README's "Plan fields")."""
    rows = ["| field | type | default | what |", "| --- | --- | --- | --- |"]
    for f in plan_fields():
        default = "" if f["type"] == "section" else json.dumps(f["default"], default=str)
        rows.append(f"| `{f['path']}` | {f['type']} | {default} | {f['help']} |")
    return "\n".join(rows) + "\n"


def annotate_plan(text: str) -> str:
    """A plan's YAML with each known field's help as a comment line above it (where it has none)."""
    helps = {f["path"]: f["help"] for f in plan_fields() if f["help"]}
    out, stack = [], []  # stack of (indent, key)
    for line in text.splitlines():
        m = re.match(r"^(\s*)([A-Za-z_][\w-]*):", line)
        if m:
            indent = len(m.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, m.group(2)))
            path = ".".join(k for _, k in stack)
            commented = "#" in line or (out and out[-1].lstrip().startswith("#"))
            if path in helps and not commented:
                out.append(f"{m.group(1)}# {helps[path]}")
        out.append(line)
    return "\n".join(out) + "\n"
