"""OODPeakModel: exact recovery on noise-free synthetic curves, degenerate inputs, curve handling.

The synthetic curves (ptplan.testing, planner/testing/_tables.py) are for unit checks only; accuracy on real curves
is measured by `ptplan surrogate eval` on recorded trials.
"""

import time

import numpy as np
import polars as pl
import pytest

from ptplan.surrogates import OODPeakModel, as_curve, peak_of, sft_curve, truncate
from ptplan.surrogates._curve import future_grid, score_resolution
from ptplan.testing import synthetic_curve, synthetic_curves

FIELDS = ("location", "value", "behind")


def _clean_prior(peaks, n_points=41):
    return [synthetic_curve("rise-fall", peak=p, n_points=n_points)[0] for p in peaks]


@pytest.fixture(scope="module")
def clean_model():
    return OODPeakModel().fit(_clean_prior([0.25, 0.3, 0.32, 0.35, 0.38, 0.4, 0.45]))


@pytest.mark.parametrize("peak", [0.3, 0.35, 0.4])
@pytest.mark.parametrize("observed", [0.2, 0.3, 0.5, 1.0])
def test_recovers_the_peak_of_noise_free_rise_fall_curves(clean_model, peak, observed):
    curve, truth = synthetic_curve("rise-fall", peak=peak, n_points=41)
    r = clean_model.predict_peak([truncate(curve, observed)]).row(0)
    assert r["location"] == pytest.approx(truth["fraction"], abs=0.05)
    assert r["location_low"] - 1e-9 <= truth["fraction"] <= r["location_high"] + 1e-9
    assert r["value"] == pytest.approx(truth["value"], abs=0.05)
    if observed >= truth["fraction"] + 0.1:  # peak and a clear decline seen: it is behind
        assert r["behind"] > 0.9 and r["location"] == pytest.approx(truth["fraction"], abs=1e-9)
    if observed <= truth["fraction"] - 0.1:
        assert r["behind"] < 0.1


def test_fully_observed_curve_gives_the_recorded_peak_exactly(clean_model):
    curve, truth = synthetic_curve("noisy", peak=0.3, n_points=21, seed=3)
    r = clean_model.predict_peak([curve]).row(0)
    assert (r["location"], r["location_low"], r["location_high"]) == (truth["fraction"],) * 3
    assert r["value"] == truth["value"] and r["behind"] == 1.0


def test_still_rising_curves_predict_a_late_censored_peak():
    prior = [synthetic_curve("still-rising", peak=p, n_points=21)[0] for p in (0.4, 0.6, 0.8, 1.0, 1.2)]
    model = OODPeakModel().fit(prior)
    curve, truth = synthetic_curve("still-rising", peak=0.7, n_points=21)
    assert truth["censored"] and truth["fraction"] == 1.0
    r = model.predict_peak([truncate(curve, 0.3)]).row(0)
    assert r["location"] >= 0.8 and r["location_high"] == pytest.approx(1.0) and r["behind"] < 0.1


def test_all_censored_prior_curves_still_give_an_answer():
    prior = [synthetic_curve("still-rising", peak=p, n_points=11)[0] for p in (0.5, 1.0, 2.0)]
    model = OODPeakModel().fit(prior)
    pred = model.predict_peak([truncate(c, 0.3) for c in prior])
    assert np.isfinite(pred.location).all() and (pred.location >= 0.5).all()


def _check_defined(r):
    for k in FIELDS:
        assert np.isfinite([r[k], r[f"{k}_low"], r[f"{k}_high"]]).all(), k
        assert 0.0 <= r[f"{k}_low"] <= r[k] <= r[f"{k}_high"] <= 1.0, k


