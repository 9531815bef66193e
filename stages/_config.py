"""The plan's trial sections: one dataclass per section, validated in __post_init__.

Every field carries its help (`metadata={"help": ...}`) and choices as `Literal[...]` types: one
definition drives validation, the commented `ptplan init` output and the README's field list
(`plan_fields`). Errors raise `ConfigError` carrying the field name; `from_dict` prefixes the full
plan path so a message reads "`allocation.sft.rank` must be 0 or a power of two up to 512, got 3".
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from ptplan.stages.errors import ConfigError
from ptplan.stages.record import STAGES

Unit = Literal["flops", "tokens", "examples", "epochs", "seconds"]
Suite = Literal["genomics", "transcriptomics", "proteins"]  # the keys of `ptplan.stages.SUITES`
UNITS = typing.get_args(Unit)
ALLOWED_RANKS = (0,) + tuple(2**i for i in range(10))  # 0 = full fine-tuning, else 1..512


def option(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING) -> Any:
    """A config field with its help text (shown by `ptplan init` and the README's field list)."""
    return field(default=default, default_factory=factory, metadata={"help": help})


def _literal_choices(annotation: Any) -> tuple | None:
    """The allowed values of a `Literal[...]` (or `Literal[...] | None`) annotation, else None."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if typing.get_origin(arg) is Literal:
                return typing.get_args(arg) + ((None,) if type(None) in typing.get_args(annotation) else ())
    return None


def check_choices(obj: Any) -> None:
    """Refuse a value outside its field's `Literal` choices, naming the field and the choices."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        choices = _literal_choices(hints[f.name])
        value = getattr(obj, f.name)
        if choices is not None and value not in choices:
            shown = ", ".join(str(c) for c in choices if c is not None)
            raise ConfigError(f.name, f"must be one of {shown}, got {value!r}")


def _check(ok: bool, name: str, message: str, value: Any) -> None:
    if not ok:
        raise ConfigError(name, f"{message}, got {value!r}")


def _positive(name: str, value: Any, kind=int) -> None:
    _check(isinstance(value, kind) and not isinstance(value, bool) and value > 0, name,
           f"must be a positive {'integer' if kind is int else 'number'}", value)


@dataclass
class Budget:
    """Total compute for one trial, in one unit; every unit is still recorded by the ledger."""

    total: float = option(5e11, "the whole trial's budget, in `unit`")
    unit: Unit = option("flops", "budget unit; every unit is still recorded by the ledger (FLOPs: 6N per trained "
                         "token, 4N with LoRA, 2N per generated token)")

    def __post_init__(self):
        check_choices(self)
        _check(isinstance(self.total, (int, float)) and math.isfinite(self.total) and self.total > 0,
               "total", "must be a positive finite number", self.total)


@dataclass
class StageConfig:
    """Settings of one training stage (CPT or SFT)."""

    rank: int = option(0, "LoRA rank (a power of two up to 512); 0 trains all weights")
    lr: float = option(1e-3, "peak learning rate")
    batch_size: int = option(32, "examples per optimizer step (RL: prompts per step)")
    warmup_steps: int = option(5, "linear warm-up steps")
    max_length: int = option(192, "tokens per training example (longer ones are cut)")

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

    lr: float = option(1e-4, "peak learning rate")
    batch_size: int = option(8, "prompts per optimizer step, each sampled `generations` times")
    beta: float = option(1e-3, "KL penalty towards the stage's starting model")
    generations: int = option(4, "completions sampled per prompt (GRPO compares them)")
    start: Literal["warm", "cold"] = option("warm", "warm: from the SFT result; cold: from the model before SFT")
    temperature: float = option(1.0, "sampling temperature of the RL completions")
    max_completion_length: int = option(32, "tokens generated per RL completion")
    handover: Literal["fixed", "predicted-peak"] = option(
        "fixed", "fixed: SFT runs its whole share; predicted-peak: end SFT once the curve model says its OOD peak "
        "has passed and give the rest of SFT's share to RL")
    handover_confidence: float = option(0.8, "probability that the peak has passed needed to hand over")
    format_reward: float = option(0.0, "reward added when a completion holds an answer where `data.answer` "
                                  "looks (0: none)")
    reward: Literal["exact", "partial"] = option("exact", "task reward: `exact` (the task's scorer, as evaluation "
                                                 "scores) or `partial` (character similarity of the answer to the "
                                                 "reference, 0-1: credit for a nearly right answer)")

    def __post_init__(self):
        super().__post_init__()
        check_choices(self)
        _check(isinstance(self.handover_confidence, (int, float)) and 0.5 <= self.handover_confidence < 1,
               "handover_confidence", "must be in [0.5, 1)", self.handover_confidence)
        _check(isinstance(self.beta, (int, float)) and self.beta >= 0, "beta", "must be >= 0", self.beta)
        _check(isinstance(self.generations, int) and self.generations >= 2, "generations",
               "must be an integer >= 2 (GRPO compares completions of one prompt)", self.generations)
        _check(isinstance(self.temperature, (int, float)) and self.temperature > 0, "temperature",
               "must be > 0", self.temperature)
        _positive("max_completion_length", self.max_completion_length)


@dataclass
class Allocation:
    """What one trial does: stage shares on the simplex plus each stage's settings."""

    shares: dict[str, float] = option(factory=lambda: {"cpt": 0.3, "sft": 0.3, "rl": 0.4},
                                      help="fraction of the budget per stage (cpt, sft, rl); sums to 1")
    cpt: StageConfig = option(factory=StageConfig, help="continued pre-training on the suite's corpus")
    sft: StageConfig = option(factory=StageConfig, help="supervised fine-tuning, loss on the answer only")
    rl: RLConfig = option(factory=RLConfig, help="GRPO with the task's verifiable reward")

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

    name: str = option("llama-0.5m", "a built-in backbone: llama-0.5m, llama-2m, llama-8m or llama-30m")
    path: str | None = option(None, "a local folder or hub id of any causal LM (overrides `name`)")
    trust_remote_code: bool = option(False, "allow the model's own code (hub models that need it)")

    def __post_init__(self):
        from ._backbones import BUILTIN_BACKBONES

        if self.path is None:
            _check(self.name in BUILTIN_BACKBONES, "name",
                   f"must be a built-in backbone ({', '.join(BUILTIN_BACKBONES)}) or set `backbone.path`",
                   self.name)


@dataclass(frozen=True)
class SuiteSizes:
    """How many items each split of a built-in suite holds."""

    cpt: int = option(2000, "CPT corpus documents")
    sft: int = option(2000, "SFT examples")
    rl: int = option(512, "RL prompts")
    id_test: int = option(64, "in-domain test items")
    ood_test: int = option(64, "out-of-domain test items")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"data.sizes.{f.name}", f"must be a positive integer, got {value!r}")


