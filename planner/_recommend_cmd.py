"""`ptplan recommend`: print a recommendation (rich tables) or its JSON; the logic is `_recommend`."""

from __future__ import annotations

from ptplan.stages.record import STAGES

from ._recommend import Recommendation, objective_weight
from ._cmd import _bad_input, _error


# -- terminal --------------------------------------------------------------------------------------
def _f(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _interval(d: dict | None, pct: bool = False) -> str:
    if not d or d.get("mean") is None:
        return "-"
    fmt = (lambda v: f"{v:.0%}") if pct else (lambda v: f"{v:.3f}")
    if d.get("low") is None:
        return fmt(d["mean"]) + " (measured)"
    return f"{fmt(d['mean'])} [{fmt(d['low'])}, {fmt(d['high'])}]"


def _rerun(d: dict | None) -> str:
    if not d or d.get("rerun_low") is None:
        return "-"
    return f"[{d['rerun_low']:.3f}, {d['rerun_high']:.3f}]"


def print_recommendation(console, rec: Recommendation) -> None:
    """Rich tables: allocation, predictions, evidence, warnings."""
    from rich.markup import escape
    from rich.table import Table

    if rec.warning:
        console.print(f"[bold yellow]warning:[/] {escape(rec.warning)}", highlight=False, soft_wrap=True)
    for n in rec.notes:
        console.print(f"note: {escape(n)}", highlight=False, soft_wrap=True)
    if not rec.ok:
        return
    unit = rec.unit or ""
    t = Table(title=f"recommended allocation ({rec.objective}, budget {_f(rec.budget, 4)} {unit})")
    for col in ("stage", "share", f"amount ({unit or 'unit'})", "rank"):
        t.add_column(col, justify="right" if col != "stage" else "left")
    amounts = rec.amounts()
    for s in STAGES:
        sh = rec.shares.get(s)
        t.add_row(s.upper(), "-" if sh is None else f"{sh:.1%}", _f(amounts.get(s), 4), _f(rec.ranks.get(s)))
    console.print(t)
    if rec.options:
        o = Table(title="searched options")
        o.add_column("field")
        o.add_column("value", justify="right")
        for k, v in rec.options.items():
            o.add_row(escape(k), _f(v, 4))
        console.print(o)
    h = rec.handover
    if h.get("sft_share") is not None:
        peak = "" if h.get("ood_peak_fraction") is None else \
            f"; SFT's OOD score is predicted to peak at {_interval(rec.predicted.get('ood_peak_fraction'), True)} " \
            "of SFT" \
            + (f" (at {_f(h['ood_peak_at'], 4)} {unit})" if h.get("ood_peak_at") is not None else "")
        after = f" (cumulative {_f(h['after'], 4)} {unit})" if h.get("after") is not None else ""
        console.print(f"hand over SFT -> RL after SFT's {h['sft_share']:.1%} of the budget{after}{peak}",
                      highlight=False, soft_wrap=True)
    if rec.reason:
        console.print(f"source: {rec.source}: {escape(rec.reason)}", highlight=False, soft_wrap=True)
    label = rec.source + (", EXTRAPOLATING" if rec.extrapolating else "") + (", OFF GRID" if rec.off_grid else "")
    p = Table(title=f"predicted final scores ({label})")
    p.add_column("", justify="left")
    p.add_column("ID", justify="right")
    p.add_column("OOD", justify="right")
    pid, pood = rec.predicted.get("id"), rec.predicted.get("ood")
    p.add_row("expected score (80% interval)", _interval(pid), _interval(pood))
    if (pid or {}).get("rerun_low") is not None:
        p.add_row("one re-run (80% interval)", _rerun(pid), _rerun(pood))
    if (pid or {}).get("observed") is not None:
        p.add_row("observed (mean of runs)", _f(pid["observed"]), _f((pood or {}).get("observed")))
    console.print(p)
    if rec.indistinguishable:
        u = Table(title="statistically indistinguishable from the recommendation (top candidates)")
        for col in ("#", "shares c/s/r", "ranks c/s/r", "predicted score", "minus the recommended", "SE", "run?"):
            u.add_column(col, justify="right")
        for r in rec.indistinguishable:
            u.add_row(_f(r["number"]), "/".join("-" if r["shares"][s] is None else f"{r['shares'][s]:.2f}"
                                                for s in STAGES),
                      "/".join(_f(r["ranks"][s]) for s in STAGES), f"{r['score']:.3f}", f"{r['difference']:+.3f}",
                      f"{r['se']:.3f}", "off grid" if r["off_grid"] else "run")
        console.print(u)
    e = Table(title="evidence: closest completed trials")
    for col in ("#", "shares c/s/r", "ranks c/s/r", "budget", "ID", "OOD", "distance"):
        e.add_column(col, justify="right")
    for r in rec.evidence:
        e.add_row(_f(r["number"]), "/".join("-" if r["shares"][s] is None else f"{r['shares'][s]:.2f}" for s in STAGES),
                  "/".join(_f(r["ranks"][s]) for s in STAGES), _f(r.get("budget_total"), 4), _f(r["id"]),
                  _f(r["ood"]), _f(r.get("distance"), 2))
    console.print(e)


def recommend_command(plan: str, overrides: list[str], budget: float | None, objective: str, as_json: bool,
                      console, err_console) -> int:
    """`ptplan recommend`: read the plan's study, recommend, print a rich table or JSON."""
    import json

    from . import _api

    try:
        objective_weight(objective)
        rec = _api.recommend(_api.Study(plan, overrides), budget, objective)
    except _bad_input() as err:
        return _error(err_console, err)
    if as_json:
        print(json.dumps(rec.to_dict(), indent=2, default=str))
    else:
        print_recommendation(console, rec)
    return 0 if rec.ok else 1
