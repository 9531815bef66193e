"""OutcomeModel: fitted on a polars trial table; recovers a known best cell; flags extrapolation."""

import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from ptplan.surrogates import OutcomeModel, feature_columns
from ptplan.testing import synthetic_table

SFT_SHARES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
SFT_RANKS = (16, 64, 256)


def _grid_table(budget=2e11, repeat=2, noise=0.005, seed=0):
    """A hand-built grid: OOD is best with brief SFT (0.2) at SFT rank 64; ID grows with SFT share."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(repeat):
        for s in SFT_SHARES:
            for r in SFT_RANKS:
                ood = 0.6 - 2.0 * (s - 0.2) ** 2 - 0.05 * abs(np.log2(r) - 6) / 2 + noise * rng.standard_normal()
                idv = 0.3 + 0.5 * s + noise * rng.standard_normal()
                rows.append({"number": len(rows), "state": "COMPLETE", "id": idv, "ood": ood, "share_cpt": 0.2,
                             "share_sft": s, "share_rl": 0.8 - s, "rank_cpt": 0, "rank_sft": r, "rank_rl": 16,
                             "budget_unit": "flops", "budget_total": budget,
                             "ood_peak_fraction": 0.2 + 0.1 * np.log2(r) / 8})
    rows.append({**rows[0], "number": len(rows), "state": "FAIL", "id": None, "ood": None, "ood_peak_fraction": None})
    return pl.DataFrame(rows)


def _cells():
    return pl.DataFrame([{"share_cpt": 0.2, "share_sft": s, "share_rl": 0.8 - s, "rank_cpt": 0, "rank_sft": r,
                          "rank_rl": 16, "budget_unit": "flops", "budget_total": 2e11}
                         for s in SFT_SHARES for r in SFT_RANKS])


def test_recovers_the_known_best_cell_of_a_hand_built_grid():
    model = OutcomeModel().fit(_grid_table())
    assert model.n_trials_["ood"] == len(SFT_SHARES) * len(SFT_RANKS) * 2  # FAIL row ignored
    cells = _cells()
    pred = model.predict_outcome(cells)
    best = cells.row(int(np.argmax(pred["ood"].to_numpy())), named=True)
    assert (best["share_sft"], best["rank_sft"]) == (0.2, 64)
    assert np.corrcoef(pred["id"].to_numpy(), cells["share_sft"].to_numpy())[0, 1] > 0.95
    assert not pred["extrapolating"].any()
    for t in ("id", "ood", "ood_peak_fraction"):
        assert ((pred[f"{t}_low"] <= pred[t]) & (pred[t] <= pred[f"{t}_high"])).all()
    mean, std = model.predict(cells, return_std=True)
    assert mean.shape == std.shape == (cells.height, 3) and (std > 0).all()


def test_budgets_never_run_are_predicted_and_flagged():
    table = pl.concat([_grid_table(1e11, repeat=1, seed=1), _grid_table(4e11, repeat=1, seed=2)
                       .with_columns(pl.col("ood") + 0.1)])
    model = OutcomeModel().fit(table)
    cells = _cells()
    inside = model.predict_outcome(cells)  # 2e11: between the budgets run
    outside = model.predict_outcome(cells.with_columns(pl.lit(1.6e12).alias("budget_total")))
    assert not inside["extrapolating"].any()
    assert outside["extrapolating"].all() and set(outside["outside"]) == {"budget_total"}
    assert outside["ood"].mean() > inside["ood"].mean()  # follows the trend in log budget
    assert (outside["ood_high"] - outside["ood_low"]).mean() > (inside["ood_high"] - inside["ood_low"]).mean()


def test_unseen_category_and_searched_params_are_features():
    table = synthetic_table(30, seed=0)
    assert "param.allocation.sft.lr" in feature_columns(table) and "parameters" in feature_columns(table)
    model = OutcomeModel().fit(table)
    query = table.head(2).with_columns(pl.Series("param.allocation.rl.start", ["warm", "hot"]))
    pred = model.predict_outcome(query)
    assert pred["extrapolating"].to_list() == [False, True] and pred["outside"][1] == "param.allocation.rl.start"
    with pytest.raises(ValueError, match="parameters"):
        model.predict(query.drop("parameters"))


@pytest.mark.parametrize("n", [1, 2, 5])
def test_few_trials_still_fit_with_wide_intervals(n):
    model = OutcomeModel().fit(synthetic_table(n, seed=3))
    pred = model.predict_outcome(synthetic_table(4, seed=4))
    assert pred.height == 4 and pred.select(pl.all().is_null().any()).row(0) == (False,) * pred.width
    if n < 3:
        assert (pred["ood_high"] - pred["ood_low"]).min() > 0.3


def test_bad_tables_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="no COMPLETE trials"):
        OutcomeModel().fit(synthetic_table(0, failed=2))
    with pytest.raises(ValueError, match="ood"):
        OutcomeModel().fit(pl.DataFrame({"id": [0.1], "share_sft": [0.2]}))
    with pytest.raises(TypeError, match="polars"):
        OutcomeModel().fit(np.zeros((3, 3)))


def test_fitting_is_fast_enough_for_large_studies():
    import time

    table = synthetic_table(400, seed=5)
    t = time.perf_counter()
    OutcomeModel().fit(table)
    assert time.perf_counter() - t < 10  # 1,000 trials <= 2 s: benchmarks/bench_surrogates.py


def test_surrogates_never_import_torch():
    code = "import sys, ptplan.surrogates as s; s.OutcomeModel; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_pooled_table_uses_the_suite_as_a_feature():
    """Tables pooling several suites (the recorded benchmark data) keep them apart."""
    a = synthetic_table(30, seed=0).with_columns(pl.lit("dna").alias("suite"))
    b = synthetic_table(30, seed=1).with_columns(pl.lit("rna").alias("suite"), pl.col("ood") + 0.5)
    model = OutcomeModel().fit(pl.concat([a, b]))
    assert "suite=dna" in model.feature_names_ and "suite=rna" in model.feature_names_
    probe = synthetic_table(6, seed=2)
    ood_dna = model.predict(probe.with_columns(pl.lit("dna").alias("suite")))[:, 1]
    ood_rna = model.predict(probe.with_columns(pl.lit("rna").alias("suite")))[:, 1]
    assert np.all(ood_rna - ood_dna > 0.3)


def _one_run_per_cell(seed=0):
    table = _grid_table(repeat=1, noise=0.0, seed=seed)
    return table.filter(pl.col("state") == "COMPLETE")


def test_the_intervals_widen_with_fewer_evaluation_items():
    """A score over 16 items is noisier than over 1024: both intervals widen, as a column or an argument."""
    table = _one_run_per_cell()
    widths = {}
    for n in (16, 128, 1024):
        m = OutcomeModel(level=0.8, id_items=n, ood_items=n).fit(table)
        p = m.predict_outcome(_cells())
        widths[n] = ((p["ood_high"] - p["ood_low"]).mean(), (p["ood_rerun_high"] - p["ood_rerun_low"]).mean())
        by_column = OutcomeModel(level=0.8).fit(table.with_columns(pl.lit(n).alias("id_items"),
                                                                    pl.lit(n).alias("ood_items")))
        q = by_column.predict_outcome(_cells().with_columns(pl.lit(n).alias("ood_items"), pl.lit(n).alias("id_items")))
        assert (q["ood_rerun_high"] - q["ood_rerun_low"]).mean() == pytest.approx(widths[n][1], rel=1e-6)
    for kind in (0, 1):
        assert widths[16][kind] > widths[128][kind] > widths[1024][kind]
    # one re-run of OOD ~0.5 over 16 items: at least the binomial sd 0.125 either side, times z(80%) = 1.28
    assert widths[16][1] > 2 * 1.28 * 0.1


def test_a_replicate_free_table_falls_back_to_the_binomial_floor():
    table = _one_run_per_cell()
    m = OutcomeModel(level=0.8, id_items=64, ood_items=128).fit(table)
    assert m.noise_source_["ood"] == "binomial floor" and m.replicates_["ood"][1] == 0
    p = m.predict_outcome(_cells())
    mean = p["ood"].to_numpy()
    floor = np.sqrt(np.clip(mean, 0.01, 0.99) * (1 - np.clip(mean, 0.01, 0.99)) / 128)
    rerun = p["ood_rerun_sd"].to_numpy()
    assert (rerun >= 0.95 * floor).all()  # never below one score's binomial noise
    assert (p["ood_rerun_sd"] > p["ood_sd"]).all()  # a re-run is noisier than the expected score
    # without item counts there is no floor: the re-run sd is only what the GP saw in the study
    bare = OutcomeModel(level=0.8).fit(table)
    assert bare.noise_source_["ood"] == "none"
    assert bare.predict_outcome(_cells())["ood_rerun_sd"].mean() < 0.5 * rerun.mean()


def test_replicates_set_the_re_run_noise():
    """Two runs per cell whose OOD differs by a seed offset of sd 0.08: the re-run sd follows it."""
    rng = np.random.default_rng(3)
    a, b = _one_run_per_cell(), _one_run_per_cell()
    b = b.with_columns(pl.col("ood") + pl.Series(rng.normal(0, 0.08 * np.sqrt(2), b.height)),
                       (pl.col("number") + 100).alias("number"))
    m = OutcomeModel(level=0.8, id_items=64, ood_items=128).fit(pl.concat([a, b]))
    cells, dof, var = m.replicates_["ood"]
    assert cells == a.height and dof == a.height and 0.05 < np.sqrt(var) < 0.13
    assert m.noise_source_["ood"].startswith("replicates")
    sd = m.predict_outcome(_cells())["ood_rerun_sd"].to_numpy()
    assert (sd >= np.sqrt(var) - 1e-9).all() and (sd < 3 * np.sqrt(var)).all()
