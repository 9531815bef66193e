"""Search space: which plan fields a study searches, and how a sampled point becomes a trial config.

Every searched field is named by its plan path (`allocation.sft.rank`); everything else is fixed
by the plan. Stage shares live on the simplex, so they are searched as two coordinates:
`allocation.shares.cpt` (CPT's share of the budget) and `allocation.shares.sft_of_rest` (SFT's
part of what CPT leaves); RL gets the rest.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from ptplan.stages import ConfigError, TrialConfig

CPT_SHARE = "allocation.shares.cpt"
SFT_OF_REST = "allocation.shares.sft_of_rest"
SHARE_PARAMS = (CPT_SHARE, SFT_OF_REST)
SPEC_KEYS = ("choices", "low", "high", "log", "step")
SHARE_DIGITS = 10  # shares are rounded so that e.g. 0.8 * 3/8 gives a slice of exactly 3 epochs


def _scalar_type(path: str) -> type:
    """The Python type of the trial-config field at a plan path (KeyError if there is none)."""
    if path in SHARE_PARAMS:
        return float
    cls: Any = TrialConfig
    parts = path.split(".")
    i = 0
    while i < len(parts):
        if not dataclasses.is_dataclass(cls):
            raise KeyError(path)
        hints = typing.get_type_hints(cls)
        if parts[i] not in hints:
            raise KeyError(path)
        hint = hints[parts[i]]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(hint) if a is not type(None)]
            hint = inner[0] if len(inner) == 1 else hint
        if typing.get_origin(hint) is dict:  # e.g. eval.points.sft: the next part is a key
            if i + 2 != len(parts):
                raise KeyError(path)
            return typing.get_args(hint)[1]
        cls = hint
        i += 1
    if dataclasses.is_dataclass(cls):
        raise KeyError(path)  # a section, not a field
    return cls if isinstance(cls, type) else str


def _number(value: Any, kind: type, where: str, what: str) -> float | int:
    if isinstance(value, bool):
        raise ConfigError(where, f"{what} must be a number, got {value!r}")
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise ConfigError(where, f"{what} must be an integer, got {value!r}")
        return value
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(where, f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(where, f"{what} must be finite, got {value!r}")
    return out


@dataclass(frozen=True)
class Param:
    """One searched plan field: a list of choices, or a numeric range (optionally log or stepped)."""

    path: str
    kind: str  # "categorical" | "float" | "int"
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @classmethod
    def parse(cls, path: str, spec: Any) -> "Param":
        where = f"study.search.{path}"
        if path.startswith("allocation.shares") and path not in SHARE_PARAMS:
            raise ConfigError(where, "cannot be searched on its own: shares live on the simplex; search "
                              f"`{CPT_SHARE}` (CPT's share of the budget) and/or `{SFT_OF_REST}` (SFT's part "
                              "of what CPT leaves; RL gets the rest)")
        try:
            ftype = _scalar_type(path)
        except KeyError:
            raise ConfigError(where, "is not a field of the trial config (a plan path such as allocation.sft.rank, "
                              f"budget.total, allocation.rl.beta, or {CPT_SHARE} / {SFT_OF_REST})") from None
        if isinstance(spec, (list, tuple)):
            spec = {"choices": list(spec)}
        if not isinstance(spec, dict) or not spec:
            raise ConfigError(where, "must be {choices: [...]} or {low: .., high: .., log: .., step: ..}, "
                              f"got {spec!r}")
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        if unknown:
            raise ConfigError(where, f"has unknown key(s) {unknown} (known: {', '.join(SPEC_KEYS)})")
        if "choices" in spec:
            if set(spec) != {"choices"}:
                raise ConfigError(where, "takes either `choices` or `low`/`high`, not both")
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise ConfigError(where, f"`choices` must be a non-empty list, got {choices!r}")
            if ftype in (int, float):
                choices = [_number(c, ftype, where, "every choice") for c in choices]
            for c in choices:
                if not (c is None or isinstance(c, (bool, int, float, str))):
                    raise ConfigError(where, f"choices must be numbers, strings or booleans, got {c!r}")
            if len(set(map(repr, choices))) != len(choices):
                raise ConfigError(where, f"has repeated choices {choices!r}")
            return cls(path, "categorical", choices=tuple(choices))
        if ftype not in (int, float):
            raise ConfigError(where, f"is a {ftype.__name__} field: give `choices`, not a range")
        if path.endswith(".rank"):
            raise ConfigError(where, "ranks are 0 or powers of two: give `choices` (e.g. [16, 64, 256]), not a range")
        missing = [k for k in ("low", "high") if k not in spec]
        if missing:
            raise ConfigError(where, f"needs `{missing[0]}` (or give `choices`)")
        low = _number(spec["low"], ftype, where, "`low`")
        high = _number(spec["high"], ftype, where, "`high`")
        if not low < high:
            raise ConfigError(where, f"`low` must be below `high`, got low={low!r}, high={high!r}")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(where, f"`log` must be true or false, got {log!r}")
        if log and low <= 0:
            raise ConfigError(where, f"`log: true` needs `low` > 0, got {low!r}")
        step = spec.get("step")
        if step is not None:
            step = _number(step, ftype, where, "`step`")
            if step <= 0:
                raise ConfigError(where, f"`step` must be > 0, got {step!r}")
            if log:
                raise ConfigError(where, "takes `log` or `step`, not both")
        return cls(path, "int" if ftype is int else "float", low=low, high=high, log=log, step=step)

    def values(self) -> list:
        """Every value of a finite parameter (grid cells); ValueError if it is a continuous range."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None:
            if self.kind == "int":
                return list(range(int(self.low), int(self.high) + 1))
            raise ValueError(self.path)
        n = int(math.floor((self.high - self.low) / self.step + 1e-9))
        vals = [round(self.low + i * self.step, 12) for i in range(n + 1)]
        return [int(v) for v in vals] if self.kind == "int" else vals

    def probes(self) -> list:
        """Values that must each be a valid plan value (choices, or both ends of a range)."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def suggest(self, trial, grid: bool) -> Any:
        if self.choices is not None or grid:
            return trial.suggest_categorical(self.path, self.values())
        if self.kind == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log)

    def spec(self) -> dict:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """`{allocation: {sft: {rank: {choices: ..}}}}` (from --set) and `{allocation.sft.rank: ..}` alike."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        is_spec = isinstance(value, list) or (isinstance(value, dict) and value and set(value) <= set(SPEC_KEYS))
        if isinstance(value, dict) and value and not is_spec:
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def _set_path(data: dict, path: str, value: Any) -> None:
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    node[parts[-1]] = value


