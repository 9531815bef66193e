"""`report`: a terminal summary and a folder with report.md, report.html (images embedded) and PNG plots.

Everything is computed from the trial table (and the trials' curves.parquet): the findings state
whether each seed observation holds in this study, with its numbers, or why it cannot be judged.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _plots
from ._recommend import STAGES, Recommendation, as_frame, completed, recommend

MAX_CURVES = 4
LOO_MAX = 20  # leave-one-out up to here, 5-fold cross-validation above
MIN_CALIBRATION = 5
TREND = 0.3  # |Spearman rho| that counts as a trend


@dataclass
class Finding:
    claim: str
    verdict: str  # "holds" | "partly holds" | "contradicted" | "not supported by this study (...)"
    evidence: str


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


# -- helpers ---------------------------------------------------------------------------------------
def _spearman(x, y) -> float | None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None

    def rank(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for u in np.unique(v):  # average ties
            m = v == u
            r[m] = r[m].mean()
        return r

    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def _col(frame, name: str) -> np.ndarray:
    return _plots._floats(frame, name)


def _resolve(path, base_dir: Path | None) -> Path | None:
    if not path:
        return None
    p = Path(path)
    if not p.is_absolute() and base_dir is not None and (Path(base_dir) / p).exists():
        p = Path(base_dir) / p
    return p if p.exists() else None


def load_trial_curves(done, base_dir: Path | None = None) -> dict[int, Any]:
    """The curves.parquet of each completed trial that has a readable one, by trial number."""
    import polars as pl

    if "curves" not in done.columns:
        return {}
    out = {}
    numbers = done["number"].to_list() if "number" in done.columns else list(range(done.height))
    for n, path in zip(numbers, done["curves"].to_list()):
        p = _resolve(path, base_dir)
        if p is None:
            continue
        try:
            c = pl.read_parquet(p)
        except Exception:  # noqa: BLE001 - an unreadable file is one missing curve, not a failed report
            continue
        if {"stage", "compute", "id", "ood"} <= set(c.columns) and c.height:
            out[n] = c.sort("compute", maintain_order=True) if c["compute"].null_count() == 0 else c
    return out


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


def _stage_points(c) -> dict[str, Any]:
    """Per trial: the score before SFT, at SFT's end, at RL's end, SFT's OOD peak, CPT start/end."""
    st = c["stage"].to_list()
    idv, ood = c["id"].to_numpy().astype(float), c["ood"].to_numpy().astype(float)
    out: dict[str, Any] = {}
    idx = {s: [i for i, v in enumerate(st) if v == s] for s in ("start", "cpt", "sft", "rl")}
    if idx["start"] and idx["cpt"]:
        a, b = idx["start"][0], idx["cpt"][-1]
        out["cpt_gain_id"], out["cpt_gain_ood"] = idv[b] - idv[a], ood[b] - ood[a]
    if idx["sft"]:
        first = idx["sft"][0]
        before = first - 1 if first > 0 else first
        end = idx["sft"][-1]
        peak = max([before] + idx["sft"], key=lambda i: ood[i])  # SFT starts from the checkpoint before it
        out.update(sft_id_gain=idv[end] - idv[before], sft_end_id=idv[end], sft_end_ood=ood[end],
                   sft_peak_ood=ood[peak], sft_decline=ood[peak] - ood[end])
        if idx["rl"]:
            out["rl_ood_gain"] = ood[idx["rl"][-1]] - ood[end]
    return out


# -- findings --------------------------------------------------------------------------------------
def _too_few(n: int) -> str:
    return f"not supported by this study (only {n} completed trial{'s' if n != 1 else ''})"


def finding_cpt(done, points: dict) -> Finding:
    claim = "CPT helps downstream (ID and OOD)"
    if done.height < 3:
        return Finding(claim, _too_few(done.height), "")
    x = _col(done, "share_cpt")
    r_id, r_ood = _spearman(x, _col(done, "id")), _spearman(x, _col(done, "ood"))
    gains = [p for p in points.values() if "cpt_gain_ood" in p]
    curve = ""
    if gains:
        gi, go = np.mean([p["cpt_gain_id"] for p in gains]), np.mean([p["cpt_gain_ood"] for p in gains])
        curve = (f"; over CPT itself ID changed by {gi:+.3f} and OOD by {go:+.3f} on average "
                 f"({len(gains)} trials' curves)")
    if r_id is None or r_ood is None:
        vals = np.unique(x[np.isfinite(x)])
        why = f"the CPT share was not varied ({', '.join(f'{v:.2f}' for v in vals[:3])})" if len(vals) <= 1 \
            else "final scores do not vary"
        verdict = f"not supported by this study ({why})"
        if gains and (gi > 0 or go > 0) and len(vals) <= 1:
            verdict = "partly holds (scores rise during CPT; the CPT share was not varied)"
        return Finding(claim, verdict, why + curve)
    ev = (f"Spearman rho of the CPT share with final ID {r_id:+.2f}, with final OOD {r_ood:+.2f} "
          f"({done.height} trials)" + curve)
    if max(r_id, r_ood) >= TREND and min(r_id, r_ood) > -TREND:
        return Finding(claim, "holds", ev)
    if max(r_id, r_ood) <= -TREND:
        return Finding(claim, "contradicted", ev)
    return Finding(claim, "not supported by this study (no clear trend with the CPT share)", ev)


