"""Leave-one-trial-out evaluation and `ptplan surrogate eval` on a small synthetic trial table."""

import numpy as np
import polars as pl
import pytest
from rich.console import Console

from ptplan._surrogate_cmd import surrogate_eval
from ptplan.surrogates import BestSoFar, OODPeakModel, evaluate, evaluate_curve_models, load_curves
from ptplan.testing import synthetic_curve, synthetic_table


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    table = synthetic_table(8, seed=0, curves_dir=root / "trials", failed=1, n_points=9)
    # store paths relative to the table, as an exported table moved with its run folder would be
    table = table.with_columns(pl.col("curves").str.replace(str(root) + "/", "", literal=True))
    path = root / "table.parquet"
    table.write_parquet(path)
    return path


def test_evaluate_reports_both_models_and_their_baselines(table_file):
    table = pl.read_parquet(table_file)
    result = evaluate(table, base_dir=table_file.parent)
    curve = result["curve"]
    assert set(curve["model"]) == {"curve-model", "best-so-far", "loss-patience", "power-law"}
    assert set(curve["observed"]) == {0.3, 0.5}
    assert (curve["curves"] == 8).all() and result["counts"]["evaluated"] == 8
    assert curve.filter(pl.col("model") == "curve-model")["gain_vs_best_baseline"].is_not_null().all()
    for col in ("mae", "coverage", "value_mae", "behind_brier"):
        assert curve[col].is_between(0, 1).all(), col
    outcome = result["outcome"]
    assert set(outcome["target"]) == {"id", "ood", "ood_peak_fraction"}
    assert (outcome["trials"] == 8).all() and outcome["spearman"].is_between(-1, 1).all()
    assert result["curve_detail"].height == 8 * 4 * 2


def test_curves_are_read_relative_to_the_table_and_missing_files_are_noted(table_file):
    table = pl.read_parquet(table_file)
    curves, notes = load_curves(table, table_file.parent)
    assert len(curves) == 8 and not notes
    broken = table.with_columns(pl.when(pl.col("number") == 0).then(pl.lit("gone.parquet"))
                                .otherwise(pl.col("curves")).alias("curves"))
    curves, notes = load_curves(broken, table_file.parent)
    assert len(curves) == 7 and "1 trial(s) without a readable curves file: 0" in notes[0]


def test_shared_sft_stages_are_left_out_together_and_flat_curves_skipped():
    a, _ = synthetic_curve("noisy", peak=0.3, n_points=9, seed=1)
    b, _ = synthetic_curve("noisy", peak=0.5, n_points=9, seed=2)
    flat = np.column_stack([np.linspace(0, 1, 9), np.zeros(9)])
    summary, detail, counts = evaluate_curve_models([a, a.copy(), b, b, flat], fractions=(0.3,),
                                                    models={"m": OODPeakModel(n_samples=200), "b": BestSoFar()})
    assert counts == {"curves": 5, "evaluated": 2, "flat": 1, "short": 0, "duplicate": 2, "censored": 0}
    assert sorted(set(detail["curve"])) == [0, 2]


def test_surrogate_eval_prints_tables(table_file):
    console = Console(record=True, width=220)
    assert surrogate_eval(str(table_file), console, fmt="table") == 0
    text = console.export_text()
    assert "leave one trial out" in text and "curve-model" in text and "power-law" in text
    assert "outcome-model" in text and "Spearman" in text and "8 scored" in text


@pytest.mark.parametrize("fmt", [None, "tsv", "json"])
def test_surrogate_eval_prints_tsv_when_not_a_terminal_or_json(table_file, fmt):
    import io
    import json

    buffer = io.StringIO()
    assert surrogate_eval(str(table_file), Console(file=buffer, width=40), fmt=fmt) == 0
    text = buffer.getvalue()
    if fmt == "json":
        data = json.loads(text)
        assert {r["model"] for r in data["curve"]} >= {"curve-model", "power-law"}
        assert data["outcome"][0]["model"] == "outcome-model" and data["counts"]["evaluated"] == 8
        return
    header = "model\tobserved\tcurves\tMAE\tmedian AE\tcoverage\tvalue MAE\tvalue cov.\tbehind Brier\tvs best baseline\ttargets"
    assert header in text.splitlines() and "…" not in text
    assert "model\ttarget\ttrials\tSpearman\tMAE\tcoverage\tre-run coverage\ttarget met" in text.splitlines()


