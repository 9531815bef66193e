"""What every `ptplan` command shares: exit codes, the error line, plan loading, the input errors."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from ptplan.stages.errors import ConfigError, PlanError, RecommendError, StudyError

EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130


def _error(err_console: Console, message: str) -> int:
    err_console.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    return EXIT_BAD_INPUT


def _resolve(plan: str, overrides: list[str]):
    from ptplan.studies import Plan

    return Plan.load(plan, overrides)


def _echo(prefix: str = ""):
    def echo(line: str) -> None:
        print(f"{prefix}{line}", flush=True)

    return echo


def _bad_input():
    return PlanError, ConfigError, StudyError, RecommendError