def finding_sft(done, points: dict) -> Finding:
    claim = "SFT raises ID while OOD peaks early and declines"
    if done.height < 1:
        return Finding(claim, _too_few(0), "")
    pf = _col(done, "ood_peak_fraction")
    cens = np.array([bool(v) for v in done["ood_peak_censored"].to_list()]) if "ood_peak_censored" in done.columns \
        else np.zeros(done.height, bool)
    sft = [p for p in points.values() if "sft_id_gain" in p]
    parts, checks = [], []
    if sft:
        rises = np.mean([p["sft_id_gain"] > 0 for p in sft])
        declines = [p["sft_decline"] for p in sft]
        mean_gain = np.mean([p["sft_id_gain"] for p in sft])
        parts.append(f"ID rose during SFT in {rises:.0%} of {len(sft)} trials (mean {mean_gain:+.3f})")
        parts.append(f"OOD fell from its SFT peak to SFT's end by {np.median(declines):.3f} (median)")
        checks += [rises >= 2 / 3, np.median(declines) > 0.01]
    ok = np.isfinite(pf)
    if ok.any():
        med = float(np.median(pf[ok]))
        parts.append(f"OOD peaked at {med:.0%} of SFT (median of {int(ok.sum())}; {int((cens & ok).sum())} censored)")
        checks.append(med <= 0.5 and (cens & ok).sum() <= ok.sum() / 2)
    if not checks:
        return Finding(claim, "not supported by this study (no SFT curves or OOD peaks recorded)", "")
    ev = "; ".join(parts)
    if all(checks) and len(checks) == 3:
        return Finding(claim, "holds", ev)
    if any(checks):
        return Finding(claim, "partly holds", ev)
    return Finding(claim, "not supported by this study (ID did not rise / OOD did not peak early)", ev)


