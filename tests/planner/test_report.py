"""`build_report` on hand-built trial tables: degenerate studies give a message, every plot is in the HTML."""

from __future__ import annotations

import re

import polars as pl
import pytest

from ptplan._findings import finding_cpt, finding_sft, findings
from ptplan._report import build_report
from ptplan._report_cmd import print_report
from rich.console import Console


def _curves(path, cpt_gain=0.1, sft_peak=0.4, sft_end=0.2, rl_end=0.45, budget=1e11):
    """A fake curves.parquet: start, 2 CPT points, 5 SFT points (OOD peaks at the 2nd), 2 RL points."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stages = ["start", "cpt", "cpt"] + ["sft"] * 5 + ["rl"] * 2
    ood = [0.0, cpt_gain / 2, cpt_gain, sft_peak * 0.8, sft_peak, 0.8 * sft_peak, 0.6 * sft_peak, sft_end,
           (sft_end + rl_end) / 2, rl_end]
    idv = [0.0, 0.05, 0.1, 0.3, 0.45, 0.55, 0.6, 0.62, 0.63, 0.64]
    pl.DataFrame({"stage": stages, "step": list(range(10)), "compute": [budget * i / 9 for i in range(10)],
                  "id": idv, "ood": ood, "loss": [None] + [1.0] * 9, "reward": [None] * 8 + [0.1, 0.2]},
                 schema_overrides={"loss": pl.Float64, "reward": pl.Float64}).write_parquet(path)
    return str(path)


def _row(n, state="COMPLETE", cpt=0.2, sft=0.3, rank_rl=16, idv=0.5, ood=0.4, curves=None, reason=None):
    ok = state == "COMPLETE"
    rl = round(1 - cpt - sft, 10)
    return {"number": n, "state": state, "id": idv if ok else None, "ood": ood if ok else None,
            "share_cpt": cpt, "share_sft": sft, "share_rl": rl, "rank_cpt": 0, "rank_sft": 64, "rank_rl": rank_rl,
            "budget_unit": "flops", "budget_total": 1e11, "spent": 1e11 if ok else 3e10,
            "spent_cpt": cpt * 1e11, "spent_sft": sft * 1e11 if ok else None, "spent_rl": rl * 1e11 if ok else None,
            "ood_peak_fraction": 0.25 if ok else None, "ood_peak_value": 0.4 if ok else None,
            "ood_peak_censored": False if ok else None, "failure_reason": None if ok else reason, "curves": curves}


def _pngs_in_html(out) -> tuple[int, int]:
    html = (out / "report.html").read_text()
    return len(re.findall(r"<img [^>]*src='data:image/png;base64,", html)), len(list(out.glob("*.png")))


def _check(rep, out):
    assert (out / "report.md").exists() and (out / "report.html").exists()
    imgs, pngs = _pngs_in_html(out)
    assert imgs == pngs == len(rep.plots)
    print_report(Console(width=120, file=open(out / "terminal.txt", "w")), rep)
    return (out / "report.md").read_text()


def test_empty_study(tmp_path):
    rep = build_report([], tmp_path / "r")
    md = _check(rep, tmp_path / "r")
    assert "no trials yet" in md and not rep.plots
    assert all(f.verdict.startswith("too few trials to tell (only 0") for f in rep.findings)


def test_only_failed_trials(tmp_path):
    rows = [_row(0, "FAIL", reason="oom"), _row(1, "FAIL", reason="oom"), _row(2, "FAIL", reason="nan-loss")]
    rep = build_report(rows, tmp_path / "r")
    md = _check(rep, tmp_path / "r")
    assert "none COMPLETE" in md and "No recommendation" in md
    assert set(rep.plots) == {"Budget ledger per stage", "Failures by reason"}


def test_one_trial(tmp_path):
    rows = [_row(0, curves=_curves(tmp_path / "c0" / "curves.parquet")), _row(1, "FAIL", reason="oom")]
    rep = build_report(rows, tmp_path / "r")
    md = _check(rep, tmp_path / "r")
    assert "only 1 completed trial" in md
    assert rep.recommendation.source == "best completed trial"
    assert "needs >= 5 completed trials" in rep.skipped["Surrogate calibration (held-out OOD)"]
    assert "ID and OOD through CPT -> SFT -> RL" in rep.plots


def test_full_report_has_every_plot_and_computed_findings(tmp_path):
    rows = []
    for n, (cpt, sft, rank, ood) in enumerate([(0.1, 0.5, 4, 0.30), (0.2, 0.2, 16, 0.55), (0.3, 0.3, 4, 0.42),
                                               (0.4, 0.2, 16, 0.60), (0.2, 0.4, 16, 0.38), (0.3, 0.5, 4, 0.35)]):
        c = _curves(tmp_path / f"c{n}" / "curves.parquet", rl_end=ood)
        rows.append(_row(n, cpt=cpt, sft=sft, rank_rl=rank, ood=ood, idv=0.4 + 0.3 * cpt, curves=c))
    rows.append(_row(6, "FAIL", reason="oom"))
    rep = build_report(rows, tmp_path / "r", budget=1e11, objective="ood")
    _check(rep, tmp_path / "r")
    assert len(rep.plots) == 7 and not rep.skipped
    verdicts = {f.claim.split()[0]: f.verdict for f in rep.findings}
    # ID rises with the CPT share in every trial (rho 1); OOD's rank correlation on 6 trials is within noise
    assert verdicts["CPT"] == "partly holds"
    assert verdicts["SFT"] == "holds"
    # RL raised OOD by +0.22 on average in the stronger half, but that half is 3 trials (t 3.1 < 4.30)
    assert verdicts["RL"].startswith("too few trials to tell")
    html = (tmp_path / "r" / "report.html").read_text()
    assert "findings" in html.lower() and rep.recommendation.ok


def test_cpt_not_varied_is_not_supported():
    rows = pl.DataFrame([_row(n, ood=0.3 + 0.05 * n) for n in range(4)], strict=False)
    f = finding_cpt(rows, {})
    assert f.verdict.startswith("not supported by this study") and "not varied" in f.verdict


def test_missing_curve_files_are_skipped(tmp_path):
    rows = [_row(n, cpt=0.1 * (n + 1), ood=0.3 + 0.05 * n, curves=str(tmp_path / "gone.parquet")) for n in range(3)]
    rep = build_report(rows, tmp_path / "r")
    assert "no readable curves.parquet" in " ".join(rep.notes)
    assert "ID and OOD through CPT -> SFT -> RL" in rep.skipped


def test_report_sums_device_hours_per_stage(tmp_path):
    from ptplan.studies._accounting import cost_columns, resources_record

    rows = []
    for n, state in enumerate(("COMPLETE", "FAIL")):
        r = resources_record(3600.0, {"cpt": 600.0, "sft": 1200.0, "rl": 900.0}, "NVIDIA H200", 1)
        rows.append({**_row(n, state, reason="oom"), **cost_columns(r)})
    rows.append(_row(2, "FAIL", reason="oom"))  # no resources record (an older trial): not counted
    rep = build_report(rows, tmp_path / "r")
    md = _check(rep, tmp_path / "r")
    assert ("cost: 2 device-hours over 2 trials (NVIDIA H200 x1); per stage: cpt 0.333, sft 0.667, rl 0.5, "
            "other 0.5") in md


def test_time_per_trial_breakdown(tmp_path):
    rows = [{**_row(0), "time_wall": 50.0, "time_train": 40.0, "time_eval": 4.0},
            {**_row(1, "FAIL", reason="oom"), "time_wall": 10.0, "time_train": 6.0, "time_eval": 1.0},
            _row(2)]  # recorded before ptplan kept a time breakdown: left out
    rep = build_report(rows, tmp_path / "r")
    assert [(t["number"], t["other"]) for t in rep.timing] == [(0, 6.0), (1, 3.0)]
    assert rep.timing[0]["train_share"] == 0.8 and rep.timing[0]["eval_per_train"] == 0.1
    md = _check(rep, tmp_path / "r")
    assert "## Time per trial" in md and "| #0 | COMPLETE | 50.0 | 40.0 | 4.0 | 6.0 | 80% | 10% |" in md
    assert "time per trial" in (tmp_path / "r" / "terminal.txt").read_text()
    assert "<h2>Time per trial</h2>" in (tmp_path / "r" / "report.html").read_text()
    assert "No trial recorded a time breakdown" in _check(build_report([_row(0)], tmp_path / "s"), tmp_path / "s")


def _trend_rows(n):
    """`n` trials whose ID and OOD both rise with the CPT share, with one swap in the ranks (rho < 1)."""
    cpt = [0.05 + 0.4 * i / (n - 1) for i in range(n)]
    ood = [0.2 + 0.3 * c for c in cpt]
    ood[0], ood[1] = ood[1], ood[0]
    return pl.DataFrame([_row(i, cpt=c, sft=0.3, idv=o + 0.1, ood=o) for i, (c, o) in enumerate(zip(cpt, ood))],
                        strict=False)


def test_a_finding_on_four_trials_is_too_few_trials():
    f = finding_cpt(_trend_rows(4), {})
    # rho 0.8 on 4 trials: Fisher z atanh(0.8) = 1.10 with SE 1/sqrt(4 - 3) = 1, below 1.96; 7 trials would do
    assert f.n == 4 and f.effect == pytest.approx(0.8) and f.se == pytest.approx(1.0)
    assert f.verdict == "too few trials to tell (about 3 more needed)"
    assert "Spearman" in f.test and "n 4" in f.evidence
    many = finding_cpt(_trend_rows(12), {})
    assert many.verdict == "holds" and many.n == 12 and many.se == pytest.approx(1 / 3)
    for g in findings(_trend_rows(4), {}):
        assert g.verdict.startswith(("too few trials to tell", "not supported")), (g.claim, g.verdict)


def _points(rise, n=6):
    """Stage points of `n` trials whose OOD starts SFT at 0.2, rises by `rise` at 25% of SFT, ends at 0.1."""
    return {i: {"sft_id_gain": 0.3 + 0.01 * i, "sft_end_id": 0.6, "sft_end_ood": 0.1, "sft_start_ood": 0.2,
                "sft_peak_ood": 0.2 + rise, "sft_decline": 0.1 + rise, "sft_peak_fraction": 0.25} for i in range(n)}


def test_an_ood_peak_counts_only_above_two_binomial_se():
    done = pl.DataFrame([_row(i) for i in range(6)], strict=False)
    # 128 OOD items at p ~0.2: SE 0.035, so a rise of 0.03 is noise and one of 0.15 is a peak
    small = finding_sft(done, _points(0.03), ood_items=128)
    assert small.verdict.startswith("partly holds (ID rises; no OOD peak") and "in 0 of 6" in small.evidence
    big = finding_sft(done, _points(0.15), ood_items=128)
    assert big.verdict == "holds" and "in 6 of 6" in big.evidence
    # with 8 items the same 0.15 rise is within 2 SE (SE ~0.15)
    assert "no OOD peak" in finding_sft(done, _points(0.15), ood_items=8).verdict