def test_surrogate_eval_reads_csv_and_refuses_bad_input(table_file, tmp_path):
    csv = table_file.parent / "table.csv"
    pl.read_parquet(table_file).write_csv(csv)
    assert surrogate_eval(str(csv), Console(record=True, width=220)) == 0
    console = Console(record=True, width=220)
    assert surrogate_eval(str(tmp_path / "nope.parquet"), console) == 2
    assert "no such trial table file" in console.export_text()
    (tmp_path / "t.json").write_text("{}")
    assert surrogate_eval(str(tmp_path / "t.json"), console) == 2
    pl.DataFrame({"a": [1]}).write_parquet(tmp_path / "other.parquet")
    assert surrogate_eval(str(tmp_path / "other.parquet"), console) == 2
    assert "not a trial table" in console.export_text()


def test_surrogate_eval_reads_curves_from_a_points_file(table_file, tmp_path):
    """A recorded dataset ships its curves as one long Parquet file of points, keyed by suite/seed/number."""
    table = pl.read_parquet(table_file).filter(pl.col("state") == "COMPLETE")
    points = []
    for number, path in zip(table["number"], table["curves"]):
        if path:
            frame = pl.read_parquet(table_file.parent / path)
            points.append(frame.select("stage", "compute", "id", "ood", "loss").with_columns(
                pl.lit("s").alias("suite"), pl.lit(number).alias("number")))
    points_file = tmp_path / "points.parquet"
    pl.concat(points).write_parquet(points_file)
    no_paths = tmp_path / "table.parquet"
    table.drop("curves").write_parquet(no_paths)
    console = Console(record=True, width=220)
    assert surrogate_eval(str(no_paths), console, [str(points_file)], fmt="table") == 0
    assert "8 scored" in console.export_text()
    pl.DataFrame({"stage": ["sft"]}).write_parquet(tmp_path / "bad.parquet")
    console = Console(record=True, width=220)
    assert surrogate_eval(str(no_paths), console, [str(tmp_path / "bad.parquet")]) == 2
    assert "bad.parquet: not a curve-points file, missing column(s) compute" in console.export_text()


class _Spy:
    """An outcome 'model' that predicts OOD 1 for a query whose SFT stage it was trained on, else 0."""

    def get_params(self, deep=True):
        return {}

    def fit(self, table):
        self.seen_ = set(table["key_sft"].to_list())
        return self

    def predict_outcome(self, table):
        hit = [float(k in self.seen_) for k in table["key_sft"].to_list()]
        return pl.DataFrame({t + s: hit for t in ("id", "ood") for s in ("", "_low", "_high")})


@pytest.mark.parametrize("folds", [None, 3])
def test_held_out_folds_never_split_a_shared_sft_stage(folds):
    from ptplan.surrogates import fold_groups, held_out_outcomes

    table = synthetic_table(24, seed=1)
    table = table.with_columns(pl.Series("key_sft", [f"sft{i // 3}" for i in range(table.height)]))
    assert len(set(fold_groups(table))) == 8
    pred, how = held_out_outcomes(table, _Spy(), folds=folds)
    assert pred.height == 24 and (pred["ood"] == 0).all(), how
    assert "shared SFT stage" in how
    # without key_sft, identical allocations are one group
    same = synthetic_table(6, seed=1)
    same = pl.concat([same, same.with_columns(pl.col("number") + 100)])
    g = fold_groups(same)
    assert list(g[:6]) == list(g[6:]) and len(set(g)) == 6


def test_surrogate_eval_prints_both_coverages(table_file):
    import io

    buffer = io.StringIO()
    console = Console(file=buffer, width=260)
    assert surrogate_eval(str(table_file), console, items="64,128") == 0
    text = buffer.getvalue()
    assert "re-run coverage" in text and "leave-one-group-out" in text
    assert surrogate_eval(str(table_file), console, items="64") == 2
