"""What trials cost in device time: each trial records its wall time, devices and device-hours
(per stage where it trained), and a study sums them, so a user sees what the study cost.

A device is a GPU when the trial ran on CUDA (G of them for a multi-GPU trial), else one CPU
process. Stage device-hours count training seconds (evaluation excluded); `other` is the rest of
the trial's wall time (data, model loading, evaluation); a reused stage costs nothing.
"""

from __future__ import annotations

import os
import socket
from typing import Iterable

RESOURCES_ATTR = "resources"
STAGES = ("cpt", "sft", "rl")


def trial_devices(device: str, gpus_per_trial: int = 0) -> tuple[str, int]:
    """(kind, count) of the devices a trial with this `device` setting runs on in this process."""
    if device == "cpu":
        return "cpu", 1
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        return "cpu", 1
    return torch.cuda.get_device_name(0), max(1, gpus_per_trial)


def resources_record(wall_seconds: float, timings: dict | None, kind: str, devices: int) -> dict:
    """The `resources` user attr of one trial (also written for failed and interrupted trials)."""
    timings = timings or {}
    stage_seconds = {s: float(timings[s]) for s in STAGES if isinstance(timings.get(s), (int, float))}
    other = max(wall_seconds - sum(stage_seconds.values()), 0.0)
    hours = {s: sec * devices / 3600 for s, sec in stage_seconds.items()}
    hours["other"] = other * devices / 3600
    return {"wall_seconds": wall_seconds, "device": kind, "devices": devices,
            "device_hours": wall_seconds * devices / 3600, "stage_device_hours": hours,
            "host": socket.gethostname(), "slurm_task": os.environ.get("PTPLAN_SLURM_TASK")}


COST_COLUMNS = ("device", "devices", "wall_seconds", "device_hours", *(f"device_hours_{s}" for s in (*STAGES, "other")))


def cost_columns(resources: dict | None) -> dict:
    """A trial's `resources` record as flat trial-table columns (None where it has none)."""
    r = resources if isinstance(resources, dict) else {}
    stages = r.get("stage_device_hours") or {}
    out = {k: r.get(k) for k in COST_COLUMNS[:4]}
    out.update({f"device_hours_{s}": stages.get(s) for s in (*STAGES, "other")})
    return out


def table_cost(rows: list[dict]) -> str | None:
    """One line on what the trials of a table cost in device-hours (None: nothing recorded)."""
    rows = [r for r in rows if r.get("device_hours") is not None]
    if not rows:
        return None
    total = sum(r["device_hours"] for r in rows)
    stages = ", ".join(f"{s} {sum(r.get(f'device_hours_{s}') or 0.0 for r in rows):.3g}" for s in (*STAGES, "other"))
    devices = ", ".join(sorted({f"{r.get('device')} x{r.get('devices')}" for r in rows}))
    return f"cost: {total:.3g} device-hours over {len(rows)} trials ({devices}); per stage: {stages}"


def study_cost(trials: Iterable) -> dict:
    """Device-hours of a study's trials: total, per stage, per trial state, and the devices seen."""
    total, per_stage, per_state, devices, n = 0.0, {}, {}, set(), 0
    for t in trials:
        r = t.user_attrs.get(RESOURCES_ATTR)
        if not isinstance(r, dict):
            continue
        n += 1
        total += r.get("device_hours", 0.0)
        per_state[t.state.name] = per_state.get(t.state.name, 0.0) + r.get("device_hours", 0.0)
        for stage, h in (r.get("stage_device_hours") or {}).items():
            per_stage[stage] = per_stage.get(stage, 0.0) + h
        devices.add(f"{r.get('device', '?')} x{r.get('devices', 1)}")
    return {"trials": n, "device_hours": total, "stages": per_stage, "states": per_state,
            "devices": sorted(devices)}