@pytest.mark.parametrize("prior_curves", [0, 6], ids=["no-prior", "prior"])
@pytest.mark.parametrize("case", ["empty", "one-point", "flat", "all-nan", "some-nan", "two-points"])
def test_degenerate_inputs_give_a_defined_answer_with_a_wide_interval(case, prior_curves):
    prior = [c for c, _ in synthetic_curves(prior_curves, seed=1, kind="noisy", n_points=11)]
    model = OODPeakModel(n_samples=500).fit(prior)
    curve = {
        "empty": np.empty((0, 2)),
        "one-point": np.array([[0.0, 0.1]]),
        "flat": np.column_stack([np.linspace(0, 0.4, 5), np.full(5, 0.2)]),
        "all-nan": np.column_stack([np.linspace(0, 0.3, 4), np.full(4, np.nan)]),
        "some-nan": np.array([[0.0, 0.05], [0.1, np.nan], [0.2, 0.2], [0.3, np.nan]]),
        "two-points": np.array([[0.0, 0.05], [0.1, 0.2]]),
    }[case]
    r = model.predict_peak([curve]).row(0)
    _check_defined(r)
    if case in ("empty", "one-point", "all-nan", "flat"):
        assert r["location_high"] - r["location_low"] >= 0.2, r  # little evidence: a wide interval


def test_flat_and_nan_prior_curves_do_not_break_fit():
    prior = [np.column_stack([np.linspace(0, 1, 6), np.zeros(6)]),  # OOD never moved
             np.column_stack([np.linspace(0, 1, 6), np.full(6, np.nan)]),
             np.array([[0.0, 0.1]])]
    model = OODPeakModel().fit(prior)
    assert model.n_curves_ == 3 and model.n_informative_ == 0
    _check_defined(model.predict_peak([np.array([[0.0, 0.0], [0.2, 0.1]])]).row(0))


def test_no_prior_curves_give_wider_intervals_than_a_good_prior():
    prior = [c for c, _ in synthetic_curves(20, seed=2, kind="noisy", n_points=21)]
    queries = [truncate(c, 0.3) for c, _ in synthetic_curves(10, seed=3, kind="noisy", n_points=21)]
    wide = OODPeakModel().fit([]).predict_peak(queries)
    narrow = OODPeakModel().fit(prior).predict_peak(queries)
    assert np.mean(wide.location_high - wide.location_low) > np.mean(narrow.location_high - narrow.location_low)
    assert np.mean(wide.behind_high - wide.behind_low) > np.mean(narrow.behind_high - narrow.behind_low)


def test_predictions_are_reproducible_and_use_the_given_grid(clean_model):
    curve, _ = synthetic_curve("rise-fall", peak=0.6, n_points=41)
    part = truncate(curve, 0.3)
    a, b = clean_model.predict_peak([part]).row(0), clean_model.predict_peak([part]).row(0)
    assert a == b
    coarse = clean_model.predict_peak([part], grid=[0.0, 0.3, 0.65, 1.0]).row(0)
    assert coarse["location"] in (0.65, 1.0) or coarse["location"] <= 0.3


def test_one_prediction_is_fast():
    model = OODPeakModel().fit([c for c, _ in synthetic_curves(30, seed=4, kind="noisy", n_points=21)])
    part = truncate(synthetic_curve("noisy", peak=0.4, n_points=21, seed=5)[0], 0.3)
    model.predict_peak([part])
    t = time.perf_counter()
    model.predict_peak([part])
    assert time.perf_counter() - t < 0.5  # 50 ms target, measured in benchmarks/bench_surrogates.py


def test_curve_formats_are_equivalent():
    arr, _ = synthetic_curve("noisy", peak=0.3, n_points=6, seed=0)
    frame = pl.DataFrame({"fraction": arr[:, 0], "ood": arr[:, 1], "id": arr[:, 2], "loss": arr[:, 3]})
    np.testing.assert_array_equal(as_curve(frame), as_curve(arr))
    np.testing.assert_array_equal(as_curve({"x": arr[:, 0], "ood": arr[:, 1]})[:, :2], arr[:, :2])
    np.testing.assert_array_equal(as_curve(arr[::-1])[:, 0], arr[:, 0])  # sorted by fraction
    with pytest.raises(ValueError, match="fraction"):
        as_curve(pl.DataFrame({"step": [1], "ood": [0.1]}))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_curve([[0.0, 0.1], [1.5, 0.2]])


