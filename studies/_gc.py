"""`ptplan gc`: free the stage checkpoints of a study that no kept result needs.

Kept: with `keep="final"` the last stage's checkpoint of every COMPLETE trial, with `keep="best"` of the
Pareto-front (or best weighted) trials only, with `keep="none"` nothing; every adapter's base chain is
kept with it. Everything else under the run folder's `stages/` is removed (records included: a trial
that needs a removed stage later trains it again). Refused while trials run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ptplan.stages.errors import StudyError
from ptplan.stages.record import STAGES

if TYPE_CHECKING:
    from ._config import Plan

Keep = Literal["final", "best", "none"]


@dataclass
class GcResult:
    removed: list[Path] = field(default_factory=list)  # stage folders (removed, or to remove in a dry run)
    kept: list[Path] = field(default_factory=list)
    freed_bytes: int = 0
    kept_bytes: int = 0


def store_size(run_dir: Path) -> tuple[int, int]:
    """(stage checkpoints, bytes) under a run folder's stage store."""
    store = Path(run_dir) / "stages"
    folders = [p for p in store.glob("*-*") if p.is_dir() and p.name != "quarantine"] if store.exists() else []
    from ptplan.stages._backbones import folder_bytes

    return len(folders), sum(folder_bytes(p) for p in folders)


def _chain(model_dir: Path) -> list[Path]:
    """A checkpoint's stage folder and, for an adapter, the stage folders of its bases."""
    from ptplan.stages._backbones import BASE_FILE

    out, here = [], model_dir
    while here.exists():
        out.append(here.parent)
        base = here / BASE_FILE
        if not base.exists():
            break
        spec = json.loads(base.read_text())
        if "checkpoint" not in spec:
            break
        here = (here / spec["checkpoint"]).resolve()
    return out


def collect(plan: "Plan", table, keep: Keep, dry_run: bool = False) -> GcResult:
    """Remove (or with `dry_run` list) the stage folders of `plan`'s run folder that `keep` does not need."""
    if keep not in ("final", "best", "none"):
        raise StudyError(f"--keep must be final, best or none, got {keep!r}")
    running = [r["number"] for r in table.rows if r["state"] == "RUNNING"]
    if running:
        raise StudyError(f"trials {running} are running; run `ptplan gc` when the study is idle")
    wanted = table.front if keep == "best" else [r for r in table.rows if r["state"] == "COMPLETE"] \
        if keep == "final" else []
    keep_dirs: set[Path] = set()
    for row in wanted:
        result = Path(row["artifacts"] or "") / "result.json"
        if not row.get("artifacts") or not result.exists():
            continue
        stages = json.loads(result.read_text()).get("stages") or {}
        last = [s for s in STAGES if s in stages][-1:]
        for s in last:
            keep_dirs.update(p.resolve() for p in _chain(Path(stages[s]["checkpoint"])))
    from ptplan.stages._backbones import folder_bytes

    out = GcResult()
    store = plan.run_dir / "stages"
    for folder in sorted(store.glob("*-*")) if store.exists() else []:
        if not folder.is_dir() or folder.name == "quarantine":
            continue
        size = folder_bytes(folder)
        if folder.resolve() in keep_dirs:
            out.kept.append(folder)
            out.kept_bytes += size
            continue
        out.removed.append(folder)
        out.freed_bytes += size
        if not dry_run:
            shutil.rmtree(folder)
    return out
