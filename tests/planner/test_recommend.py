"""`recommend` on hand-built trial tables: the known best cell, extrapolation, few-trial fallback."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ptplan._recommend import RecommendError, objective_weight, recommend
from ptplan.surrogates import OutcomeModel

BEST = (0.2, 16)  # (SFT share, RL rank) of the cell with the highest OOD


def _row(number, share_sft, rank_rl, ood, idv=0.5, budget=1e11, state="COMPLETE"):
    return {"number": number, "state": state, "id": idv if state == "COMPLETE" else None,
            "ood": ood if state == "COMPLETE" else None, "share_cpt": 0.2, "share_sft": share_sft,
            "share_rl": round(0.8 - share_sft, 10), "rank_cpt": 0, "rank_sft": 16, "rank_rl": rank_rl,
            "budget_unit": "flops", "budget_total": budget, "ood_peak_fraction": 0.3,
            "failure_reason": None if state == "COMPLETE" else "oom"}


def grid_table(budgets=(1e11,), best=BEST) -> pl.DataFrame:
    """3 SFT shares x 2 RL ranks x budgets, two repeats; OOD 0.6 in the `best` cell, about 0.3 elsewhere."""
    rows, n = [], 0
    for budget in budgets:
        for rep in range(2):
            for sft in (0.2, 0.4, 0.6):
                for rank in (4, 16):
                    ood = 0.6 if (sft, rank) == best else 0.3 + 0.02 * ((n * 7) % 3 - 1) - 0.1 * (sft - 0.2)
                    rows.append(_row(n, sft, rank, ood + 0.005 * rep, budget=budget))
                    n += 1
    rows.append(_row(n, 0.4, 4, None, state="FAIL"))
    return pl.DataFrame(rows, strict=False)


@pytest.mark.parametrize("best", [BEST, (0.4, 4), (0.6, 16)])
def test_known_best_cell_is_recommended(best):
    table = grid_table(best=best)
    rec = recommend(table, 1e11, "ood")
    # the best cell was run (twice): the model's best is that allocation, or none beats it beyond noise
    assert rec.source == "best observed" and not rec.extrapolating and rec.warning is None
    assert not rec.off_grid and rec.distance_to_evidence == pytest.approx(0.0, abs=1e-9)
    assert rec.predicted["ood"]["observed"] == pytest.approx(0.6025)
    assert rec.ranks["rl"] == best[1]
    assert rec.shares["sft"] == pytest.approx(best[0], abs=0.05 + 1e-9)
    assert sum(rec.shares.values()) == pytest.approx(1.0)
    best_cell = {r["number"] for r in table.iter_rows(named=True) if (r["share_sft"], r["rank_rl"]) == best}
    assert rec.evidence[0]["number"] in best_cell and len(rec.evidence) == 3
    assert rec.predicted["ood"]["low"] <= rec.predicted["ood"]["mean"] <= rec.predicted["ood"]["high"]
    assert rec.amounts()["rl"] == pytest.approx(rec.shares["rl"] * 1e11)
    assert rec.handover["sft_share"] == rec.shares["sft"]
    d = rec.to_dict()
    assert d["budget"] == 1e11 and d["amounts"]["sft"] == pytest.approx(rec.shares["sft"] * 1e11)


@pytest.fixture(scope="module")
def two_budgets():
    table = grid_table(budgets=(1e11, 2e11))
    return table, OutcomeModel(level=0.8).fit(table.filter(pl.col("state") == "COMPLETE"))


@pytest.mark.parametrize("budget, outside", [(1e11, False), (1.5e11, False), (2e11, False), (9.9e10, True),
                                             (5e10, True), (2.01e11, True), (1e12, True)])
def test_extrapolation_warning_exactly_outside_run_range(two_budgets, budget, outside):
    table, model = two_budgets
    rec = recommend(table, budget, "balanced", model=model)
    assert rec.extrapolating is outside
    assert (rec.warning is not None) is outside
    if outside:
        assert "1e+11" in rec.warning and "2e+11" in rec.warning


def test_default_budget_is_the_most_run_one():
    rec = recommend(grid_table(), None, "id")
    assert rec.budget == 1e11 and not rec.extrapolating


def test_few_trials_fall_back_to_best_completed():
    table = pl.DataFrame([_row(0, 0.2, 4, 0.3), _row(1, 0.4, 16, 0.5), _row(2, 0.6, 4, None, state="FAIL")],
                         strict=False)
    rec = recommend(table, 3e11, "ood")
    assert rec.source == "best completed trial" and rec.trial == 1
    assert rec.extrapolating and "no outcome model" in " ".join(rec.notes)
    assert rec.predicted["ood"]["mean"] == 0.5 and rec.predicted["ood"]["low"] is None


def test_no_completed_trials_gives_a_note():
    for table in ([], pl.DataFrame([_row(0, 0.2, 4, None, state="FAIL")], strict=False)):
        rec = recommend(table, 1e11)
        assert not rec.ok and "no completed trials" in rec.notes[-1]


def test_objectives():
    assert objective_weight("ood") == 1.0 and objective_weight("id") == 0.0
    assert objective_weight("balanced") == 0.5 and objective_weight("weight=0.25") == 0.25
    for bad in ("weight=2", "weight=x", "best"):
        with pytest.raises(RecommendError, match="--objective"):
            objective_weight(bad)
    with pytest.raises(RecommendError, match="--budget"):
        recommend(grid_table(), -1.0)


def test_cli_recommend_and_report_on_a_stored_study(tmp_path):
    """`ptplan recommend --json` and `ptplan report` on an Optuna study of 30 finished trials (no training)."""
    import json

    from test_study_cli import assert_clean_error, ptplan, write_plan

    from ptplan.testing import synthetic_study

    plan = write_plan(tmp_path)
    synthetic_study(plan, 30, failed_every=7)
    proc = ptplan("recommend", plan, "--budget", 20, "--objective", "ood", "--json")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["source"] in ("model", "best observed") and rec["extrapolating"] and "10" in rec["warning"]
    assert rec["reason"] and {"difference", "se", "z"} <= set(rec["advantage"])
    assert rec["unit"] == "epochs" and sum(rec["amounts"].values()) == pytest.approx(20)
    assert len(rec["evidence"]) == 3 and rec["predicted"]["ood"]["low"] <= rec["predicted"]["ood"]["high"]
    assert_clean_error(ptplan("recommend", plan, "--objective", "best"), "--objective")
    report = ptplan("report", plan, "--out", tmp_path / "rep")
    assert report.returncode == 0, report.stderr
    for words in ("recommended allocation", "evidence", "findings", "4 FAIL"):
        assert words in report.stdout, words
    assert (tmp_path / "rep" / "failures.png").exists() and (tmp_path / "rep" / "report.html").exists()


class _Nudged:
    """A fitted OutcomeModel that predicts OOD `ood` for every allocation never run (number null)."""

    def __init__(self, model, ood):
        self.model, self.ood = model, ood

    def __getattr__(self, name):
        return getattr(self.model, name)

    def predict_outcome(self, frame):
        pred = self.model.predict_outcome(frame)
        off = frame["number"].is_null().to_numpy() if "number" in frame.columns else False
        return pred.with_columns(pl.Series("ood", np.where(off, self.ood, pred["ood"].to_numpy())))


@pytest.mark.parametrize("ood, source", [(0.62, "best observed"), (0.95, "model")])
def test_fallback_to_best_observed_when_the_advantage_is_within_noise(ood, source):
    """The best cell observed OOD 0.6025 over 2 runs (128 items each): a candidate never run predicted at
    0.62 is within the noise (binomial SE ~0.03 for the mean of 2 runs), one at 0.95 is not."""
    table = grid_table()
    done = table.filter(pl.col("state") == "COMPLETE")
    model = _Nudged(OutcomeModel(level=0.8, id_items=64, ood_items=128).fit(done), ood)
    rec = recommend(table, 1e11, "ood", model=model)
    adv = rec.advantage
    assert rec.source == source
    assert adv["difference"] > 0  # the nudged model's best is an allocation never run, predicted better
    assert adv["se"] > 0.01 and adv["best_observed"] == pytest.approx(0.6025)
    if source == "best observed":
        assert adv["z"] <= adv["threshold_z"] and "within the noise" in rec.reason
        assert not rec.off_grid and (rec.shares["sft"], rec.ranks["rl"]) == (0.2, 16)
        assert rec.trial in {r["number"] for r in done.iter_rows(named=True) if (r["share_sft"], r["rank_rl"]) == BEST}
    else:
        assert adv["z"] > adv["threshold_z"] and rec.off_grid and rec.distance_to_evidence > 0
        assert "extrapolation" in " ".join(rec.notes)
    assert isinstance(rec.indistinguishable, list)
    import json
    json.dumps(rec.to_dict())
