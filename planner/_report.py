"""`report`: a folder with report.md, report.html (images embedded) and PNG plots of a trial table.

Everything is computed from the trial table (and the trials' curves.parquet); the findings are
`_findings`', the terminal summary `_report_cmd`'s.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptplan.stages.record import STAGES

from . import _plots
from ._findings import Finding, _stage_points, findings, held_out_ood, load_trial_curves
from ._recommend import Recommendation, as_frame, completed, recommend

MAX_CURVES = 4
MIN_CALIBRATION = 5


@dataclass
class Report:
    out: Path
    counts: dict[str, int]
    recommendation: Recommendation | None
    findings: list[Finding]
    plots: dict[str, Path]  # title -> PNG
    skipped: dict[str, str]  # title -> why
    notes: list[str] = field(default_factory=list)
    timing: list[dict] = field(default_factory=list)  # per trial: wall, training, evaluation, other seconds
    markdown: Path | None = None
    html: Path | None = None


def time_breakdown(frame) -> list[dict]:
    """Per trial with recorded timings: wall seconds, training loops, evaluation, the rest, training share."""
    cols = ("number", "state", "time_wall", "time_train", "time_eval")
    if not set(cols) <= set(frame.columns):
        return []
    out = []
    for number, state, wall, train, ev in zip(*(frame[c].to_list() for c in cols)):
        if wall is None or train is None or ev is None or not wall > 0:
            continue
        out.append({"number": number, "state": state, "wall": wall, "train": train, "eval": ev,
                    "other": wall - train - ev, "train_share": train / wall,
                    "eval_per_train": ev / train if train > 0 else None})
    return out


# -- build -----------------------------------------------------------------------------------------
def _representative(done, rec: Recommendation | None, curves: dict) -> list[tuple[str, dict, Any]]:
    """Up to MAX_CURVES trials with curves: best OOD, best ID, the recommendation's nearest, median OOD."""
    rows = [r for r in done.iter_rows(named=True) if r.get("number") in curves]
    if not rows:
        return []
    picks: list[tuple[str, dict]] = []

    def add(label, r):
        if r is not None and all(r["number"] != p[1]["number"] for p in picks) and len(picks) < MAX_CURVES:
            picks.append((f"#{r['number']} {label}", r))

    add("best OOD", max(rows, key=lambda r: r["ood"]))
    add("best ID", max(rows, key=lambda r: r["id"]))
    if rec is not None and rec.evidence:
        near = next((r for r in rows if r["number"] == rec.evidence[0]["number"]), None)
        add("nearest to recommendation", near)
    add("median OOD", sorted(rows, key=lambda r: r["ood"])[len(rows) // 2])
    for r in rows:
        add("", r)
    return [(label, r, curves[r["number"]]) for label, r in picks]


def build_report(table: Any, out: Path, *, budget: float | None = None, objective: str = "balanced",
                 base_dir: Path | None = None, title: str = "ptplan report", front: list[dict] | None = None,
                 unit: str | None = None, items: dict[str, int] | None = None) -> Report:
    """Write report.md, report.html and the PNG plots of a trial table into `out`; never fails on
    an empty or all-failed table (it writes what it can and says why the rest is missing)."""
    from ptplan.studies import pareto_front

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = as_frame(table)
    done = completed(frame)
    counts: dict[str, int] = {}
    if "state" in frame.columns:
        for s in frame["state"].to_list():
            counts[s] = counts.get(s, 0) + 1
    notes: list[str] = []
    if frame.height == 0:
        notes.append("the study has no trials yet: run it (`ptplan run PLAN`), then report again")
    elif done.height == 0:
        notes.append(f"no completed trials ({frame.height} trials, none COMPLETE): no recommendation, findings "
                     "or score plots; the ledger and failures plots show what happened")
    elif done.height < 3:
        notes.append(f"only {done.height} completed trial{'s' if done.height != 1 else ''}: no outcome model; "
                     "findings need more trials")
    if "device_hours" in frame.columns:
        from ptplan.studies._accounting import table_cost

        cost = table_cost(frame.to_dicts())
        if cost:
            notes.append(cost)
    if unit is None and "budget_unit" in frame.columns:
        unit = (frame["budget_unit"].drop_nulls().to_list() or [None])[0]
    rec = None
    if done.height:
        try:
            rec = recommend(done, budget, objective, items=items)
        except Exception as err:  # noqa: BLE001 - a failed model fit must not lose the rest of the report
            notes.append(f"recommendation failed: {err}")
    if front is None:
        front = pareto_front(done.to_dicts()) if done.height else []
    curves = load_trial_curves(done, base_dir)
    if done.height and not curves:
        notes.append("no readable curves.parquet for the completed trials: curve plot and curve-based findings skipped")
    points = {n: _stage_points(c) for n, c in curves.items()}
    plots: dict[str, Path] = {}
    skipped: dict[str, str] = {}

    def plot(name: str, fname: str, fn, *args):
        try:
            res = fn(*args, out / fname)
        except Exception as err:  # noqa: BLE001 - one broken plot must not lose the others
            res = f"failed: {type(err).__name__}: {err}"
        if isinstance(res, Path):
            plots[name] = res
        else:
            skipped[name] = res

    plot("Pareto front (ID vs OOD)", "pareto.png", _plots.pareto, done, front, rec)
    plot("ID and OOD through CPT -> SFT -> RL", "curves.png", _plots.curves, _representative(done, rec, curves))
    plot("OOD peak location vs SFT share", "ood_peak_vs_sft.png", _plots.peak_vs_sft, done)
    plot("Allocation heat map (SFT share x RL rank, mean OOD)", "heatmap.png", _plots.heatmap, done)
    if done.height >= MIN_CALIBRATION:
        try:
            actual, mean, low, high, how = held_out_ood(done, items=items)
            plot("Surrogate calibration (held-out OOD)", "calibration.png",
                 lambda p: _plots.calibration(actual, mean, low, high, how, p))
        except Exception as err:  # noqa: BLE001
            skipped["Surrogate calibration (held-out OOD)"] = f"failed: {err}"
    else:
        skipped["Surrogate calibration (held-out OOD)"] = \
            f"needs >= {MIN_CALIBRATION} completed trials, have {done.height}"
    plot("Budget ledger per stage", "ledger.png", _plots.ledger, frame, unit or "budget unit")
    plot("Failures by reason", "failures.png", _plots.failures, frame)
    rep = Report(out=out, counts=counts, recommendation=rec,
                 findings=findings(done, points, (items or {}).get("ood")), plots=plots,
                 skipped=skipped, notes=notes, timing=time_breakdown(frame))
    rep.markdown = out / "report.md"
    rep.markdown.write_text(_markdown(rep, title))
    rep.html = out / "report.html"
    rep.html.write_text(_html(rep, title))
    return rep


# -- rendering -------------------------------------------------------------------------------------
def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _rec_lines(rec: Recommendation | None) -> list[str]:
    if rec is None:
        return ["No recommendation: no completed trials."]
    lines = []
    if rec.warning:
        lines.append(f"**Warning:** {rec.warning}")
    if not rec.ok:
        return lines + rec.notes
    am = rec.amounts()
    unit = rec.unit or ""
    lines.append(f"Objective {rec.objective} (OOD weight {rec.ood_weight:g}), budget {_f(rec.budget, 4)} {unit}, "
                 f"from the {rec.source}.")
    lines.append(", ".join(f"{s.upper()} {rec.shares[s]:.1%} ({_f(am[s], 4)} {unit}, rank {_f(rec.ranks.get(s))})"
                           for s in STAGES if rec.shares.get(s) is not None))
    if rec.options:
        lines.append("Searched options: " + ", ".join(f"{k} = {_f(v, 4)}" for k, v in rec.options.items()))
    pr = rec.predicted

    def iv(t):
        d = pr.get(t)
        if not d or d.get("mean") is None:
            return "-"
        return f"{d['mean']:.3f}" + ("" if d.get("low") is None else f" [{d['low']:.3f}, {d['high']:.3f}]")

    lines.append(f"Predicted ID {iv('id')}, OOD {iv('ood')} (80% intervals for the expected score).")
    if (pr.get("ood") or {}).get("rerun_low") is not None:
        lines.append(f"One re-run (80%): ID [{pr['id']['rerun_low']:.3f}, {pr['id']['rerun_high']:.3f}], "
                     f"OOD [{pr['ood']['rerun_low']:.3f}, {pr['ood']['rerun_high']:.3f}].")
    if rec.reason:
        lines.append(f"Why: {rec.reason}.")
    if rec.indistinguishable:
        lines.append(f"{len(rec.indistinguishable)} of the top candidates are statistically indistinguishable from it.")
    h = rec.handover
    if h.get("ood_peak_fraction") is not None:
        lines.append(f"Hand over SFT -> RL after SFT's {h['sft_share']:.1%}; SFT's OOD peak is predicted at "
                     f"{h['ood_peak_fraction']:.0%} of SFT.")
    lines.append("Evidence (closest completed trials): " + "; ".join(
        f"#{e['number']} ID {_f(e['id'])} OOD {_f(e['ood'])}" for e in rec.evidence))
    return lines + [f"Note: {n}" for n in rec.notes]


_TIMING_COLS = ("trial", "state", "wall s", "training s", "evaluation s", "other s", "training / wall",
                "evaluation / training")


def _timing_cells(t: dict) -> list[str]:
    return [f"#{t['number']}", str(t["state"]), f"{t['wall']:.1f}", f"{t['train']:.1f}", f"{t['eval']:.1f}",
            f"{t['other']:.1f}", f"{t['train_share']:.0%}",
            "-" if t["eval_per_train"] is None else f"{t['eval_per_train']:.0%}"]


def _timing_lines(timing: list[dict]) -> list[str]:
    if not timing:
        return ["No trial recorded a time breakdown (trials run before ptplan recorded one, or none finished)."]
    return (["Wall: the worker's time for the trial; training: the stages' training loops (charged); "
             "evaluation: every curve point (not charged); other: data, trainer set-up, merges, saves, Optuna.", "",
             "| " + " | ".join(_TIMING_COLS) + " |", "|" + "---|" * len(_TIMING_COLS)]
            + ["| " + " | ".join(_timing_cells(t)) + " |" for t in timing])


def _markdown(rep: Report, title: str) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(rep.counts.items())) or "no trials"
    md = [f"# {title}", "", f"Trials: {counts}.", ""]
    md += [f"> {n}" for n in rep.notes] + ([""] if rep.notes else [])
    md += ["## Recommendation", ""] + [f"{line}  " for line in _rec_lines(rep.recommendation)] + [""]
    md += ["## Findings (seed observations, checked on this study)", "", "| observation | verdict | evidence |",
           "|---|---|---|"]
    md += [f"| {f.claim} | {f.verdict} | {f.detail()} |" for f in rep.findings]
    md += ["", "## Time per trial", ""] + _timing_lines(rep.timing)
    md += ["", "## Plots", ""]
    for name, path in rep.plots.items():
        md += [f"### {name}", "", f"![{name}]({path.name})", ""]
    for name, why in rep.skipped.items():
        md += [f"- {name}: not drawn ({why})"]
    return "\n".join(md) + "\n"


def _html(rep: Report, title: str) -> str:
    e = html.escape
    counts = ", ".join(f"{n} {s}" for s, n in sorted(rep.counts.items())) or "no trials"
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
         "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}img{max-width:100%}</style></head><body>",
         f"<h1>{e(title)}</h1><p>Trials: {e(counts)}.</p>"]
    h += [f"<blockquote>{e(n)}</blockquote>" for n in rep.notes]
    h += ["<h2>Recommendation</h2>"] + [f"<p>{e(line).replace('**Warning:**', '<b>Warning:</b>')}</p>"
                                          for line in _rec_lines(rep.recommendation)]
    h += ["<h2>Findings (seed observations, checked on this study)</h2><table>",
          "<tr><th>observation</th><th>verdict</th><th>evidence</th></tr>"]
    h += [f"<tr><td>{e(f.claim)}</td><td>{e(f.verdict)}</td><td>{e(f.detail())}</td></tr>" for f in rep.findings]
    h += ["</table><h2>Time per trial</h2>"]
    if rep.timing:
        h += ["<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in _TIMING_COLS) + "</tr>"]
        h += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in _timing_cells(t)) + "</tr>" for t in rep.timing]
        h += ["</table>"]
    else:
        h += [f"<p>{e(_timing_lines([])[0])}</p>"]
    h += ["<h2>Plots</h2>"]
    for name, path in rep.plots.items():
        data = base64.b64encode(path.read_bytes()).decode()
        h += [f"<h3>{e(name)}</h3><img alt='{e(name)}' src='data:image/png;base64,{data}'>"]
    if rep.skipped:
        h += ["<ul>"] + [f"<li>{e(n)}: not drawn ({e(w)})</li>" for n, w in rep.skipped.items()] + ["</ul>"]
    return "\n".join(h) + "\n</body></html>\n"
