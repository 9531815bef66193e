"""Plan files: YAML (a path or a preset shipped in the package) -> validated trial configuration."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ptplan.stages._config import ConfigError, TrialConfig, apply_overrides

# Sections a plan may hold besides the trial configuration (read by studies/).
STUDY_SECTIONS = ("study",)


class PlanError(ValueError):
    """A plan file cannot be read or names an unknown preset."""


def preset_names() -> list[str]:
    folder = resources.files("ptplan") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    return (resources.files("ptplan") / "presets" / f"{name}.yaml").read_text()


def load_plan(plan: str) -> tuple[dict, str]:
    """Return (mapping, source) for a plan file path or a preset name."""
    import yaml

    path = Path(plan)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise PlanError(f"plan file {plan} does not exist")
        text, source = path.read_text(), str(path)
    elif plan in preset_names():
        text, source = preset_text(plan), f"preset:{plan}"
    else:
        raise PlanError(f"{plan!r} is neither a plan file nor a preset (presets: {', '.join(preset_names())})")
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


def trial_config(plan: dict, overrides: list[str] | None = None) -> TrialConfig:
    """The trial part of a plan, with `key=value` overrides applied, validated."""
    data = apply_overrides(plan, overrides or [])
    trial = {k: v for k, v in data.items() if k not in STUDY_SECTIONS}
    return TrialConfig.from_dict(trial)


__all__ = ["PlanError", "ConfigError", "load_plan", "preset_names", "preset_text", "trial_config"]
