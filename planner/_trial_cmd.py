"""`ptplan trial`: one trial with a live rich display and a summary table."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ptplan.stages.errors import ConfigError, ConfigMismatch, PlanError, TrialFailed


def _fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def summary_table(result: dict) -> Table:
    led = result["ledger"]
    unit = led["unit"]
    table = Table(title=f"trial {result['name']}: {result['status']}")
    for col in ("stage", f"slice ({unit})", f"spent ({unit})", "steps", "tokens", "flops", "reused"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for name, st in led["stages"].items():
        if st["slice"] <= 0:
            continue
        sp = st["spent"]
        table.add_row(name, _fmt(st["slice"]), _fmt(sp[unit]), str(sp["steps"]), _fmt(sp["tokens"]),
                      _fmt(sp["flops"]), "yes" if st["reused"] else "")
    return table


def run_trial_command(plan, overrides, out, resume, console: Console, err_console: Console) -> int:
    """Resolve the config, run the trial, print the outcome; returns the exit code."""
    from ._api import trial_config, trial_runner

    try:
        if resume is not None:
            from ptplan.stages import load_trial_config

            config = load_trial_config(resume)
            out = resume
        else:
            if plan is None:
                raise PlanError("give a plan file or preset name, or --resume DIR")
            config = trial_config(plan, overrides)
    except (PlanError, ConfigError) as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        return 2
    out = Path(out) if out else Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                        TimeElapsedColumn(), console=err_console, transient=False)
    tasks: dict[str, int] = {}

    def on_progress(stage: str, spent: float, slice_: float) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage.upper(), total=slice_)
        progress.update(tasks[stage], completed=spent)

    def on_point(p) -> None:
        extra = f"  reward {p.reward:.3f}" if p.reward is not None else ""
        progress.console.print(f"  {p.stage:<5} step {p.step:>5}  {p.compute:9.3g} {config.budget.unit}  "
                               f"ID {p.id:.3f}  OOD {p.ood:.3f}  loss {_fmt(p.loss)}{extra}", highlight=False)

    console.print(f"trial [bold]{config.name}[/] -> {out}  (budget {config.budget.total:.4g} {config.budget.unit}, "
                  f"shares {config.allocation.shares})", highlight=False)
    runner = trial_runner(config, out, on_progress=on_progress, on_point=on_point)
    try:
        with progress:
            result = runner.run()
    except ConfigMismatch as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        return 2
    except KeyboardInterrupt:
        err_console.print(f"interrupted: everything recorded so far is in {out} (result.json says failed, "
                          f"interrupted); `ptplan trial --resume {out}` continues it", highlight=False, soft_wrap=True)
        return 130
    except TrialFailed as err:
        if err.result:
            console.print(summary_table(err.result))
        err_console.print(f"[bold red]trial failed[/] ({err.reason}): {err.message}\n"
                          f"everything recorded so far is in {out} (trial.log, curves.parquet, result.json); "
                          f"`ptplan trial --resume {out}` re-runs only what is missing", highlight=False)
        return 1
    console.print(summary_table(result))
    final, peak = result["final"], result["ood_peak"]
    console.print(f"final ID {final['id']:.3f}  OOD {final['ood']:.3f}", highlight=False)
    if peak:
        console.print(f"SFT OOD peak {peak['value']:.3f} at {peak['fraction']:.0%} of the SFT slice"
                      f"{' (censored: still rising)' if peak['censored'] else ''}", highlight=False)
    if runner.dest != Path(out):
        console.print(f"{out} already held a complete result, kept as it was; this attempt wrote "
                      f"{runner.dest}/curves.parquet, result.json", highlight=False)
    else:
        console.print(f"wrote {out}/config.yaml, curves.parquet, result.json, trial.log", highlight=False)
    return 0
