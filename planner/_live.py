"""Live view of a running study for `ptplan run`, read from the run folder (works for any --jobs).

Each trial folder holds `result.json` once finished and `progress.json` while it trains; polling
files (not the storage) keeps the view cheap and independent of how many workers write.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ptplan.stages.record import STAGES


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _bar(fraction: float, width: int = 20) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "█" * filled + "░" * (width - filled)


class StudyMonitor:
    """Renders trials done/running/failed, the current best, per-trial stage progress, compute spent."""

    def __init__(self, run_dir: Path, target: int, budget_total: float, unit: str, stale_after: float = 120.0):
        self.trials_dir = Path(run_dir) / "trials"
        self.target, self.budget_total, self.unit = target, budget_total, unit
        self.stale_after = stale_after
        self.started = time.time()
        self._cache: dict[Path, dict] = {}  # finished trials never change: read once

    def snapshot(self) -> dict:
        done, failed, running, spent = [], [], [], 0.0
        if self.trials_dir.exists():
            for folder in self.trials_dir.iterdir():
                if not folder.is_dir() or ".old-" in folder.name:
                    continue
                result = self._cache.get(folder) or _read(folder / "result.json")
                if result is not None:
                    self._cache[folder] = result
                    spent += float((result.get("ledger") or {}).get("spent", {}).get(self.unit, 0.0))
                    (done if result.get("status") == "complete" else failed).append((folder.name, result))
                    continue
                progress = _read(folder / "progress.json")
                if progress and time.time() - progress.get("time", 0) < self.stale_after:
                    running.append((folder.name, progress))
                    spent += self._running_spent(progress)
        return {"done": done, "failed": failed, "running": running, "spent": spent}

    @staticmethod
    def _running_spent(p: dict) -> float:
        shares = p.get("shares", {})
        before = sum(shares.get(s, 0.0) for s in STAGES[: STAGES.index(p["stage"])]) * p.get("total", 0.0)
        return before + float(p.get("spent", 0.0))

    def __rich__(self) -> Group:
        snap = self.snapshot()
        done, failed, running = snap["done"], snap["failed"], snap["running"]
        lines = [Text(f"trials: {len(done)} complete of {self.target}, {len(running)} running, "
                      f"{len(failed)} failed   elapsed {time.time() - self.started:.0f} s")]
        if done:
            best_id = max(done, key=lambda d: d[1]["final"]["id"])
            best_ood = max(done, key=lambda d: d[1]["final"]["ood"])
            lines.append(Text(f"best ID {best_id[1]['final']['id']:.3f} (trial {best_id[0]})   "
                              f"best OOD {best_ood[1]['final']['ood']:.3f} (trial {best_ood[0]})"))
        study_budget = self.target * self.budget_total
        lines.append(Text(f"compute spent {snap['spent']:.3g} of {study_budget:.3g} {self.unit} "
                          f"({snap['spent'] / study_budget:.0%} of {self.target} trials' budgets)"))
        if running:
            table = Table(box=None, pad_edge=False, show_header=True)
            for col in ("trial", "stage", "progress", ""):
                table.add_column(col)
            for name, p in sorted(running, key=lambda r: int(r[0]) if r[0].isdigit() else r[0]):
                frac = p["spent"] / p["slice"] if p.get("slice") else 0.0
                table.add_row(name, p["stage"].upper(), _bar(frac), f"{frac:.0%}")
            lines.append(table)
        return Group(*lines)