def test_sft_curve_takes_the_point_before_sft_and_rescales_compute():
    frame = pl.DataFrame({
        "stage": ["start", "cpt", "cpt", "sft", "sft", "sft", "rl"],
        "compute": [0.0, 10.0, 20.0, 30.0, 40.0, 60.0, 80.0],
        "id": [0.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5], "ood": [0.0, 0.0, 0.05, 0.2, 0.15, 0.1, 0.3],
        "loss": [None, 2.0, 1.8, 1.2, 1.0, 0.9, None],
    })
    c = sft_curve(frame)
    assert c["fraction"].to_list() == pytest.approx([0.0, 0.25, 0.5, 1.0])
    assert c["ood"].to_list() == [0.05, 0.2, 0.15, 0.1]
    assert np.isnan(c["loss"][0]) and c["loss"][1] == 1.2  # the CPT loss is another objective
    assert peak_of(c) == {"fraction": 0.25, "value": 0.2, "censored": False, "flat": False}
    assert sft_curve(frame.filter(pl.col("stage") != "sft")) is None


def test_peak_of_uses_the_first_of_ties_and_flags_censoring():
    assert peak_of([[0, 0.1], [0.5, 0.3], [1, 0.3]])["fraction"] == 0.5
    assert peak_of([[0, 0.1], [0.5, 0.2], [1, 0.3]])["censored"]
    assert peak_of([[0, 0.0], [1, 0.0]])["flat"] and peak_of(np.empty((0, 2))) is None


def test_future_grid_continues_the_observed_spacing():
    np.testing.assert_allclose(future_grid(np.array([[0.0], [0.25]])), [0.5, 0.75, 1.0])
    assert len(future_grid(np.array([[0.0], [1.0]]))) == 0
    assert len(future_grid(np.array([[0.0]]), default_points=5)) == 4


def test_score_resolution_detects_test_set_size():
    assert score_resolution(np.arange(1, 20) / 64) == pytest.approx(1 / 64)
    assert score_resolution(np.random.default_rng(0).uniform(0.01, 0.99, 17)) is None  # partial credit
    assert score_resolution(np.array([0.25, 0.5])) is None  # too few values to tell


def test_handover_policy_learns_from_earlier_curves():
    """With earlier curves that peak at 30%, the policy hands over soon after a curve's peak; with none
    it waits for more evidence (wide intervals) on the same observed part."""
    from ptplan.surrogates import peak_handover

    prior = _clean_prior([0.28, 0.3, 0.3, 0.32, 0.35], n_points=21)
    curve = synthetic_curve("rise-fall", peak=0.3, n_points=21)[0]

    def first_handover(policy):
        c = as_curve(curve)
        for k in range(3, len(c) + 1):
            if policy(c[:k].tolist(), 20) is not None:
                return float(c[k - 1, 0])
        return None

    fitted = first_handover(peak_handover(0.8, curves=prior))
    assert fitted is not None and 0.3 <= fitted <= 0.6
    broad = first_handover(peak_handover(0.8))
    assert broad is None or broad >= fitted


def test_settings_weighted_prior_follows_curves_of_similar_settings():
    # Early-peaking curves were run at a high learning rate (feature 1), late ones at a low one (0).
    early = _clean_prior([0.15, 0.18, 0.2, 0.22])
    late = _clean_prior([0.6, 0.65, 0.7, 0.75])
    feats = [[1.0]] * 4 + [[0.0]] * 4
    model = OODPeakModel(bandwidth=0.5).fit(early + late, features=feats)
    query = truncate(synthetic_curve("rise-fall", peak=0.5, n_points=41)[0], 0.0)  # only the SFT start seen
    hi = model.predict_peak([query], features=[[1.0]]).row(0)["location"]
    lo = model.predict_peak([query], features=[[0.0]]).row(0)["location"]
    flat = model.predict_peak([query]).row(0)["location"]  # no query features: every prior curve weighs the same
    assert hi < flat < lo and lo - hi > 0.3
    with pytest.raises(ValueError, match="bandwidth"):
        OODPeakModel(bandwidth=0).fit(early)