class SearchSpace:
    """Searched fields over a fixed trial plan; turns sampled values into a validated TrialConfig."""

    def __init__(self, params: dict[str, Param], base: dict, grid: bool):
        self.params = params
        self.base = base  # the plan's trial mapping (no `study` section), overrides applied
        self.grid = grid
        self._base_shares = TrialConfig.from_dict(copy.deepcopy(base)).allocation.shares

    @classmethod
    def parse(cls, search: Any, base: dict, grid: bool) -> "SearchSpace":
        if not isinstance(search, dict) or not search:
            raise ConfigError("study.search", f"must map plan paths to {{choices: [...]}} or {{low, high}}, got {search!r}")
        params = {path: Param.parse(path, spec) for path, spec in _flatten(search).items()}
        space = cls(params, base, grid)
        space._validate()
        return space

    def _validate(self) -> None:
        for p in self.params.values():
            where = f"study.search.{p.path}"
            if self.grid:
                try:
                    p.values()
                except ValueError:
                    raise ConfigError(where, "needs `choices` (or `step`) with `sampler: grid`, "
                                      f"got the continuous range {p.spec()}") from None
            for value in p.probes():
                what = "choice" if p.choices is not None else "bound"
                if p.path in SHARE_PARAMS:
                    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                        raise ConfigError(where, f"{what} {value!r} is outside [0, 1] (a share)")
                try:
                    self.config_for({p.path: value})
                except ConfigError as err:
                    raise ConfigError(where, f"{what} {value!r} is not allowed: {err}") from None

    # -- sampled point -> trial ----------------------------------------------------------------
    def suggest(self, trial) -> dict[str, Any]:
        return {path: p.suggest(trial, self.grid) for path, p in self.params.items()}

    def shares_for(self, values: dict[str, Any]) -> dict[str, float]:
        """Stage shares of a point: CPT share, then SFT's part of the rest, the rest to RL."""
        base = self._base_shares
        if not any(k in values for k in SHARE_PARAMS):
            return dict(base)
        cpt = float(values.get(CPT_SHARE, base["cpt"]))
        rest_base = base["sft"] + base["rl"]
        frac = float(values.get(SFT_OF_REST, base["sft"] / rest_base if rest_base > 0 else 1.0))
        cpt_r = round(cpt, SHARE_DIGITS)
        sft_r = round((1.0 - cpt) * frac, SHARE_DIGITS)
        rl_r = round(1.0 - cpt_r - sft_r, SHARE_DIGITS)
        return {"cpt": cpt_r + 0.0, "sft": sft_r + 0.0, "rl": max(rl_r, 0.0) + 0.0}

    def plan_for(self, values: dict[str, Any]) -> dict:
        data = copy.deepcopy(self.base)
        for path, value in values.items():
            if path not in SHARE_PARAMS:
                _set_path(data, path, value)
        if any(k in values for k in SHARE_PARAMS):
            _set_path(data, "allocation.shares", self.shares_for(values))
        return data

    def config_for(self, values: dict[str, Any], name: str | None = None) -> TrialConfig:
        data = self.plan_for(values)
        if name is not None:
            data["name"] = name
        return TrialConfig.from_dict(data)

    # -- grid ------------------------------------------------------------------------------------
    def grid_space(self) -> dict[str, list]:
        return {path: p.values() for path, p in self.params.items()}

    def cells(self) -> list[dict[str, Any]]:
        space = self.grid_space()
        keys = list(space)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(space[k] for k in keys))]

    def n_cells(self) -> int:
        return math.prod(len(v) for v in self.grid_space().values())

    # -- identity and display --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {path: p.spec() for path, p in sorted(self.params.items())}

    def describe(self, values: dict[str, Any]) -> str:
        shares = self.shares_for(values)
        parts = [f"shares {shares['cpt']:.2f}/{shares['sft']:.2f}/{shares['rl']:.2f}"]
        parts += [f"{short_name(k)}={_short(v)}" for k, v in values.items() if k not in SHARE_PARAMS]
        return ", ".join(parts)


def short_name(path: str) -> str:
    return path[len("allocation."):] if path.startswith("allocation.") else path


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def default_search(base: dict) -> dict:
    """Search used when a plan has no `study.search`: the shares of the stages the plan runs."""
    shares = TrialConfig.from_dict(copy.deepcopy(base)).allocation.shares
    search: dict[str, Any] = {}
    if shares["cpt"] > 0:
        search[CPT_SHARE] = {"low": 0.1, "high": 0.5}
    if shares["sft"] > 0 and shares["rl"] > 0:
        search[SFT_OF_REST] = {"low": 0.2, "high": 0.8}
    return search
