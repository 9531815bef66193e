"""`ptplan run | worker | status | export | init`: parse, delegate to studies/, print with rich."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ptplan.stages.errors import PlanError

from ._cmd import EXIT_INTERRUPTED, _bad_input, _echo, _error, _resolve


# -- run / worker ---------------------------------------------------------------------------------
def preflight_command(plan: str, overrides: list[str], train_steps: bool, console: Console,
                      err_console: Console) -> int:
    """`ptplan preflight`: the checks `ptplan run` makes before its first trial; exit 2 naming the problem."""
    from ptplan.studies._preflight import preflight

    try:
        sp = _resolve(plan, overrides)
        checks = preflight(sp, train_steps=train_steps, echo=_echo())
    except _bad_input() as err:
        return _error(err_console, err)
    console.print(f"preflight passed: {len(checks)} checks in {sum(c.seconds for c in checks):.1f} s",
                  highlight=False, markup=False)
    return 0


def run_command(plan: str, overrides: list[str], trials: int | None, jobs: int, console: Console,
                err_console: Console, retry_failed: bool = False, new_study: bool = False,
                preflight: bool = True) -> int:
    """Create or resume the plan's study and run it to N COMPLETE trials with K local workers."""
    from ptplan.studies import run_study, worker_argv

    try:
        sp = _resolve(plan, overrides)
        if trials is not None and trials < 0:
            raise PlanError(f"--trials must be >= 0, got {trials}")
        session, result, codes = _with_live_view(
            sp, trials, console, lambda: run_study(sp, trials, jobs, _echo(), worker_argv, new_study=new_study,
                                                   retry=retry_failed, check=preflight))
    except _bad_input() as err:
        return _error(err_console, err)
    except KeyboardInterrupt:
        err_console.print("interrupted: the running trial is marked failed (interrupted); run the same command "
                          "to continue the study", highlight=False, soft_wrap=True)
        return EXIT_INTERRUPTED
    console.print(f"{result.stopped}", highlight=False, markup=False, soft_wrap=True)
    _print_status(console, session.admin, sp, session.url, limit=20)
    if any(c in (EXIT_INTERRUPTED, -2) for c in codes):
        return EXIT_INTERRUPTED
    return 0 if result.reached else 1  # short of the target: the message above says why


def _with_live_view(sp, trials, console: Console, body):
    """Run `body` under a live rich view of the study (trials, best, stage progress, compute)."""
    from rich.live import Live

    from ._live import StudyMonitor

    monitor = StudyMonitor(sp.run_dir, sp.target(trials), sp.trial.budget.total, sp.trial.budget.unit)
    if not console.is_terminal:  # logs and pipes get the plain lines only
        return body()
    with Live(monitor, console=console, refresh_per_second=2, transient=True):
        return body()


def worker_command(plan: str, overrides: list[str], trials: int | None, index: int | None, console: Console,
                   err_console: Console, retry_interrupted: bool = False) -> int:
    """Join an existing study and run trials until it reaches its count."""
    from ptplan.studies import run_worker

    prefix = f"[w{index}] " if index is not None else ""
    try:
        sp = _resolve(plan, overrides)
        _, result = run_worker(sp, trials, index, _echo(prefix), retry_interrupted)
    except _bad_input() as err:
        return _error(err_console, err)
    except KeyboardInterrupt:
        print(f"{prefix}interrupted: the running trial is marked failed (interrupted)", flush=True)
        return EXIT_INTERRUPTED
    print(f"{prefix}{result.stopped} ({result.ran} run by this worker)", flush=True)
    return 1 if result.repeated else 0


# -- status / export ---------------------------------------------------------------------------
def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else ""
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _shares(r: dict) -> str:
    if r["share_cpt"] is None:
        return "-"
    return "/".join(f"{r[f'share_{s}']:.2f}" for s in ("cpt", "sft", "rl"))


def _ranks(r: dict) -> str:
    return "/".join(_fmt(r[f"rank_{s}"]) for s in ("cpt", "sft", "rl"))


_STATE_STYLE = {"COMPLETE": "green", "FAIL": "red", "RUNNING": "yellow", "WAITING": "cyan", "PRUNED": "magenta"}


