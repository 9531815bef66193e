"""Findings: whether each seed observation holds in a study, computed from its trial table and curves.

Each verdict states its test, n, effect and standard error, and says "too few trials to tell (about N
more needed)" where the effect is within noise (two-sided 5%): N is how many trials the observed
effect at the observed spread would need. The OOD peak of SFT counts as real only where it rises
above the SFT-start score by more than 2 binomial standard errors. Rendering is `_report`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import math

import numpy as np

from ptplan.stages.record import peak_index, sft_slice, weighted_score

from . import _plots

LOO_MAX = 20  # leave-one-out up to here, 5-fold cross-validation above
Z_CRIT = 1.96  # two-sided 5% (normal); means of few trials use Student's t (`_crit`)
PEAK_SE = 2.0  # an OOD peak is real when it rises above the SFT-start score by more than this many binomial SE
DEFAULT_OOD_ITEMS = 64  # the default plan's data.sizes.ood_test, when neither the table nor the plan says
MAX_NEEDED = 1000


@dataclass
class Finding:
    claim: str
    verdict: str  # "holds" | "partly holds" | "contradicted" | "too few trials to tell (...)" | "not supported ..."
    evidence: str
    test: str | None = None
    n: int | None = None
    effect: float | None = None
    se: float | None = None

    def detail(self) -> str:
        """The evidence and the test behind the verdict, for a report cell."""
        return "; ".join(x for x in (self.evidence, f"test: {self.test}" if self.test else "") if x) or "-"


# -- statistics ------------------------------------------------------------------------------------
def _mean_test(x) -> tuple[int, float, float, float]:
    """n, mean, standard error and z (t-like) of the mean of `x` against 0."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 2:
        return n, float(x.mean()) if n else float("nan"), float("nan"), float("nan")
    m, se = float(x.mean()), float(x.std(ddof=1) / math.sqrt(n))
    z = m / se if se > 0 else (math.inf if m != 0 else 0.0)
    return n, m, se, z


def _crit(dof: float) -> float:
    """Two-sided 5% critical value of Student's t with `dof` degrees of freedom (normal when unknown)."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof)) if dof and dof >= 1 else math.inf


def _needed_for_mean(n: int, effect: float, se: float) -> int | None:
    """Trials for `effect` at the observed spread (sd = se * sqrt(n)) to reach Z_CRIT."""
    if not (n >= 2 and math.isfinite(se) and se > 0 and effect):
        return None
    return math.ceil((Z_CRIT * se * math.sqrt(n) / abs(effect)) ** 2)


def _needed_for_rho(rho: float) -> int | None:
    """Trials for a Spearman `rho` to reach Z_CRIT (Fisher z, SE 1/sqrt(n - 3))."""
    if not rho or abs(rho) >= 1:
        return None
    return math.ceil((Z_CRIT / math.atanh(abs(rho))) ** 2 + 3)


def too_few(n: int, needed: int | None) -> str:
    """The verdict for an effect within noise: how many more trials would tell at this effect size."""
    if needed is None:
        return "too few trials to tell (no effect measured yet)"
    if needed > MAX_NEEDED:
        return f"too few trials to tell (the effect is too small to detect: more than {MAX_NEEDED} trials needed)"
    return f"too few trials to tell (about {max(needed - n, 1)} more needed)"


def _rho_test(x, y) -> tuple[int, float | None, float, float]:
    """n, Spearman rho, Fisher-z standard error and z."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = int((np.isfinite(x) & np.isfinite(y)).sum())
    rho = _spearman(x, y)
    if rho is None or n < 4:
        return n, rho, float("nan"), float("nan")
    se = 1 / math.sqrt(n - 3)
    return n, rho, se, math.copysign(math.inf, rho) if abs(rho) >= 1 else math.atanh(rho) / se


def binomial_se(p, n) -> float:
    """Standard error of a score that is a fraction of `n` items with success rate `p`."""
    p = min(max(float(p), 0.5 / n), 1 - 0.5 / n)
    return math.sqrt(p * (1 - p) / n)


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
                   sft_start_ood=ood[before], sft_peak_ood=ood[peak], sft_decline=ood[peak] - ood[end],
                   sft_peak_fraction=(series.index(peak) / (len(series) - 1)) if len(series) > 1 else 0.0)
        if idx["rl"]:
            out["rl_ood_gain"] = ood[idx["rl"][-1]] - ood[end]
    return out


