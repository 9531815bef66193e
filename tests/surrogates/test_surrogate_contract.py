"""The scikit-learn estimator contract, written once and run over every surrogate.

`parametrize_with_checks` feeds 2-D numeric arrays, which neither input type here is (a list of
curves; a polars trial table), so the checks that do not need such data run directly and the rest
(fit returns self, unfitted predict raises, clone keeps parameters) are spelled out.
"""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks as ec

from ptplan.surrogates import BestSoFar, LossPatience, NearestTrials, OODPeakModel, OutcomeModel, PowerLaw
from ptplan.testing import synthetic_curves, synthetic_table

CURVE_ESTIMATORS = [OODPeakModel(n_samples=300), BestSoFar(), LossPatience(patience=3), PowerLaw()]
TABLE_ESTIMATORS = [OutcomeModel(max_opt_samples=20), NearestTrials(k=3)]
ALL = CURVE_ESTIMATORS + TABLE_ESTIMATORS


def _ids(est):
    return type(est).__name__


@pytest.fixture(scope="module")
def curves():
    return [c for c, _ in synthetic_curves(5, seed=0, kind="noisy", n_points=11)]


@pytest.fixture(scope="module")
def table():
    return synthetic_table(12, seed=0)


def _data(est, curves, table):
    return table if isinstance(est, (OutcomeModel, NearestTrials)) else curves


@pytest.mark.parametrize("est", ALL, ids=_ids)
@pytest.mark.parametrize("check", [
    ec.check_no_attributes_set_in_init, ec.check_parameters_default_constructible, ec.check_get_params_invariance,
    ec.check_set_params, ec.check_estimator_cloneable, ec.check_estimator_repr,
    ec.check_do_not_raise_errors_in_init_or_set_params,
], ids=lambda c: c.__name__)
def test_sklearn_checks(est, check):
    check(type(est).__name__, est)


@pytest.mark.parametrize("est", ALL, ids=_ids)
def test_fit_returns_self_and_clone_is_unfitted(est, curves, table):
    fresh = clone(est)
    assert fresh.get_params() == est.get_params()
    assert fresh.fit(_data(est, curves, table)) is fresh
    assert [k for k in vars(fresh) if k.endswith("_") and not k.startswith("_")]  # learned state ends in `_`
    again = clone(fresh)
    assert not [k for k in vars(again) if k.endswith("_")]
    with pytest.raises(NotFittedError):
        again.predict(_data(est, curves, table))


@pytest.mark.parametrize("est", ALL, ids=_ids)
def test_unfitted_predict_raises_a_clear_error(est, curves, table):
    x = _data(est, curves, table)
    method = est.predict_outcome if isinstance(est, (OutcomeModel, NearestTrials)) else est.predict_peak
    with pytest.raises(NotFittedError, match=r"not fitted yet: call fit\("):
        method(x)


@pytest.mark.parametrize("est", CURVE_ESTIMATORS, ids=_ids)
def test_curve_estimators_share_one_interface(est, curves):
    model = clone(est).fit(curves)
    parts = [c[c[:, 0] <= 0.3 + 1e-9] for c in curves]
    pred = model.predict_peak(parts)
    frame = pred.to_frame()
    assert len(pred) == len(parts) and frame.height == len(parts)
    for what in ("location", "value", "behind"):
        lo, mid, hi = frame[f"{what}_low"], frame[what], frame[f"{what}_high"]
        assert ((lo <= mid + 1e-12) & (mid <= hi + 1e-12)).all(), what
        assert ((lo >= 0) & (hi <= 1)).all(), what
    np.testing.assert_allclose(model.predict(parts), pred.location)


@pytest.mark.parametrize("est,name", [
    (OODPeakModel(level=1.5), "level"), (BestSoFar(level=0.0), "level"), (LossPatience(patience=0), "patience"),
    (OODPeakModel(n_samples=1), "n_samples"), (OODPeakModel(noise=-1.0), "noise"),
    (OutcomeModel(level=2.0), "level"), (NearestTrials(k=0), "k"),
], ids=repr)
def test_bad_parameters_fail_in_fit_with_the_name(est, name, curves, table):
    with pytest.raises(ValueError, match=name):
        est.fit(_data(est, curves, table))
