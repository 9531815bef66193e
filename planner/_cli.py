"""`ptplan` command line: parses arguments and delegates to plain functions (heavy imports inside)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

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
FormatOpt = Annotated[Optional[str], typer.Option(
    "--format", help="table | tsv | json (default: table on a terminal, tsv when piped or logged)")]
SetOpt = Annotated[list[str], typer.Option("--set", help="override a plan field: key.sub=value (study.* too)")]


@app.command()
def run(
    plan: PlanArg,
    trials: Annotated[Optional[int], typer.Option(help="run until this many trials are COMPLETE in total "
                                                       "(default: study.trials, or the grid size)")] = None,
    jobs: Annotated[int, typer.Option(help="local worker processes")] = 1,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="queue every failed allocation (grid cells too) again, e.g. after fixing a data file",
    )] = False,
    new_study: Annotated[bool, typer.Option("--new-study", help="start a new study although the run folder holds "
                                                                "trial folders of a study whose storage is gone "
                                                                "(they are moved aside)")] = False,
    skip_preflight: Annotated[bool, typer.Option(
        "--skip-preflight", help="start trials without the preflight checks (e.g. they ran at submission)",
    )] = False,
    set_: SetOpt = [],
) -> None:
    """Create or resume the plan's Optuna study and run real trials until N are COMPLETE.

    A preflight (see `ptplan preflight`) runs before the first trial. Exits 1 when the target was
    not reached (too many failures, or one failure that recurs), 2 on bad input.
    """
    from ._study_cmd import run_command

    raise typer.Exit(run_command(plan, set_, trials, jobs, console, err_console, retry_failed=retry_failed,
                                 new_study=new_study, preflight=not skip_preflight))


@app.command()
def preflight(
    plan: PlanArg,
    no_step: Annotated[bool, typer.Option("--no-step", help="skip the one real optimizer step per stage")] = False,
    set_: SetOpt = [],
) -> None:
    """Check data, scorer, backbone, budget, one optimizer step per stage and evaluation; exit 2 on a problem."""
    from ._study_cmd import preflight_command

    raise typer.Exit(preflight_command(plan, set_, not no_step, console, err_console))


@app.command()
def worker(
    plan: PlanArg,
    trials: Annotated[Optional[int], typer.Option(help="stop when this many trials are COMPLETE in total")] = None,
    index: Annotated[Optional[int], typer.Option(help="worker number (set by `ptplan run --jobs`)")] = None,
    retry_interrupted: Annotated[bool, typer.Option(
        "--retry-interrupted", help="SIGUSR1 stops the trial too, and an interrupted trial's allocation is queued "
                                    "again at once for another worker (set by `ptplan submit`)")] = False,
    set_: SetOpt = [],
) -> None:
    """Join a plan's study from any machine that reaches its storage, and run trials."""
    from ._study_cmd import worker_command

    raise typer.Exit(worker_command(plan, set_, trials, index, console, err_console, retry_interrupted))


@app.command()
def submit(
    plan: PlanArg,
    slurm: Annotated[bool, typer.Option("--slurm", help="submit to SLURM (the only scheduler so far)")] = False,
    workers: Annotated[int, typer.Option(help="array tasks, each one `ptplan worker`")] = 2,
    parallel: Annotated[Optional[int], typer.Option(help="at most this many tasks at once (--array=...%P; "
                                                         "default all)")] = None,
    trials: Annotated[Optional[int], typer.Option(help="run until this many trials are COMPLETE in total "
                                                       "(default: study.trials, or the grid size)")] = None,
    gpus_per_trial: Annotated[Optional[int], typer.Option(help="GPUs per task (default: the plan's "
                                                               "resources.gpus_per_trial, else 0)")] = None,
    cpus_per_task: Annotated[int, typer.Option(help="CPUs per task")] = 1,
    partition: Annotated[Optional[str], typer.Option(help="SLURM partition")] = None,
    time_: Annotated[Optional[str], typer.Option("--time", help="time limit per task (SLURM format, e.g. 4:00:00)")] = None,
    account: Annotated[Optional[str], typer.Option(help="SLURM account")] = None,
    sbatch_arg: Annotated[list[str], typer.Option("--sbatch-arg", help="extra sbatch option, e.g. --qos=high "
                                                                       "(repeatable)")] = [],
    shared_dir: Annotated[list[str], typer.Option("--shared-dir", help="a folder every compute node mounts "
                                                                       "(holds the journal and run folder; "
                                                                       "repeatable)")] = [],
    warn: Annotated[int, typer.Option(help="seconds before the time limit at which a task is warned (USR1), "
                                           "stops its trial and requeues itself")] = 120,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the script and the sbatch command; submit "
                                                            "nothing")] = False,
    set_: SetOpt = [],
) -> None:
    """Put the study on a cluster: one sbatch job array of `ptplan worker` tasks sharing its storage."""
    from ._cluster_cmd import submit_command

    raise typer.Exit(submit_command(plan, set_, slurm, trials, dict(
        workers=workers, parallel=parallel, gpus_per_trial=gpus_per_trial, cpus_per_task=cpus_per_task,
        partition=partition, time=time_, account=account, sbatch_args=list(sbatch_arg),
        shared_dirs=list(shared_dir), warn_seconds=warn), dry_run, console, err_console))


