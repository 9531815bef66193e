"""Findings: whether each seed observation holds in a study, computed from its trial table and curves.

Each verdict carries its numbers, or says why it cannot be judged. Rendering is `_report`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptplan.stages.record import peak_index, sft_slice, weighted_score

from . import _plots

LOO_MAX = 20  # leave-one-out up to here, 5-fold cross-validation above
TREND = 0.3  # |Spearman rho| that counts as a trend


@dataclass
class Finding:
    claim: str
    verdict: str  # "holds" | "partly holds" | "contradicted" | "not supported by this study (...)"
    evidence: str


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


def load_trial_curves(done, base_dir: Path | None = None) -> dict[int, Any]:
    """The curves.parquet of each completed trial that has a readable one, by trial number."""
    from ptplan.surrogates import read_trial_curves

    return read_trial_curves(done, base_dir)[0]


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
        series = sft_slice(list(range(len(st))), stage=lambda i: st[i])  # SFT starts from the point before it
        before, end = series[0], idx["sft"][-1]
        peak = series[peak_index([ood[i] for i in series])[0]]
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
    score = weighted_score(_col(done, "id"), _col(done, "ood"))
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
    from ptplan.surrogates import OutcomeModel, held_out_outcomes

    pred, how = held_out_outcomes(done, OutcomeModel(level=0.8), folds=None if done.height <= LOO_MAX else 5,
                                  loo_max=LOO_MAX, random_state=seed)
    return _col(done, "ood"), pred["ood"].to_numpy(), pred["ood_low"].to_numpy(), pred["ood_high"].to_numpy(), how


