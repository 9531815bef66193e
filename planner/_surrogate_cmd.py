"""`ptplan surrogate eval TABLE`: held-out accuracy of the surrogates against their baselines."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

EXIT_BAD_INPUT = 2


def _read_table(path: Path):
    import polars as pl

    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pl.read_parquet(path)
    if suffix == ".csv":
        return pl.read_csv(path, infer_schema_length=None)
    raise ValueError(f"{path}: expected a trial table as .parquet or .csv (`ptplan export`), "
                     f"got {suffix or 'no suffix'}")


def _num(v, digits: int = 3) -> str:
    return "-" if v is None or v != v else f"{v:.{digits}f}"


def _check(ok: bool) -> str:
    return "[green]ok[/]" if ok else "[red]miss[/]"


def _curve_table(out, summary, counts: dict) -> None:
    from ptplan.surrogates import TARGET_COVERAGE, TARGET_GAIN, TARGET_MAE

    lo, hi = TARGET_COVERAGE
    columns = ("model", "observed", "curves", "MAE", "median AE", "coverage", "value MAE", "value cov.",
               "behind Brier", "vs best baseline", "targets")
    rows, styles = [], []
    for r in summary.iter_rows(named=True):
        if not r.get("curves"):
            rows.append([r["model"], _num(r["observed"], 1), "0", *["-"] * 8])
            styles.append(None)
            continue
        gain = r.get("gain_vs_best_baseline")
        targets = ""
        if r["model"] == "curve-model":
            targets = (f"MAE {_check(r['mae'] <= TARGET_MAE)} gain {_check(gain is not None and gain >= TARGET_GAIN)} "
                       f"cov {_check(lo <= r['coverage'] <= hi)}")
        rows.append([r["model"], _num(r["observed"], 1), str(r["curves"]), _num(r["mae"]), _num(r["median_ae"]),
                     _num(r["coverage"], 2), _num(r["value_mae"]), _num(r["value_coverage"], 2),
                     _num(r["behind_brier"]), "" if gain is None else f"{gain:+.0%}", targets])
        styles.append("bold" if r["model"] == "curve-model" else None)
    out.table("curve", f"OOD peak from a partial SFT curve: leave one trial out ({counts['evaluated']} curves)",
              columns, rows, styles=styles, left=("model", "targets"), raw=summary.to_dicts(),
              caption=f"MAE and intervals in fractions of the SFT slice. Targets for the curve model: MAE <= "
                      f"{TARGET_MAE:.2f}, >= {TARGET_GAIN:.0%} below the best baseline, peak-location coverage "
                      f"{lo:.2f}-{hi:.2f}.")


def _outcome_table(out, summary, how: str = "") -> None:
    from ptplan.surrogates import TARGET_SPEARMAN

    columns = ("model", "target", "trials", "Spearman", "MAE", "coverage", "re-run coverage", "target met")
    rows, styles = [], []
    for r in summary.iter_rows(named=True):
        if "target" not in r or r.get("target") is None:
            rows.append([r["model"], "-", str(r.get("trials", 0)), "-", "-", "-", "-", "too few trials"])
            styles.append(None)
            continue
        met = ""
        if r["model"] == "outcome-model" and r["target"] in ("id", "ood"):
            met = _check(r["spearman"] == r["spearman"] and r["spearman"] >= TARGET_SPEARMAN)
        rows.append([r["model"], r["target"], str(r["trials"]), _num(r["spearman"], 2), _num(r["mae"]),
                     _num(r["coverage"], 2), _num(r.get("rerun_coverage"), 2), met])
        styles.append("bold" if r["model"] == "outcome-model" else None)
    out.table("outcome", f"Outcome from the allocation: held-out trials ({how})", columns, rows, styles=styles,
              left=("model", "target", "target met"), raw=summary.to_dicts(),
              caption=f"Target for the outcome model: Spearman >= {TARGET_SPEARMAN:.1f} for final OOD and ID. "
                      "Coverage of the held-out trial's own score by the expected-score interval and by the "
                      "one-re-run interval (80%).")


CURVE_KEYS = ("suite", "seed", "arm", "number")
CURVE_COLUMNS = ("stage", "compute", "id", "ood", "loss")


def read_curve_files(paths: list[str]) -> dict:
    """SFT curves from long-format curve files, keyed by (file index, trial key columns...)."""
    from ptplan.surrogates import sft_curve

    out = {}
    for i, source in enumerate(paths):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"--curves {source}: no such file")
        frame = _read_table(path)
        missing = [c for c in CURVE_COLUMNS if c not in frame.columns]
        keys = [c for c in CURVE_KEYS if c in frame.columns]
        if missing or not keys:
            raise ValueError(f"--curves {source}: not a curve-points file, missing column(s) "
                             f"{', '.join(missing) or 'to identify trials: one of ' + ', '.join(CURVE_KEYS)}")
        for key, part in frame.group_by(keys, maintain_order=True):
            curve = sft_curve(part)
            if curve is not None:
                out[(i, *(str(k) for k in key))] = curve
    return out


def parse_items(items: str | None) -> dict[str, int] | None:
    """'ID,OOD' item counts -> {"id": ID, "ood": OOD}."""
    if items is None:
        return None
    try:
        idn, oodn = (int(v) for v in items.split(","))
        if idn > 0 and oodn > 0:
            return {"id": idn, "ood": oodn}
    except ValueError:
        pass
    raise ValueError(f"--items must be two positive integers 'ID,OOD' (e.g. 64,128), got {items!r}")


def surrogate_eval(source: str, console: Console, curve_files: list[str] = (), fmt: str | None = None,
                   items: str | None = None) -> int:
    """Evaluate both surrogates on a trial table file (Parquet or CSV with a `curves` column) and print them.

    With `curve_files`, the curve models are scored on the SFT curves in those files instead of the
    table's `curves` paths (the outcome models still use the table)."""
    from ptplan.surrogates import evaluate

    from ._output import Output

    path = Path(source)
    try:
        out = Output(console, fmt)
        if not path.is_file():
            raise ValueError(f"{source}: no such trial table file (export one with `ptplan export PLAN`)")
        table = _read_table(path)
        missing = [c for c in ("id", "ood") if c not in table.columns]
        if missing:
            raise ValueError(f"{source}: not a trial table, missing column(s) {', '.join(missing)}")
        curves = read_curve_files(list(curve_files)) if curve_files else None
        counts = parse_items(items)
    except Exception as err:  # unreadable file, wrong format: a bad input, not a crash
        console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
        return EXIT_BAD_INPUT
    with console.status("evaluating surrogates (leave one trial out)...") as status:
        def progress(phase: str, done: int, total: int) -> None:
            status.update(f"evaluating {phase}: {done}/{total} held out")

        result = evaluate(table, curves=curves, base_dir=path.parent, progress=progress, items=counts)
    _curve_table(out, result["curve"], result["counts"])
    _outcome_table(out, result["outcome"], result.get("outcome_how", ""))
    counts = result["counts"]
    out.note(f"SFT curves: {counts['curves']} read, {counts['evaluated']} scored, {counts['censored']} still "
             f"rising at the end (censored), {counts['flat']} flat, {counts['short']} too short, "
             f"{counts['duplicate']} shared with another trial")
    for note in result["notes"]:
        out.note(f"note: {note}")
    if out.fmt == "json":
        out.sections["counts"] = counts
    out.close()
    return 0
