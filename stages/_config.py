"""Trial configuration: one dataclass per section, validated in __post_init__.

Errors raise `ConfigError` carrying the field name; `from_dict` prefixes the full plan path so a
message reads "`allocation.sft.rank` must be 0 or a power of two up to 512, got 3".
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

UNITS = ("flops", "tokens", "examples", "epochs", "seconds")
STAGES = ("cpt", "sft", "rl")
ALLOWED_RANKS = (0,) + tuple(2**i for i in range(10))  # 0 = full fine-tuning, else 1..512


class ConfigError(ValueError):
    """A plan field has a bad value; `path` names the field."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.detail = message
        super().__init__(f"`{path}` {message}")

    def under(self, prefix: str) -> "ConfigError":
        return ConfigError(f"{prefix}.{self.path}" if prefix else self.path, self.detail)


def _check(ok: bool, name: str, message: str, value: Any) -> None:
    if not ok:
        raise ConfigError(name, f"{message}, got {value!r}")


def _positive(name: str, value: Any, kind=int) -> None:
    _check(isinstance(value, kind) and not isinstance(value, bool) and value > 0, name,
           f"must be a positive {'integer' if kind is int else 'number'}", value)


@dataclass
class Budget:
    """Total compute for one trial, in one unit; every unit is still recorded by the ledger."""

    total: float = 5e11
    unit: str = "flops"

    def __post_init__(self):
        _check(self.unit in UNITS, "unit", f"must be one of {', '.join(UNITS)}", self.unit)
        _check(isinstance(self.total, (int, float)) and math.isfinite(self.total) and self.total > 0,
               "total", "must be a positive finite number", self.total)


@dataclass
class StageConfig:
    """Settings of one training stage (CPT or SFT)."""

    rank: int = 0
    lr: float = 1e-3
    batch_size: int = 32
    warmup_steps: int = 5
    max_length: int = 192

    def __post_init__(self):
        _check(self.rank in ALLOWED_RANKS and not isinstance(self.rank, bool), "rank",
               "must be 0 or a power of two up to 512", self.rank)
        _check(isinstance(self.lr, (int, float)) and 0 < self.lr < 1, "lr", "must be in (0, 1)", self.lr)
        _positive("batch_size", self.batch_size)
        _check(isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, "warmup_steps",
               "must be a non-negative integer", self.warmup_steps)
        _positive("max_length", self.max_length)


@dataclass
class RLConfig(StageConfig):
    """GRPO stage: `batch_size` counts prompts per step, each sampled `generations` times."""

    lr: float = 1e-4
    batch_size: int = 8
    beta: float = 1e-3
    generations: int = 4
    start: str = "warm"
    temperature: float = 1.0
    max_completion_length: int = 32
    handover: str = "fixed"  # or "predicted-peak": end SFT once its OOD peak is predicted passed
    handover_confidence: float = 0.8

    def __post_init__(self):
        super().__post_init__()
        _check(self.handover in ("fixed", "predicted-peak"), "handover",
               "must be 'fixed' (SFT runs its whole share) or 'predicted-peak'", self.handover)
        _check(isinstance(self.handover_confidence, (int, float)) and 0.5 <= self.handover_confidence < 1,
               "handover_confidence", "must be in [0.5, 1)", self.handover_confidence)
        _check(isinstance(self.beta, (int, float)) and self.beta >= 0, "beta", "must be >= 0", self.beta)
        _check(isinstance(self.generations, int) and self.generations >= 2, "generations",
               "must be an integer >= 2 (GRPO compares completions of one prompt)", self.generations)
        _check(self.start in ("warm", "cold"), "start",
               "must be 'warm' (from the SFT result) or 'cold' (from the model before SFT)", self.start)
        _check(isinstance(self.temperature, (int, float)) and self.temperature > 0, "temperature",
               "must be > 0", self.temperature)
        _positive("max_completion_length", self.max_completion_length)


@dataclass
class Allocation:
    """What one trial does: stage shares on the simplex plus each stage's settings."""

    shares: dict[str, float] = field(default_factory=lambda: {"cpt": 0.3, "sft": 0.3, "rl": 0.4})
    cpt: StageConfig = field(default_factory=StageConfig)
    sft: StageConfig = field(default_factory=StageConfig)
    rl: RLConfig = field(default_factory=RLConfig)

    def __post_init__(self):
        _check(isinstance(self.shares, dict), "shares", "must be a mapping of cpt/sft/rl to fractions",
               self.shares)
        unknown = set(self.shares) - set(STAGES)
        _check(not unknown, "shares", f"has unknown stage(s) {sorted(unknown)} (known: cpt, sft, rl)",
               self.shares)
        self.shares = {s: self.shares.get(s, 0.0) for s in STAGES}
        for stage, share in self.shares.items():
            _check(isinstance(share, (int, float)) and not isinstance(share, bool) and 0.0 <= share <= 1.0,
                   f"shares.{stage}", "must be a number in [0, 1]", share)
        total = sum(self.shares.values())
        _check(abs(total - 1.0) < 1e-6, "shares", "must sum to 1", self.shares)

    def stage(self, name: str) -> StageConfig:
        return getattr(self, name)