def _print_status(console: Console, study, sp, url: str, limit: int | None = 50, fmt: str | None = None) -> None:
    from ptplan.studies import mask, study_table
    from ptplan.studies import SHARE_PARAMS, short_name

    from ._output import Output

    out = Output(console, fmt)
    table = study_table(study, sp)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(table.counts.items())) or "no trials yet"
    obj = sp.study.objective
    objective = "maximize (ID, OOD)" if obj.kind == "multi" else f"maximize (1-{obj.ood_weight:g})*ID + " \
        f"{obj.ood_weight:g}*OOD, pruner {obj.pruner}"
    out.note(f"[bold]{escape(sp.name)}[/]  storage {escape(mask(url))}  sampler {sp.study.sampler}  "
             f"objective {escape(objective)}", markup=True)
    reasons: dict[str, int] = {}
    for r in table.rows:
        if r["failure_reason"]:
            reasons[r["failure_reason"]] = reasons.get(r["failure_reason"], 0) + 1
    why = f" ({', '.join(f'{n} {k}' for k, n in sorted(reasons.items()))})" if reasons else ""
    saved = f"{_fmt(table.saved)} {table.unit}" + ("" if table.unit == "flops" else f" ({_fmt(table.saved_flops)} FLOPs)")
    out.note(f"trials: {counts}{why}; retried {table.retried}; compute saved by checkpoint reuse {saved}")
    from ptplan.studies import store_size

    n_stages, stage_bytes = store_size(sp.run_dir)
    out.note(f"stage store: {n_stages} checkpoints, {stage_bytes / 1e6:.1f} MB in {sp.run_dir / 'stages'} "
             "(`ptplan gc` frees what no kept result needs)")
    extra = [p for p in sp.space.params if p not in SHARE_PARAMS and not p.endswith(".rank")]
    rows = table.rows if not limit else table.rows[-limit:]
    shown = "" if len(rows) == len(table.rows) else f", last {len(rows)} of {len(table.rows)}"
    columns = ("trial", "state", "shares c/s/r", "ranks c/s/r", *[short_name(p) for p in extra],
               "spent", "ID", "OOD", "failure", "retries", "reused")
    cells = []
    for r in rows:
        style = _STATE_STYLE.get(r["state"], "")
        cells.append([str(r["number"]), f"[{style}]{r['state']}[/]" if style else r["state"], _shares(r), _ranks(r),
                      *[escape(_fmt(r[f"param.{p}"])) for p in extra], _fmt(r["spent"]), _fmt(r["id"]),
                      _fmt(r["ood"]), escape(r["failure_reason"] or ""), str(r["retries"] or ""), escape(r["reused"])])
    out.table("trials", f"trials (spent in {table.unit}{shown})", columns, cells,
              left=("state", "failure", "reused"), raw=rows)
    if table.front:
        title = "Pareto front (ID, OOD)" if obj.kind == "multi" else "best trial"
        score = [] if obj.kind == "multi" else ["score"]
        columns = ("trial", "shares c/s/r", "ranks c/s/r", *[short_name(p) for p in extra], *score, "ID", "OOD",
                   "SFT OOD peak at")
        cells = []
        for r in table.front:
            peak = "-" if r["ood_peak_fraction"] is None else \
                f"{r['ood_peak_fraction']:.0%}{' (censored)' if r['ood_peak_censored'] else ''}"
            cells.append([str(r["number"]), _shares(r), _ranks(r), *[escape(_fmt(r[f"param.{p}"])) for p in extra],
                          *[_fmt(r["objective"]) for _ in score], _fmt(r["id"]), _fmt(r["ood"]), peak])
        out.table("front", title, columns, cells, raw=table.front)
    out.close()


