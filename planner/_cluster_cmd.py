"""`ptplan submit | cancel` and the cluster part of `ptplan status`: parse, delegate to
studies._slurm / studies._accounting, print with rich."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._cmd import _bad_input, _echo, _error, _resolve


def submit_command(plan: str, overrides: list[str], slurm: bool, trials: int | None, options: dict,
                   dry_run: bool, console: Console, err_console: Console) -> int:
    """Check storage and plan, create the study, write and sbatch one array of `ptplan worker` tasks."""
    from ptplan.studies._slurm import SubmitOptions, submit

    if not slurm:
        return _error(err_console, "choose a scheduler: `ptplan submit PLAN --slurm` (SLURM is the only one so far)")
    try:
        if trials is not None and trials < 0:
            raise ValueError(f"--trials must be >= 0, got {trials}")
        opts = SubmitOptions(**options)
        sp = _resolve(plan, overrides)
        submit(sp, trials, opts, _echo(), dry_run=dry_run)
    except (*_bad_input(), ValueError) as err:
        return _error(err_console, err)
    return 0


def cancel_command(plan: str, overrides: list[str], console: Console, err_console: Console) -> int:
    from ptplan.studies._slurm import cancel

    try:
        cancel(_resolve(plan, overrides), _echo())
    except _bad_input() as err:
        return _error(err_console, err)
    return 0


def _hours(h: float) -> str:
    return f"{h:.3g} h"


def print_cluster(console: Console, study, sp) -> None:
    """Device-hours of the study (total, per stage) and the tasks of its SLURM arrays, if any."""
    from ptplan.studies._accounting import study_cost
    from ptplan.studies._slurm import array_tasks, read_jobs

    cost = study_cost(study.get_trials(deepcopy=False))
    if cost["trials"]:
        stages = ", ".join(f"{s} {_hours(cost['stages'][s])}" for s in ("cpt", "sft", "rl", "other")
                           if s in cost["stages"])
        states = ", ".join(f"{k} {_hours(v)}" for k, v in sorted(cost["states"].items()))
        console.print(f"device-hours: {_hours(cost['device_hours'])} over {cost['trials']} trials "
                      f"({', '.join(cost['devices'])}); per stage: {stages}; per state: {states}",
                      highlight=False, markup=False)
    jobs = read_jobs(sp)
    ids = [j["job_id"] for j in jobs if j.get("job_id")]
    if not ids:
        return
    tasks, note = array_tasks(ids)
    t = Table(title=f"SLURM array tasks (job{'s' if len(ids) > 1 else ''} {', '.join(ids)})")
    for col in ("job", "task", "state", "node / reason", "run time", "exit", "restarts"):
        t.add_column(col, no_wrap=True)
    style = {"RUNNING": "yellow", "PENDING": "cyan", "COMPLETED": "green", "FAILED": "red", "CANCELLED": "magenta",
             "TIMEOUT": "red", "NODE_FAIL": "red", "OUT_OF_MEMORY": "red", "PREEMPTED": "magenta"}
    for task in tasks:
        s = style.get(task.state)
        t.add_row(task.job, task.task, f"[{s}]{task.state}[/]" if s else task.state,
                  escape(task.node or (f"({task.reason})" if task.reason else "")), task.elapsed, task.exit_code,
                  str(task.restarts or ""))
    console.print(t)
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.state] = counts.get(task.state, 0) + 1
    console.print("tasks: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none known")
                  + (f" ({note})" if note else ""), highlight=False, markup=False)