@dataclass
class DataConfig:
    """A built-in `suite`, or user `files` (split -> path) scored by `scorer`."""

    suite: Suite | None = option("genomics", "a built-in suite (or give `files`)")
    seed: int = option(0, "seed of the generated suite data")
    sizes: SuiteSizes = option(factory=lambda: SuiteSizes(), help="items per split of a built-in suite")
    ood: Literal["recall", "transfer"] = option("recall", "OOD split of a built-in suite: `recall` (longer inputs, "
                                                "and CPT-only facts asked as the CPT corpus states them) or "
                                                "`transfer` (CPT-only facts asked in an answer format only SFT "
                                                "teaches: OOD rises as SFT teaches the format, then falls as SFT "
                                                "overwrites the facts)")
    files: dict[str, str] | None = option(None, "user data: split (cpt, sft, rl, id, ood) -> JSONL, CSV or "
                                          "Parquet file with `prompt` and `answer` columns")
    scorer: str = option("exact", "user data scorer: exact, numeric, set_f1, or module:function")
    tolerance: float = option(0.05, "relative tolerance of the `numeric` scorer")
    chat: Literal["auto", "on", "off"] = option("auto", "format prompts with the tokenizer's chat template (auto: "
                                                "when it has one): SFT loss on the assistant turn, GRPO and "
                                                "evaluation from templated prompts")
    system_prompt: str | None = option(None, "a system message before every prompt (chat templates only)")
    template_kwargs: dict[str, Any] | None = option(None, "switches passed to the chat template, e.g. "
                                                    "{enable_thinking: false} for Qwen3")
    answer: str | None = option(None, "where the answer is in a completion, applied before scoring: `tag` "
                                "(<answer>...</answer>), `last-line`, or a regex with a group named `answer`; "
                                "default: the whole completion")

    def __post_init__(self):
        check_choices(self)
        if self.answer is not None:
            from ._scoring import answer_extractor

            try:
                answer_extractor(self.answer)
            except ValueError as err:
                raise ConfigError("answer", str(err)) from None
        if self.files is not None:
            _check(isinstance(self.files, dict) and all(isinstance(v, str) for v in self.files.values()),
                   "files", "must map split names (cpt, sft, rl, id, ood) to file paths", self.files)
            unknown = set(self.files) - {"cpt", "sft", "rl", "id", "ood"}
            _check(not unknown, "files", f"has unknown split(s) {sorted(unknown)}", self.files)
            for split in ("id", "ood"):
                _check(split in self.files, "files", f"needs the `{split}` split", self.files)
        else:
            _check(self.suite is not None, "suite", f"must be one of {', '.join(typing.get_args(Suite))} "
                   "(or give `data.files`)", self.suite)
        from ._scoring import SCORERS

        _check(isinstance(self.scorer, str) and (self.scorer.strip() in SCORERS or ":" in self.scorer),
               "scorer", f"must be one of {', '.join(sorted(SCORERS))} or an import path 'package.module:function'",
               self.scorer)