# -- findings --------------------------------------------------------------------------------------
def _too_few(n: int, what: str = "completed trial", where: str = "") -> str:
    plural = "s" if n != 1 else ""
    return f"too few trials to tell (only {n} {what}{plural}{where}; at least {max(4 - n, 1)} more needed)"


def _fmt_rho(name: str, n: int, rho: float | None, se: float, z: float) -> str:
    if rho is None:
        return f"{name}: no variation"
    return f"{name}: Spearman rho {rho:+.2f} (n {n}, Fisher-z SE {se:.2f}, z {z:+.1f})"


def finding_cpt(done, points: dict) -> Finding:
    claim = "CPT helps downstream (ID and OOD)"
    test = "Spearman rank correlation of the CPT share with final ID and OOD (Fisher z, two-sided 5%)"
    if done.height < 4:
        return Finding(claim, _too_few(done.height), "", test, done.height)
    x = _col(done, "share_cpt")
    n, r_id, se, z_id = _rho_test(x, _col(done, "id"))
    _, r_ood, _, z_ood = _rho_test(x, _col(done, "ood"))
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
        return Finding(claim, verdict, why + curve, test, n)
    ev = f"{_fmt_rho('ID', n, r_id, se, z_id)}; {_fmt_rho('OOD', n, r_ood, se, z_ood)}" + curve
    effect = max(r_id, r_ood)
    pos = [z > Z_CRIT for z in (z_id, z_ood)]
    neg = [z < -Z_CRIT for z in (z_id, z_ood)]
    if all(pos):
        return Finding(claim, "holds", ev, test, n, effect, se)
    if any(pos) and not any(neg):
        return Finding(claim, "partly holds", ev, test, n, effect, se)
    if any(neg) and not any(pos):
        return Finding(claim, "contradicted", ev, test, n, min(r_id, r_ood), se)
    needed = _needed_for_rho(effect if abs(effect) >= abs(min(r_id, r_ood)) else min(r_id, r_ood))
    return Finding(claim, too_few(n, needed), ev, test, n, effect, se)


def finding_sft(done, points: dict, ood_items: int | None = None) -> Finding:
    claim = "SFT raises ID while OOD peaks early and declines"
    items = ood_items or DEFAULT_OOD_ITEMS
    test = (f"ID gain over SFT: mean over trials, t against 0 (5%); OOD peak real where it exceeds the SFT-start score "
            f"by > {PEAK_SE:g} binomial SE ({items} OOD items{'' if ood_items else ', the default plan size'})")
    sft = [p for p in points.values() if "sft_id_gain" in p]
    if len(sft) < 4:
        return Finding(claim, _too_few(len(sft)) if sft or done.height else _too_few(0),
                       f"SFT curves for {len(sft)} trial(s)", test, len(sft))
    n, gain, se, z = _mean_test([p["sft_id_gain"] for p in sft])
    real, early_decline = [], []
    for p in sft:
        noise = binomial_se((p["sft_peak_ood"] + p["sft_start_ood"]) / 2, items)
        if p["sft_peak_ood"] - p["sft_start_ood"] > PEAK_SE * noise:
            real.append(p)
            early_decline.append(p["sft_peak_fraction"] <= 0.5 and p["sft_decline"] > PEAK_SE * noise)
    parts = [f"ID gain over SFT {gain:+.3f} (SE {se:.3f}, n {n}, t {z:+.1f})",
             f"OOD rose above the SFT-start score by > {PEAK_SE:g} SE in {len(real)} of {n} trials"]
    if real:
        parts.append(f"of those, {sum(early_decline)} peaked in the first half of SFT and then fell by > "
                     f"{PEAK_SE:g} SE")
    ev = "; ".join(parts)
    crit = _crit(n - 1)
    id_rises = z > crit
    peaks = len(real) >= n / 2 and sum(early_decline) >= len(real) / 2
    if id_rises and peaks:
        return Finding(claim, "holds", ev, test, n, gain, se)
    if id_rises and not real:
        return Finding(claim, "partly holds (ID rises; no OOD peak above the evaluation noise)", ev, test, n, gain, se)
    if id_rises:
        return Finding(claim, "partly holds (ID rises; OOD peaks early and declines in few trials)", ev, test, n,
                       gain, se)
    if z < -crit:
        return Finding(claim, "contradicted (ID fell during SFT)", ev, test, n, gain, se)
    return Finding(claim, too_few(n, _needed_for_mean(n, gain, se)), ev, test, n, gain, se)