@dataclass
class BackboneConfig:
    """A built-in `name`, or `path` to a local folder / hub id of any causal LM."""

    name: str = "llama-0.5m"
    path: str | None = None
    trust_remote_code: bool = False

    def __post_init__(self):
        from ._backbones import BUILTIN_BACKBONES

        if self.path is None:
            _check(self.name in BUILTIN_BACKBONES, "name",
                   f"must be a built-in backbone ({', '.join(BUILTIN_BACKBONES)}) or set `backbone.path`",
                   self.name)


@dataclass
class SizesConfig:
    cpt: int = 2000
    sft: int = 2000
    rl: int = 512
    id_test: int = 64
    ood_test: int = 64

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _positive(f.name, getattr(self, f.name))


@dataclass
class DataConfig:
    """A built-in `suite`, or user `files` (split -> path) scored by `scorer`."""

    suite: str | None = "genomics"
    seed: int = 0
    sizes: SizesConfig = field(default_factory=SizesConfig)
    files: dict[str, str] | None = None
    scorer: str = "exact"
    tolerance: float = 0.05

    def __post_init__(self):
        if self.files is not None:
            _check(isinstance(self.files, dict) and all(isinstance(v, str) for v in self.files.values()),
                   "files", "must map split names (cpt, sft, rl, id, ood) to file paths", self.files)
            unknown = set(self.files) - {"cpt", "sft", "rl", "id", "ood"}
            _check(not unknown, "files", f"has unknown split(s) {sorted(unknown)}", self.files)
            for split in ("id", "ood"):
                _check(split in self.files, "files", f"needs the `{split}` split", self.files)
        else:
            from ._tasks import SUITES

            _check(self.suite in SUITES, "suite", f"must be one of {', '.join(SUITES)} (or give `data.files`)",
                   self.suite)


@dataclass
class EvalConfig:
    """Evaluation points per stage (evenly spaced in compute) plus the start; not charged."""

    points: dict[str, int] = field(default_factory=lambda: {"cpt": 2, "sft": 8, "rl": 4})
    batch_size: int = 64
    max_new_tokens: int | None = None  # default: longest test answer + 2
    # Items per test set at intermediate points: a fixed subsample, stratified by task; the start and
    # every stage end use every item. None: every item at every point. Points record n and standard error.
    intermediate_items: int | None = None

    def __post_init__(self):
        _check(isinstance(self.points, dict) and set(self.points) <= set(STAGES), "points",
               "must map cpt/sft/rl to a count", self.points)
        self.points = {**{"cpt": 2, "sft": 8, "rl": 4}, **self.points}
        for stage, n in self.points.items():
            _positive(f"points.{stage}", n)
        _positive("batch_size", self.batch_size)
        if self.max_new_tokens is not None:
            _positive("max_new_tokens", self.max_new_tokens)
        if self.intermediate_items is not None:
            _positive("intermediate_items", self.intermediate_items)


@dataclass
class TrialConfig:
    """Everything that determines one staged trial."""

    name: str = "trial"
    seed: int = 0
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    budget: Budget = field(default_factory=Budget)
    allocation: Allocation = field(default_factory=Allocation)
    eval: EvalConfig = field(default_factory=EvalConfig)
    device: str = "auto"

    def __post_init__(self):
        _check(self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:"), "device",
               "must be auto, cpu, cuda or cuda:N", self.device)
        _check(isinstance(self.seed, int), "seed", "must be an integer", self.seed)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, prefix: str = "") -> "TrialConfig":
        return from_dict(cls, data, prefix)


def _coerce(value: Any, annotation: Any, path: str, prefix: str) -> Any:
    """Convert YAML scalars to the annotated type (e.g. the string '1e-3' to a float)."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, path)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], path, prefix) if len(inner) == 1 else value
    if annotation is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(path, f"must be a number, got {value!r}") from None
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if origin is dict and isinstance(value, dict) and args and args[1] is float:
        return {k: _coerce(v, float, f"{path}.{k}", prefix) for k, v in value.items()}
    return value


def from_dict(cls, data: Any, prefix: str = ""):
    """Build dataclass `cls` from a mapping; unknown fields and bad values name their full path."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data):
        return data
    if not isinstance(data, dict):
        raise ConfigError(prefix or cls.__name__, f"must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(where, f"is not a known field (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        kwargs[key] = _coerce(value, hints[key], path, prefix)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise err.under(prefix) from None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key.sub=value` overrides (values parsed as YAML) to a nested plan mapping."""
    import yaml

    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, "is not a `key=value` override")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(key, f"cannot be set: `{part}` is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data