@dataclass
class EvalConfig:
    """Evaluation points per stage (evenly spaced in compute) plus the start; not charged."""

    points: dict[str, int] = option(factory=lambda: {"cpt": 2, "sft": 8, "rl": 4},
                                    help="evaluation points per stage, evenly spaced in compute")
    batch_size: int = option(64, "prompts per generation batch")
    max_new_tokens: int | None = option(None, "tokens generated per answer (default: longest test answer + 2)")
    intermediate_items: int | None = option(None, "items per test set at intermediate points: a fixed subsample, "
                                            "stratified by task (the start and every stage end use every item; "
                                            "points record n and standard error); default: every item")

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
class AccelConfig:
    """TRL's GPU options. Each is off on the CPU; asking for one where its package or a CUDA device is
    missing is refused with what to install or change."""

    bf16: Literal["auto", "on", "off"] = option("auto", "bfloat16 training and generation (auto: on a GPU that "
                                                "supports it)")
    gradient_checkpointing: Literal["auto", "on", "off"] = option(
        "auto", "recompute activations in the backward pass: less memory, ~20% more time (auto: on a GPU, as TRL "
        "does; off on the CPU, where the weights come out the same)")
    padding_free: bool = option(False, "SFT/CPT without padding (TRL padding_free; needs flash attention)")
    liger: bool = option(False, "Liger fused kernels (pip install liger-kernel)")
    rl_generation: Literal["hf", "vllm"] = option("hf", "GRPO generation: transformers or TRL's colocated vLLM")
    eval_engine: Literal["hf", "vllm"] = option("hf", "evaluation generation engine")

    def __post_init__(self):
        check_choices(self)


@dataclass
class TrialConfig:
    """Everything that determines one staged trial."""

    name: str = option("trial", "name of the trial (and of the study, unless `study.name` is set)")
    seed: int = option(0, "training seed (initialization, data order, sampling)")
    backbone: BackboneConfig = option(factory=BackboneConfig, help="the model to post-train")
    data: DataConfig = option(factory=DataConfig, help="a built-in suite or user files")
    budget: Budget = option(factory=Budget, help="the fixed compute budget of one trial")
    allocation: Allocation = option(factory=Allocation, help="stage shares and each stage's settings")
    eval: EvalConfig = option(factory=EvalConfig, help="evaluation (not charged to the budget)")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    accel: AccelConfig = option(factory=AccelConfig, help="GPU efficiency options (speed and memory)")
    tracking: Literal["none", "tensorboard", "trackio", "wandb"] = option(
        "none", "send each stage's training logs to a tracker, one run per stage named <study>/<trial>/<stage>")

    def __post_init__(self):
        _check(self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:"), "device",
               "must be auto, cpu, cuda or cuda:N", self.device)
        _check(isinstance(self.seed, int), "seed", "must be an integer", self.seed)
        check_choices(self)
        if self.allocation.rl.format_reward and self.data.answer is None:
            raise ConfigError("allocation.rl.format_reward", "needs `data.answer` (where an answer is expected: "
                              "tag, last-line or a regex)")

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