def finding_rl(done, points: dict) -> Finding:
    claim = "RL from a strong SFT checkpoint raises OOD"
    test = "mean OOD change over RL in the stronger half of SFT checkpoints (by SFT-end ID), t against 0 (5%)"
    rl = [p for p in points.values() if "rl_ood_gain" in p]
    if len(rl) < 4:
        return Finding(claim, _too_few(len(rl)), f"RL curves for {len(rl)} trial(s)", test, len(rl))
    end_id = np.array([p["sft_end_id"] for p in rl])
    gain = np.array([p["rl_ood_gain"] for p in rl])
    strong = np.zeros(len(rl), bool)
    strong[np.argsort(-end_id, kind="stable")[: (len(rl) + 1) // 2]] = True
    n, gs, se, z = _mean_test(gain[strong])
    gw = float(gain[~strong].mean()) if (~strong).any() else float("nan")
    ev = (f"OOD change over RL: {gs:+.3f} (SE {se:.3f}, n {n}, t {z:+.1f}) from the stronger half of SFT checkpoints "
          f"(SFT-end ID >= {end_id[strong].min():.3f}), {gw:+.3f} from the weaker half; positive in "
          f"{np.mean(gain[strong] > 0):.0%} of the strong ones")
    crit = _crit(n - 1)
    if z > crit:
        return Finding(claim, "holds", ev, test, n, gs, se)
    if z < -crit:
        return Finding(claim, "contradicted", ev, test, n, gs, se)
    return Finding(claim, too_few(n, _needed_for_mean(n, gs, se)), ev, test, n, gs, se)


def finding_tradeoff(done) -> Finding:
    claim = "brief SFT + larger RL share + asymmetric ranks give the best trade-off"
    test = "difference of mean 0.5*ID+0.5*OOD with and without the pattern (Welch SE, t with n - 2 df, 5%)"
    if done.height < 4:
        return Finding(claim, _too_few(done.height), "", test, done.height)
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
                       f"{'every' if pattern.all() else 'no'} trial has SFT < RL with asymmetric ranks)", desc, test,
                       done.height)
    a, b = score[pattern], score[~pattern]
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    diff = float(a.mean() - b.mean())
    va = a.var(ddof=1) / len(a) if len(a) > 1 else float("nan")
    vb = b.var(ddof=1) / len(b) if len(b) > 1 else float("nan")
    se = math.sqrt(va + vb) if math.isfinite(va + vb) else float("nan")
    n = len(a) + len(b)
    ev = desc + (f"; mean balanced score {a.mean():.3f} with the pattern ({len(a)} trials) vs {b.mean():.3f} "
                 f"without ({len(b)}): difference {diff:+.3f} (SE {se:.3f})")
    if not math.isfinite(se):
        small = min(len(a), len(b))
        return Finding(claim, _too_few(small, "trial", " in the smaller group") if small < 2 else too_few(n, None), ev,
                       test, n, diff, se)
    z = diff / se if se > 0 else (math.copysign(math.inf, diff) if diff else 0.0)
    crit = _crit(n - 2)
    if z > crit:
        return Finding(claim, "holds" if pattern[best] else "partly holds", ev, test, n, diff, se)
    if z < -crit:
        return Finding(claim, "contradicted", ev, test, n, diff, se)
    sd = se * math.sqrt(n / 4)  # per-trial spread behind se, for balanced groups of n / 2
    needed = math.ceil(4 * (Z_CRIT * sd / abs(diff)) ** 2) if diff else None
    return Finding(claim, too_few(n, needed), ev, test, n, diff, se)


def findings(done, points: dict, ood_items: int | None = None) -> list[Finding]:
    return [finding_cpt(done, points), finding_sft(done, points, ood_items), finding_rl(done, points),
            finding_tradeoff(done)]


# -- calibration -----------------------------------------------------------------------------------
def held_out_ood(done, seed: int = 0, items: dict[str, int] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Held-out OOD predictions of the outcome model with their one-run intervals (a held-out trial is
    one run): folds grouped by shared SFT stage, leave-one-group-out up to LOO_MAX groups, else 5-fold."""
    from ptplan.surrogates import OutcomeModel, held_out_outcomes

    items = items or {}
    model = OutcomeModel(level=0.8, id_items=items.get("id"), ood_items=items.get("ood"))
    pred, how = held_out_outcomes(done, model, folds=None if done.height <= LOO_MAX else 5, loo_max=LOO_MAX,
                                  random_state=seed)
    return (_col(done, "ood"), pred["ood"].to_numpy(), pred["ood_rerun_low"].to_numpy(),
            pred["ood_rerun_high"].to_numpy(), how + ",\n80% one-run intervals")