def finding_rl(done, points: dict) -> Finding:
    claim = "RL from a strong SFT checkpoint raises OOD"
    rl = [p for p in points.values() if "rl_ood_gain" in p]
    if len(rl) < 2:
        plural = "s" if len(rl) != 1 else ""
        return Finding(claim, f"not supported by this study (RL curves for {len(rl)} trial{plural})", "")
    end_id = np.array([p["sft_end_id"] for p in rl])
    gain = np.array([p["rl_ood_gain"] for p in rl])
    strong = np.zeros(len(rl), bool)
    strong[np.argsort(-end_id, kind="stable")[: (len(rl) + 1) // 2]] = True
    gs, gw = float(gain[strong].mean()), float(gain[~strong].mean()) if (~strong).any() else float("nan")
    ev = (f"OOD change over RL: {gs:+.3f} on average from the stronger half of SFT checkpoints (SFT-end ID >= "
          f"{end_id[strong].min():.3f}, {int(strong.sum())} trials), {gw:+.3f} from the weaker half; positive in "
          f"{np.mean(gain[strong] > 0):.0%} of the strong ones")
    if gs > 0.01 and np.mean(gain[strong] > 0) >= 0.5:
        return Finding(claim, "holds", ev)
    if gs < -0.01:
        return Finding(claim, "contradicted", ev)
    return Finding(claim, "not supported by this study (RL did not clearly raise OOD)", ev)


def finding_tradeoff(done) -> Finding:
    claim = "brief SFT + larger RL share + asymmetric ranks give the best trade-off"
    if done.height < 3:
        return Finding(claim, _too_few(done.height), "")
    sft, rl = _col(done, "share_sft"), _col(done, "share_rl")
    rs, rr = _col(done, "rank_sft"), _col(done, "rank_rl")
    score = 0.5 * _col(done, "id") + 0.5 * _col(done, "ood")
    pattern = (sft < rl) & (rs != rr)
    best = int(np.nanargmax(score))
    num = done["number"][best] if "number" in done.columns else best
    desc = (f"best balanced trial #{num} (0.5*ID+0.5*OOD {score[best]:.3f}): SFT {sft[best]:.0%} vs RL {rl[best]:.0%}, "
            f"ranks SFT {rs[best]:g} / RL {rr[best]:g}")
    if pattern.all() or not pattern.any():
        return Finding(claim, "not supported by this study (no contrast: "
                       f"{'every' if pattern.all() else 'no'} trial has SFT < RL with asymmetric ranks)", desc)
    mp, mo = float(np.nanmean(score[pattern])), float(np.nanmean(score[~pattern]))
    ev = desc + (f"; mean balanced score {mp:.3f} with the pattern ({int(pattern.sum())} trials) vs {mo:.3f} "
                 f"without ({int((~pattern).sum())})")
    if pattern[best] and mp > mo:
        return Finding(claim, "holds", ev)
    if pattern[best] or mp > mo:
        return Finding(claim, "partly holds", ev)
    return Finding(claim, "contradicted", ev)


def findings(done, points: dict) -> list[Finding]:
    return [finding_cpt(done, points), finding_sft(done, points), finding_rl(done, points), finding_tradeoff(done)]


# -- calibration -----------------------------------------------------------------------------------
def held_out_ood(done, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Held-out OOD predictions of the outcome model: leave-one-out up to LOO_MAX trials, else 5-fold."""
    from ptplan.surrogates import OutcomeModel

    n = done.height
    folds = [np.array([i]) for i in range(n)] if n <= LOO_MAX else \
        np.array_split(np.random.default_rng(seed).permutation(n), 5)
    how = "leave-one-out" if n <= LOO_MAX else "5-fold cross-validation"
    mean, low, high = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    for test in folds:
        train = np.setdiff1d(np.arange(n), test)
        m = OutcomeModel(level=0.8).fit(done[train])
        p = m.predict_outcome(done[test])
        mean[test], low[test], high[test] = p["ood"].to_numpy(), p["ood_low"].to_numpy(), p["ood_high"].to_numpy()
    return _col(done, "ood"), mean, low, high, how


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
                 unit: str | None = None) -> Report:
    """Write report.md, report.html and the PNG plots of a trial table into `out`; never fails on
    an empty or all-failed table (it writes what it can and says why the rest is missing)."""
    from ptplan.studies._table import pareto_front

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
    if unit is None and "budget_unit" in frame.columns:
        unit = (frame["budget_unit"].drop_nulls().to_list() or [None])[0]
    rec = None
    if done.height:
        try:
            rec = recommend(done, budget, objective)
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
            actual, mean, low, high, how = held_out_ood(done)
            plot("Surrogate calibration (held-out OOD)", "calibration.png",
                 lambda p: _plots.calibration(actual, mean, low, high, how, p))
        except Exception as err:  # noqa: BLE001
            skipped["Surrogate calibration (held-out OOD)"] = f"failed: {err}"
    else:
        skipped["Surrogate calibration (held-out OOD)"] = \
            f"needs >= {MIN_CALIBRATION} completed trials, have {done.height}"
    plot("Budget ledger per stage", "ledger.png", _plots.ledger, frame, unit or "budget unit")
    plot("Failures by reason", "failures.png", _plots.failures, frame)
    rep = Report(out=out, counts=counts, recommendation=rec, findings=findings(done, points), plots=plots,
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

    lines.append(f"Predicted ID {iv('id')}, OOD {iv('ood')} (80% intervals).")
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
    md += [f"| {f.claim} | {f.verdict} | {f.evidence or '-'} |" for f in rep.findings]
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
    h += [f"<tr><td>{e(f.claim)}</td><td>{e(f.verdict)}</td><td>{e(f.evidence or '-')}</td></tr>" for f in rep.findings]
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


def print_report(console, rep: Report) -> None:
    """Terminal summary: counts, notes, recommendation, findings, files written."""
    from rich.markup import escape
    from rich.table import Table

    from ._recommend import print_recommendation

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
        t.add_row(escape(f.claim), escape(f.verdict), escape(f.evidence or "-"))
    console.print(t)
    if rep.timing:
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


# -- command ---------------------------------------------------------------------------------------
def report_command(plan: str, overrides: list[str], out: Path | None, budget: float | None, objective: str,
                   console, err_console) -> int:
    """`ptplan report`: terminal summary and <run folder>/report (or --out)."""
    from ptplan.studies import study_table

    from ._recommend import RecommendError, objective_weight
    from ._study_cmd import _bad_input, _error, _open_existing, _resolve

    try:
        objective_weight(objective)
        sp = _resolve(plan, overrides)
        session = _open_existing(sp)
        table = study_table(session.admin, sp)
        multi = sp.study.objective.kind == "multi"
        rep = build_report(table.rows, Path(out) if out else sp.run_dir / "report", budget=budget,
                           objective=objective, base_dir=sp.run_dir, title=f"ptplan report: {sp.name}",
                           front=table.front if multi else None, unit=table.unit)
    except (*_bad_input(), RecommendError) as err:
        return _error(err_console, err)
    print_report(console, rep)
    return 0
