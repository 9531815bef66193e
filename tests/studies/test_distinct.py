"""No allocation proposed twice by accident: per-process streams and the duplicate filter (fast, stand-in
training). The same with real processes and real training is in test_faults.py."""

import pytest

from ptplan.studies import open_session, work
from ptplan.studies._distinct import PROPOSAL_ATTR, DistinctSampler, params_key

from test_workers import FakeRunner, make_plan, objective

SAMPLERS = ["random", "tpe", "surrogate", "gp", "nsga2"]
FINITE = {"allocation.shares.cpt": {"choices": [0.2, 0.3]}, "allocation.shares.sft_of_rest": {"choices": [0.25, 0.5]}}


def _keys(study):
    names = sorted(study.get_trials(deepcopy=False)[0].params)
    return [params_key(t.params, names) for t in study.get_trials(deepcopy=False)]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_reopened_session_proposes_a_new_allocation(tmp_path, sampler):
    """Three sessions in a row (a rerun to extend the study, or the run after a crash), one trial each."""
    url = f"journal://{tmp_path}/journal.log"
    sp = make_plan(tmp_path, url, study={"sampler": sampler})
    for n in (1, 2, 3):
        session = open_session(sp)
        assert isinstance(session.study.sampler, DistinctSampler)
        work(session, n, echo=lambda s: None, objective=objective(sp, FakeRunner()))
    keys = _keys(session.admin)
    assert len(keys) == 3 and len(set(keys)) == 3


@pytest.mark.parametrize("sampler", ["random", "tpe", "surrogate"])
def test_a_finite_space_is_covered_before_any_repeat(tmp_path, sampler):
    sp = make_plan(tmp_path, f"sqlite:///{tmp_path}/study.db", study={"sampler": sampler, "search": FINITE})
    session = open_session(sp)
    work(session, 4, echo=lambda s: None, objective=objective(sp, FakeRunner()))
    assert len(set(_keys(session.admin))) == 4  # every point once
    work(session, 5, echo=lambda s: None, objective=objective(sp, FakeRunner()))
    assert len(_keys(session.admin)) == 5 and len(set(_keys(session.admin))) == 4  # exhausted: a repeat is allowed
    assert all(PROPOSAL_ATTR in t.system_attrs for t in session.admin.get_trials(deepcopy=False))


def test_a_proposal_not_yet_started_is_taken(tmp_path):
    """A trial another process has just proposed (RUNNING, no params yet) is not proposed again."""
    import optuna

    sp = make_plan(tmp_path, f"sqlite:///{tmp_path}/study.db", study={"sampler": "random", "search": FINITE})
    session = open_session(sp)
    other = session.admin.ask()  # a RUNNING trial holding only a proposal
    session.admin._storage.set_trial_system_attr(other._trial_id, PROPOSAL_ATTR,
                                                 {"allocation.shares.cpt": 0.2, "allocation.shares.sft_of_rest": 0.25})
    for _ in range(3):
        trial = session.study.ask()
        sp.space.suggest(trial)
        session.study.tell(trial, (0.1, 0.1))
    keys = [params_key(t.params, sorted(FINITE)) for t in session.admin.get_trials(states=(
        optuna.trial.TrialState.COMPLETE,))]
    assert len(set(keys)) == 3 and (0.2, 0.25) not in keys


def test_enqueued_cells_keep_their_parameters(tmp_path):
    """A retry (an enqueued allocation) is a repeat on purpose: the filter leaves it alone."""
    sp = make_plan(tmp_path, f"sqlite:///{tmp_path}/study.db", study={"sampler": "random", "search": FINITE})
    session = open_session(sp)
    work(session, 1, echo=lambda s: None, objective=objective(sp, FakeRunner()))
    first = session.admin.get_trials()[0].params
    session.admin.enqueue_trial(first)
    work(session, 2, echo=lambda s: None, objective=objective(sp, FakeRunner()))
    assert session.admin.get_trials()[1].params == first