def status_command(plan: str, overrides: list[str], limit: int | None, console: Console,
                   err_console: Console, fmt: str | None = None) -> int:
    """Print the trial table, the Pareto front and compute saved; reads the trials once."""
    from ._output import choose_format

    try:
        choose_format(fmt, console)
    except ValueError as err:
        return _error(err_console, err)
    try:
        from ptplan.studies import check_identity

        from ._api import Study

        study = Study(plan, overrides)
        sp, session = study.plan, study.session()

        try:
            check_identity(session.admin, sp, session.url)
        except Exception as err:  # noqa: BLE001 - status still shows the study, with the warning
            err_console.print(f"[yellow]warning:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        _print_status(console, session.admin, sp, session.url, limit=limit, fmt=fmt)
        from ._cluster_cmd import print_cluster

        print_cluster(console, session.admin, sp)
    except _bad_input() as err:
        return _error(err_console, err)
    return 0


def export_command(plan: str, overrides: list[str], fmt: str, out: Path | None, console: Console,
                   err_console: Console, preview: int = 0, preview_format: str | None = None) -> int:
    """Write the trial table (one row per trial) as Parquet or CSV; optionally show its first rows."""
    from ptplan.studies import export_table

    from ._api import Study
    from ._output import choose_format

    if fmt not in ("parquet", "csv"):
        return _error(err_console, f"--format must be parquet or csv, got {fmt!r}")
    try:
        choose_format(preview_format, console)
    except ValueError as err:
        return _error(err_console, str(err).replace("--format", "--preview-format"))
    try:
        study = Study(plan, overrides)
        table = study.status()
        out = Path(out) if out else study.plan.run_dir / f"trials.{fmt}"
        out.parent.mkdir(parents=True, exist_ok=True)
        export_table(table.rows, out, fmt)
    except _bad_input() as err:
        return _error(err_console, err)
    console.print(f"wrote {len(table.rows)} trials to {out}", highlight=False, markup=False, soft_wrap=True)
    if preview:
        from ._output import Output

        shown = table.rows[:preview]
        columns = list(table.rows[0]) if table.rows else []
        view = Output(console, preview_format)
        view.table("trials", f"first {len(shown)} of {len(table.rows)} rows of {out.name}", columns,
                   [[escape(_fmt(r[c])) for c in columns] for r in shown], left=columns, raw=shown)
        view.close()
    return 0


# -- stage store -----------------------------------------------------------------------------------
def gc_command(plan: str, overrides: list[str], keep: str, dry_run: bool, console: Console,
               err_console: Console) -> int:
    """`ptplan gc`: remove (or list) the stage checkpoints that no kept result needs."""
    from ptplan.studies import collect

    from ._api import Study

    try:
        study = Study(plan, overrides)
        got = collect(study.plan, study.status(), keep, dry_run)
    except _bad_input() as err:
        return _error(err_console, err)
    verb = "would remove" if dry_run else "removed"
    for folder in got.removed:
        console.print(f"{verb} {folder}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"{verb} {len(got.removed)} stage checkpoints ({got.freed_bytes / 1e6:.1f} MB); kept "
                  f"{len(got.kept)} ({got.kept_bytes / 1e6:.1f} MB, keep={keep})", highlight=False, markup=False)
    return 0


# -- init ------------------------------------------------------------------------------------------
def init_command(preset: str, out: Path | None, list_: bool, force: bool, console: Console,
                 err_console: Console, fields: bool = False) -> int:
    """Write a commented example plan (a preset, each field's help above it) to a file, list the
    presets, or print the field reference."""
    from ptplan.studies import annotate_plan, fields_markdown, preset_names, preset_text

    if fields:
        print(fields_markdown(), end="")
        return 0
    names = preset_names()
    if list_:
        table = Table(title="presets (ptplan init --preset NAME)")
        table.add_column("name")
        table.add_column("what")
        for name in names:
            first = preset_text(name).splitlines()[0].lstrip("# ").strip()
            table.add_row(name, escape(first))
        console.print(table)
        return 0
    if preset not in names:
        return _error(err_console, f"unknown preset {preset!r} (presets: {', '.join(names)})")
    out = Path(out) if out else Path(f"{preset}.yaml")
    if out.exists() and not force:
        return _error(err_console, f"{out} exists; pass --force to overwrite it, or --out another file")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(annotate_plan(preset_text(preset)))
    console.print(f"wrote {out} (preset {preset}); run it with `ptplan run {out}`", highlight=False, markup=False)
    return 0
