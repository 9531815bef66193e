"""`ptplan` command line: parses arguments and delegates to plain functions (heavy imports inside)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="ptplan: plan post-training compute (CPT / SFT / RL) for biological reasoning models.")
console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@app.command()
def trial(
    plan: Annotated[Optional[str], typer.Argument(help="plan file or preset name (see `ptplan init --list`)")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="override a plan field: key.sub=value")] = [],
    out: Annotated[Optional[Path], typer.Option(help="trial folder (default runs/<name>-<time>)")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="re-run only what is missing in this trial folder")] = None,
) -> None:
    """Run one real staged trial (CPT -> SFT -> RL) under the plan's budget."""
    from ._trial_cmd import run_trial_command

    raise typer.Exit(run_trial_command(plan, set_, out, resume, console, err_console))


@app.command()
def tasks(
    suite: Annotated[Optional[str], typer.Argument(help="only this suite")] = None,
    samples: Annotated[int, typer.Option(help="sample prompts per family")] = 1,
) -> None:
    """List built-in task suites: families, OOD shift and sample prompts."""
    from ._tasks_cmd import show_tasks

    try:
        show_tasks(console, suite, samples)
    except ValueError as err:
        _fail(str(err))


# -- studies (studies/): run, worker, status, export, init ------------------------------------------
PlanArg = Annotated[str, typer.Argument(help="plan file or preset name (see `ptplan init --list`)")]
SetOpt = Annotated[list[str], typer.Option("--set", help="override a plan field: key.sub=value (study.* too)")]


@app.command()
def run(
    plan: PlanArg,
    trials: Annotated[Optional[int], typer.Option(help="run until this many trials are COMPLETE in total "
                                                       "(default: study.trials, or the grid size)")] = None,
    jobs: Annotated[int, typer.Option(help="local worker processes")] = 1,
    set_: SetOpt = [],
) -> None:
    """Create or resume the plan's Optuna study and run real trials until N are COMPLETE."""
    from ._study_cmd import run_command

    raise typer.Exit(run_command(plan, set_, trials, jobs, console, err_console))


@app.command()
def worker(
    plan: PlanArg,
    trials: Annotated[Optional[int], typer.Option(help="stop when this many trials are COMPLETE in total")] = None,
    index: Annotated[Optional[int], typer.Option(help="worker number (set by `ptplan run --jobs`)")] = None,
    set_: SetOpt = [],
) -> None:
    """Join a plan's study from any machine that reaches its storage, and run trials."""
    from ._study_cmd import worker_command

    raise typer.Exit(worker_command(plan, set_, trials, index, console, err_console))


@app.command()
def status(
    plan: PlanArg,
    limit: Annotated[int, typer.Option(help="show the last N trials (0: all)")] = 50,
    set_: SetOpt = [],
) -> None:
    """Trials (state, allocation, spent, ID, OOD, failure, retries, reuse), Pareto front, compute saved."""
    from ._study_cmd import status_command

    raise typer.Exit(status_command(plan, set_, limit or None, console, err_console))


@app.command()
def export(
    plan: PlanArg,
    format: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
    out: Annotated[Optional[Path], typer.Option(help="output file (default <run folder>/trials.<format>)")] = None,
    set_: SetOpt = [],
) -> None:
    """Write the trial table, one row per trial (polars)."""
    from ._study_cmd import export_command

    raise typer.Exit(export_command(plan, set_, format, out, console, err_console))


@app.command()
def init(
    preset: Annotated[str, typer.Option(help="preset to start from")] = "quick",
    out: Annotated[Optional[Path], typer.Option(help="plan file to write (default <preset>.yaml)")] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the presets and exit")] = False,
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
    fields: Annotated[bool, typer.Option("--fields", help="print every plan field (type, default, help) and exit")]
    = False,
) -> None:
    """Write a commented example plan (from a preset) to edit and run."""
    from ._study_cmd import init_command

    raise typer.Exit(init_command(preset, out, list_, force, console, err_console, fields=fields))


surrogate_app = typer.Typer(no_args_is_help=True, help="Surrogate models fitted on a trial table.")
app.add_typer(surrogate_app, name="surrogate")


@surrogate_app.command("eval")
def surrogate_eval(
    table: Annotated[str, typer.Argument(help="trial table (Parquet/CSV from `ptplan export`) with a `curves` column")],
    curves: Annotated[Optional[list[str]], typer.Option(
        help="curve points in one Parquet file (columns stage, compute, id, ood, loss and the trial's key columns "
             "among suite, seed, arm, number), instead of the table's `curves` paths; repeatable")] = None,
    items: Annotated[Optional[str], typer.Option(
        help="evaluation items behind one ID and one OOD score, 'ID,OOD' (the plan's data.sizes id_test,ood_test), "
             "for the binomial noise floor when the table has no id_items/ood_items columns")] = None,
) -> None:
    """Held-out accuracy of the curve and outcome models against the baselines (folds grouped by shared
    SFT stage), with coverage of the expected-score and re-run intervals."""
    from ._surrogate_cmd import surrogate_eval as run_eval

    raise typer.Exit(run_eval(table, console, curves or [], items=items))


@app.command()
def recommend(
    plan: PlanArg,
    budget: Annotated[Optional[float], typer.Option(help="total budget in the plan's unit (default: the study's "
                                                         "most run budget)")] = None,
    objective: Annotated[str, typer.Option(help="ood | id | balanced | weight=W (OOD weight in [0, 1])")] = "balanced",
    json_: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
    set_: SetOpt = [],
) -> None:
    """Recommended allocation at a budget: shares, ranks, hand-over, predicted ID/OOD with 80% intervals, evidence."""
    from ._recommend_cmd import recommend_command

    raise typer.Exit(recommend_command(plan, set_, budget, objective, json_, console, err_console))


@app.command()
def report(
    plan: PlanArg,
    out: Annotated[Optional[Path], typer.Option(help="report folder (default <run folder>/report)")] = None,
    budget: Annotated[Optional[float], typer.Option(help="budget of the recommended point")] = None,
    objective: Annotated[str, typer.Option(help="ood | id | balanced | weight=W")] = "balanced",
    set_: SetOpt = [],
) -> None:
    """Terminal summary and a folder with report.md, report.html (images embedded) and PNG plots."""
    from ._report_cmd import report_command

    raise typer.Exit(report_command(plan, set_, out, budget, objective, console, err_console))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
