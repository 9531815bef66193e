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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