@app.command()
def gc(
    plan: PlanArg,
    keep: Annotated[str, typer.Option(help="final: the last stage of every COMPLETE trial; best: of the Pareto "
                                           "front only; none: nothing")] = "final",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be removed, remove nothing")] = False,
    set_: SetOpt = [],
) -> None:
    """Free stage checkpoints that no kept result needs (an adapter keeps its base chain)."""
    from ._study_cmd import gc_command

    raise typer.Exit(gc_command(plan, set_, keep, dry_run, console, err_console))


@app.command()
def cancel(plan: PlanArg, set_: SetOpt = []) -> None:
    """Cancel the plan's submitted SLURM arrays (running trials are marked interrupted and queued again)."""
    from ._cluster_cmd import cancel_command

    raise typer.Exit(cancel_command(plan, set_, console, err_console))


@app.command()
def status(
    plan: PlanArg,
    limit: Annotated[int, typer.Option(help="show the last N trials (0: all)")] = 50,
    format: FormatOpt = None,
    set_: SetOpt = [],
) -> None:
    """Trials (state, allocation, spent, ID, OOD, failure, retries, reuse), Pareto front, compute saved."""
    from ._study_cmd import status_command

    raise typer.Exit(status_command(plan, set_, limit or None, console, err_console, fmt=format))


@app.command()
def export(
    plan: PlanArg,
    format: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
    out: Annotated[Optional[Path], typer.Option(help="output file (default <run folder>/trials.<format>)")] = None,
    preview: Annotated[int, typer.Option(help="also print the first N rows of the written table")] = 0,
    preview_format: Annotated[Optional[str], typer.Option(
        "--preview-format", help="table | tsv | json (default: table on a terminal, tsv when piped)")] = None,
    set_: SetOpt = [],
) -> None:
    """Write the trial table, one row per trial (polars)."""
    from ._study_cmd import export_command

    raise typer.Exit(export_command(plan, set_, format, out, console, err_console, preview=preview,
                                    preview_format=preview_format))


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
    format: FormatOpt = None,
    items: Annotated[Optional[str], typer.Option(
        help="evaluation items behind one ID and one OOD score, 'ID,OOD' (the plan's data.sizes id_test,ood_test), "
             "for the binomial noise floor when the table has no id_items/ood_items columns")] = None,
) -> None:
    """Held-out accuracy of the curve and outcome models against the baselines (folds grouped by shared
    SFT stage), with coverage of the expected-score and re-run intervals."""
    from ._surrogate_cmd import surrogate_eval as run_eval

    raise typer.Exit(run_eval(table, console, curves or [], fmt=format, items=items))


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


def environment_error(err: BaseException) -> str | None:
    """One line for an error of the machine rather than of ptplan or the plan (a read-only or full disk,
    a permission, a storage that went away), naming the path or URL; None for anything else."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError):  # errno set by the OS; polars/pyarrow put theirs in the message
            where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f)
            lines = str(err).strip().splitlines() or [""]
            text = err.strerror if err.errno is not None and err.strerror else lines[0]
            return f"{text}: {where}" if where else text or type(err).__name__
        db = sys.modules.get("sqlalchemy.exc")  # only loaded when a study storage was opened
        if db is not None and isinstance(err, (db.OperationalError, db.InterfaceError)):  # the database went away
            from ptplan.studies import mask

            url = getattr(getattr(err, "statement", None), "url", None)
            detail = str(getattr(err, "orig", None) or err).strip().splitlines()
            return f"study storage error{f' ({mask(str(url))})' if url else ''}: {detail[0] if detail else ''}"
        err = err.__cause__ or err.__context__
    return None


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - environment errors end in one line, the rest as before
        line = environment_error(err)
        if line is None:
            raise
        err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
