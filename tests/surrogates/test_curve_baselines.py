"""The curve baselines: best-so-far, loss-based early stopping, monotone power law."""

import numpy as np
import pytest

from ptplan.surrogates import BestSoFar, LossPatience, PowerLaw
from ptplan.testing import synthetic_curves

NAN = np.nan


def _one(model, curve):
    return model.fit([]).predict_peak([np.asarray(curve, dtype=float)]).row(0)


def test_best_so_far_takes_the_first_best_observed_point():
    r = _one(BestSoFar(), [[0.0, 0.1], [0.1, 0.4], [0.2, 0.4], [0.3, 0.2]])
    assert (r["location"], r["value"], r["behind"]) == (0.1, 0.4, 1.0)
    assert (r["location_low"], r["location_high"]) == (0.0, 1.0)  # no prior curves: no calibrated width


def test_loss_patience_stops_at_the_best_loss_or_runs_to_the_end():
    rising = [[0.0, 0.1, NAN, NAN], [0.1, 0.2, NAN, 2.0], [0.2, 0.3, NAN, 1.5], [0.3, 0.35, NAN, 1.2]]
    r = _one(LossPatience(patience=2), rising)
    assert (r["location"], r["behind"]) == (1.0, 0.0)
    stalled = rising + [[0.4, 0.3, NAN, 1.3], [0.5, 0.25, NAN, 1.25]]
    r = _one(LossPatience(patience=2), stalled)
    assert (r["location"], r["value"], r["behind"]) == (0.3, 0.35, 1.0)
    assert _one(LossPatience(), [[0.0, 0.1], [0.1, 0.2]])["location"] == 1.0  # no loss recorded


def test_power_law_extrapolates_a_monotone_rise_to_the_end():
    x = np.linspace(0.05, 0.5, 10)
    y = 0.6 - 0.1 * x ** -0.5
    r = _one(PowerLaw(), np.column_stack([x, y]))
    assert r["location"] == 1.0 and r["behind"] == 0.0
    assert r["value"] == pytest.approx(0.5, abs=0.01)
    falling = _one(PowerLaw(), [[0.1, 0.5], [0.2, 0.4], [0.3, 0.3]])  # b >= 0: a fall fits as flat
    assert falling["value"] == pytest.approx(0.4, abs=1e-9)


@pytest.mark.parametrize("cls", [BestSoFar, LossPatience, PowerLaw])
def test_intervals_are_calibrated_on_prior_curves(cls):
    prior = [c for c, _ in synthetic_curves(12, seed=0, kind="noisy", n_points=11)]
    model = cls().fit(prior)
    cal = model.calibration_
    assert len(cal["f"]) == len(cal["location"]) >= 12 and all(0 <= e <= 1 for e in cal["location"])
    part = prior[0][prior[0][:, 0] <= 0.3 + 1e-9]
    r = model.predict_peak([part]).row(0)
    assert 0 <= r["location_low"] <= r["location"] <= r["location_high"] <= 1
