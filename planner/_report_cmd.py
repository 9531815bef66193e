"""`ptplan report`: build the report (`_report`) and print its terminal summary."""

from __future__ import annotations

from pathlib import Path

from ._recommend import objective_weight
from ._report import Report
from ._cmd import _bad_input, _error


def print_report(console, rep: Report) -> None:
    """Terminal summary: counts, notes, recommendation, findings, files written."""
    from rich.markup import escape
    from rich.table import Table

    from ._recommend_cmd import print_recommendation

    counts = ", ".join(f"{n} {s}" for s, n in sorted(rep.counts.items())) or "no trials"
    console.print(f"[bold]trials:[/] {escape(counts)}", highlight=False)
    for n in rep.notes:
        console.print(f"[yellow]note:[/] {escape(n)}", highlight=False, soft_wrap=True)
    if rep.recommendation is not None:
        print_recommendation(console, rep.recommendation)
    t = Table(title="findings: seed observations in this study")
    for col in ("observation", "verdict", "evidence"):
        t.add_column(col, overflow="fold")
    for f in rep.findings:
        t.add_row(escape(f.claim), escape(f.verdict), escape(f.detail()))
    console.print(t)
    if rep.timing:
        from ._report import _TIMING_COLS, _timing_cells

        tt = Table(title="time per trial (seconds)")
        for col in _TIMING_COLS:
            tt.add_column(col, justify="left" if col in ("trial", "state") else "right")
        for row in rep.timing:
            tt.add_row(*_timing_cells(row))
        console.print(tt)
    for name, why in rep.skipped.items():
        console.print(f"not drawn: {escape(name)} ({escape(why)})", highlight=False, soft_wrap=True)
    console.print(f"wrote {rep.markdown}, {rep.html} and {len(rep.plots)} plots to {rep.out}", highlight=False,
                  markup=False)


def report_command(plan: str, overrides: list[str], out: Path | None, budget: float | None, objective: str,
                   console, err_console) -> int:
    """`ptplan report`: terminal summary and <run folder>/report (or --out)."""
    from . import _api

    try:
        objective_weight(objective)
        rep = _api.report(_api.Study(plan, overrides), out, budget=budget, objective=objective)
    except _bad_input() as err:
        return _error(err_console, err)
    print_report(console, rep)
    return 0
