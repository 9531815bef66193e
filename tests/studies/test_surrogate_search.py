"""Surrogate-guided search (`sampler: surrogate`) and multi-objective pruning (`pruner: dominated`).

The sampler runs on pure-Python objectives in in-memory Optuna studies; the pruner is checked as a
pure function and through the objective with a stand-in for training (no torch, a few seconds).
"""

import copy
import math
import time
import uuid

import numpy as np
import optuna
import pytest

from ptplan.stages import ConfigError, CurvePoint, Pruned, TrialFailed
from ptplan.studies import DominatedPruner, StudyPlan, SurrogateSampler, TrialObjective, open_session, work
from ptplan.studies._prune import checkpoint_history, pareto_points
from ptplan.studies._surrogate_sampler import default_n_startup, hypervolume_improvement
from ptplan.studies._worker import failure_reason

from conftest import MICRO

optuna.logging.set_verbosity(optuna.logging.WARNING)
SHARES = {"allocation.shares.cpt": {"low": 0.0, "high": 0.5},
          "allocation.shares.sft_of_rest": {"low": 0.0, "high": 1.0}}
RANKS = {"allocation.sft.rank": [16, 64, 256], "allocation.rl.rank": [4, 16, 64]}


def make_plan(kind="weighted", search=None, **study):
    data = copy.deepcopy(MICRO)
    data["study"] = {"sampler": "surrogate", "objective": {"kind": kind}, "search": search or SHARES, **study}
    return StudyPlan.from_mapping(data)


def smooth(sp, params):
    """A known smooth weighted score of the shares, peaking at CPT 0.3, SFT 0.2 (RL 0.5)."""
    s = sp.space.shares_for(params)
    return math.exp(-((s["cpt"] - 0.3) ** 2 + (s["sft"] - 0.2) ** 2) / 0.02)


def trade_off(sp, params):
    """(ID, OOD) with a curved trade-off: ID grows with SFT, OOD with RL, both want some CPT."""
    s = sp.space.shares_for(params)
    cpt = math.exp(-(s["cpt"] - 0.25) ** 2 / 0.02)
    return cpt * math.sqrt(s["sft"]), cpt * math.sqrt(s["rl"])


def hypervolume(points):
    front = sorted(pareto_points(points))  # ID ascending
    area, prev = 0.0, 0.0
    for x, y in front:
        area += (x - prev) * y
        prev = x
    return area


def run(sampler, objective, n, directions=("maximize",), catch=()):
    study = optuna.create_study(directions=list(directions), sampler=sampler)
    study.optimize(objective, n_trials=n, catch=catch)
    return study


# -- the sampler -----------------------------------------------------------------------------------
def test_beats_random_search_on_a_smooth_weighted_objective():
    sp = make_plan()
    n, seeds = 20, range(5)
    regret = {}
    for name in ("surrogate", "random"):
        best = []
        for seed in seeds:
            sampler = SurrogateSampler(sp, seed=seed) if name == "surrogate" else optuna.samplers.RandomSampler(seed)
            best.append(run(sampler, lambda t: smooth(sp, sp.space.suggest(t)), n).best_value)
        regret[name] = 1.0 - np.array(best)
    # same startup (the surrogate's first trials are the random sampler's), then the model must pay off
    assert regret["surrogate"].mean() <= 0.25 * regret["random"].mean(), regret
    assert (regret["surrogate"] <= regret["random"] + 0.02).sum() >= 4, regret


def test_improves_the_pareto_front_over_random_search():
    sp = make_plan("multi")
    gains = []
    for seed in range(3):
        hv = {}
        for name in ("surrogate", "random"):
            sampler = SurrogateSampler(sp, seed=seed) if name == "surrogate" else optuna.samplers.RandomSampler(seed)
            study = run(sampler, lambda t: trade_off(sp, sp.space.suggest(t)), 16, ("maximize", "maximize"))
            hv[name] = hypervolume([t.values for t in study.trials])
        gains.append(hv["surrogate"] - hv["random"])
    assert min(gains) > 0.02, gains  # a larger dominated area on every seed


def test_startup_trials_are_the_seeded_random_samplers_and_the_model_takes_over_after():
    sp = make_plan(trials=20)
    assert default_n_startup(sp) == 4
    assert default_n_startup(make_plan(trials=200)) == 10 and default_n_startup(make_plan(trials=3)) == 4
    sampler = SurrogateSampler(sp, seed=7)
    objective = lambda t: smooth(sp, sp.space.suggest(t))  # noqa: E731
    ours = run(sampler, objective, sampler.n_startup)
    assert sampler.last_proposal is None
    theirs = run(optuna.samplers.RandomSampler(seed=7), objective, sampler.n_startup)
    assert [t.params for t in ours.trials] == [t.params for t in theirs.trials]
    ours.optimize(objective, n_trials=1)
    assert sampler.last_proposal is not None and sampler.last_proposal["trial"] == sampler.n_startup


def test_same_seed_same_proposals():
    sp = make_plan("multi", search={**SHARES, "allocation.sft.rank": [16, 64], "allocation.sft.lr": {
        "low": 1e-4, "high": 3e-3, "log": True}})

    def params(seed):
        study = run(SurrogateSampler(sp, seed=seed, n_startup=3), lambda t: trade_off(sp, sp.space.suggest(t)), 8,
                    ("maximize", "maximize"))
        return [t.params for t in study.trials]

    first = params(3)
    assert first == params(3) and first != params(4)
    for p in first:  # every proposal lies inside the search space
        assert 0.0 <= p["allocation.shares.cpt"] <= 0.5 and 1e-4 <= p["allocation.sft.lr"] <= 3e-3
        assert p["allocation.sft.rank"] in (16, 64)


def test_zero_one_two_complete_trials_and_failed_trials():
    sp = make_plan()
    sampler = SurrogateSampler(sp, seed=0, n_startup=0)  # the model still waits for 3 COMPLETE trials
    study = optuna.create_study(direction="maximize", sampler=sampler)
    calls = []

    def flaky(t):
        calls.append(t.number)
        if t.number % 2 == 1:
            raise ValueError("diverged")
        return smooth(sp, sp.space.suggest(t))

    for k in range(3):  # 0, 1, 2 COMPLETE: random proposals, no model
        assert sampler.propose(study.get_trials(deepcopy=False), study, 99) == {}
        study.optimize(flaky, n_trials=2, catch=(ValueError,))
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 3 and sampler.last_proposal is None
    study.optimize(flaky, n_trials=1, catch=(ValueError,))
    assert sampler.last_proposal is not None  # failed trials are ignored, not fatal
    assert study.trials[-1].state.name == "COMPLETE"


def test_finite_space_is_scored_exhaustively_and_never_repeats_or_copies_a_running_trial():
    sp = make_plan(search=RANKS)

    def score(p):
        return 1.0 / (1 + abs(math.log2(p["allocation.sft.rank"] / 64)) + abs(math.log2(p["allocation.rl.rank"] / 16)))

    sampler = SurrogateSampler(sp, seed=1, n_startup=3)
    study = run(sampler, lambda t: score(sp.space.suggest(t)), 9)
    combos = [tuple(t.params.values()) for t in study.trials]
    for i in range(3, 9):  # random startup may repeat a cell; the model proposes only unseen cells
        assert combos[i] not in combos[:i] or len(set(combos[:i])) == 9, combos
    assert sampler.last_proposal["candidates"] == 9 - len(set(combos[:8]))

    study = run(SurrogateSampler(sp, seed=1, n_startup=3), lambda t: score(sp.space.suggest(t)), 4)
    trials = study.get_trials(deepcopy=False)
    best = SurrogateSampler(sp, seed=1, n_startup=3).propose(trials, study, 10)
    assert best and tuple(best.values()) not in {tuple(t.params.values()) for t in trials}
    dists = trials[0].distributions
    running = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=best, distributions=dists)
    running.number = 9
    other = SurrogateSampler(sp, seed=1, n_startup=3).propose([*trials, running], study, 10)
    assert other and other != best


def test_a_proposal_with_100_complete_trials_is_fast():
    sp = make_plan("multi", search={**SHARES, "allocation.sft.rank": [16, 64, 256]})
    rng = np.random.default_rng(0)
    dists = {"allocation.shares.cpt": optuna.distributions.FloatDistribution(0.0, 0.5),
             "allocation.shares.sft_of_rest": optuna.distributions.FloatDistribution(0.0, 1.0),
             "allocation.sft.rank": optuna.distributions.CategoricalDistribution([16, 64, 256])}
    study = optuna.create_study(directions=["maximize", "maximize"])
    for _ in range(100):
        p = {"allocation.shares.cpt": float(rng.uniform(0, 0.5)), "allocation.shares.sft_of_rest":
             float(rng.uniform(0, 1)), "allocation.sft.rank": int(rng.choice([16, 64, 256]))}
        study.add_trial(optuna.trial.create_trial(params=p, distributions=dists, values=list(trade_off(sp, p))))
    sampler = SurrogateSampler(sp, seed=0)
    sampler.propose(study.get_trials(deepcopy=False), study, 100)  # warm imports
    started = time.perf_counter()
    proposal = sampler.propose(study.get_trials(deepcopy=False), study, 100)
    assert time.perf_counter() - started < 2.0
    assert set(proposal) == set(dists)


def test_hypervolume_improvement_of_a_point_over_a_staircase():
    front = np.array([[0.2, 0.8], [0.5, 0.5], [0.8, 0.2]])  # ID ascending
    hvi = hypervolume_improvement(np.array([[0.6, 0.6], [0.1, 0.1], [1.0, 0.0], [0.3, 0.3]]), front)
    assert hvi[0] == pytest.approx(0.3 * 0.1 + 0.1 * 0.4) and hvi[1:].tolist() == [0.0, 0.0, 0.0]
    assert hypervolume_improvement(np.array([[0.5, 0.5]]), np.zeros((0, 2)))[0] == pytest.approx(0.25)


# -- the pruner ------------------------------------------------------------------------------------
def ramp_history(finals, steps=10):
    """COMPLETE trials whose scores rose linearly (with small wobble) to their final (ID, OOD)."""
    rng = np.random.default_rng(0)
    out = []
    for fid, food in finals:
        cps = {str(k): [fid * k / steps + rng.normal(0, 0.01), food * k / steps + rng.normal(0, 0.01)]
               for k in range(1, steps + 1)}
        out.append({"checkpoints": cps, "final": (fid, food)})
    return out


FINALS = [(0.9, 0.3), (0.7, 0.6), (0.4, 0.8), (0.6, 0.5), (0.5, 0.4), (0.8, 0.2)]


def test_prunes_a_clearly_dominated_trajectory_and_says_why():
    history = ramp_history(FINALS)
    front = pareto_points([h["final"] for h in history])
    prune, reason = DominatedPruner().should_prune(0.4, (0.04, 0.04), history, front)
    assert prune, reason
    assert "dominated by front point" in reason and "ID <=" in reason and "OOD <=" in reason


def test_does_not_prune_a_trajectory_that_could_still_reach_the_front():
    history = ramp_history(FINALS)
    front = pareto_points([h["final"] for h in history])
    pruner = DominatedPruner()
    for current in [(0.36, 0.12), (0.16, 0.32), (0.3, 0.3), (0.38, 0.38)]:  # on course for the front or beyond
        prune, reason = pruner.should_prune(0.4, current, history, front)
        assert not prune, (current, reason)
    assert "not dominated" in reason


def test_nothing_is_pruned_where_every_trial_scored_the_same():
    """A shared prefix (one CPT checkpoint reused by every trial) says nothing about a trial's final."""
    history = ramp_history(FINALS + [(0.2, 0.2)] * 3)
    for h in history:
        h["checkpoints"]["4"] = [0.1, 0.3]  # every trial was still in the shared CPT stage at 40%
    front = pareto_points([h["final"] for h in history])
    prune, reason = DominatedPruner().should_prune(0.4, (0.1, 0.3), history, front)
    assert not prune and "all equal" in reason
    assert DominatedPruner().should_prune(0.5, (0.05, 0.05), history, front)[0]  # past the prefix: evidence


def test_nothing_is_pruned_before_n_startup_trials_or_min_step():
    history = ramp_history(FINALS)
    front = pareto_points([h["final"] for h in history])
    pruner = DominatedPruner()
    assert pruner.should_prune(0.4, (0.0, 0.0), history[:4], front)[0] is False
    assert "fewer than 5" in pruner.should_prune(0.4, (0.0, 0.0), history[:4], front)[1]
    assert pruner.should_prune(0.2, (0.0, 0.0), history, front)[0] is False
    assert pruner.should_prune(1.0, (0.0, 0.0), history, front)[0] is False
    without = [{"checkpoints": {}, "final": h["final"]} for h in history]  # trials that predate checkpoints
    assert pruner.should_prune(0.5, (0.0, 0.0), without, front)[0] is False
    with pytest.raises(ValueError, match="min_step"):
        DominatedPruner(min_step=0)


# -- configuration ---------------------------------------------------------------------------------
@pytest.mark.parametrize("study, field, words", [
    ({"objective": {"kind": "weighted", "pruner": "dominated"}}, "study.objective.pruner", "kind: multi"),
    ({"sampler": "bayes"}, "study.sampler", "surrogate"),
])
def test_bad_settings_name_the_field_and_value(study, field, words):
    with pytest.raises(ConfigError) as err:
        StudyPlan.from_mapping({**copy.deepcopy(MICRO), "study": study})
    value = study.get("sampler") or study["objective"]["pruner"]
    assert f"`{field}`" in str(err.value) and words in str(err.value) and repr(value) in str(err.value), str(err.value)


def test_multi_objective_takes_the_dominated_pruner_and_the_surrogate_sampler():
    sp = make_plan("multi", objective={"kind": "multi", "pruner": "dominated"})
    assert sp.study.sampler == "surrogate" and sp.study.objective.pruner == "dominated"


# -- through the objective (a stand-in for training) -------------------------------------------------
class RampRunner:
    """Stands in for stages.run_trial: scores rise linearly to `finals[i]` over ten evaluation points;
    an exception from `on_point` is wrapped as run_trial wraps it."""

    def __init__(self, finals):
        self.finals, self.calls = finals, 0

    def __call__(self, config, out, store, on_point=None, on_progress=None):
        fid, food = self.finals[self.calls % len(self.finals)]
        self.calls += 1
        out.mkdir(parents=True, exist_ok=True)
        total = config.budget.total
        result = {"status": "complete", "allocation": {"shares": config.allocation.shares},
                  "ledger": {"total": total, "unit": config.budget.unit, "stages": {}, "spent": {}},
                  "final": {"id": fid, "ood": food}, "ood_peak": None, "curves": "curves.parquet"}
        try:
            on_point(CurvePoint("start", 0, 0.0, 0, 0, 0.0, 0.0, None, None))
            for k in range(1, 11):
                on_point(CurvePoint("sft", k, total * k / 10, 0, 0, fid * k / 10, food * k / 10, 1.0, None))
        except Pruned as err:  # run_trial records the failure with the exception's reason
            raise TrialFailed(err.reason, str(err), {**result, "status": "failed", "final": None}) from err
        return result


def session_plan(tmp_path, sampler="random", kind="multi", pruner="dominated"):
    data = copy.deepcopy(MICRO)
    data["study"] = {"dir": str(tmp_path / "run"), "storage": f"sqlite:///{tmp_path}/s.db",
                     "name": f"t-{uuid.uuid4().hex[:8]}", "sampler": sampler,
                     "objective": {"kind": kind, "pruner": pruner}}
    return StudyPlan.from_mapping(data)


def test_dominated_pruner_stops_a_bad_trial_and_every_complete_trial_keeps_its_checkpoints(tmp_path):
    sp = session_plan(tmp_path)
    session = open_session(sp)
    runner = RampRunner(FINALS[:5] + [(0.05, 0.05)])
    work(session, 6, echo=lambda s: None, objective=TrialObjective(sp, None, lambda s: None, runner=runner))
    trials = session.admin.get_trials()
    assert [t.state.name for t in trials][:6] == ["COMPLETE"] * 5 + ["PRUNED"]
    assert failure_reason(trials[5]) == "pruned"
    message = trials[5].user_attrs["failure"]["message"]
    assert "pruned at 30% of the budget" in message and "dominated by front point" in message
    cps = trials[0].user_attrs["checkpoints"]
    assert sorted(cps, key=int) == [str(k) for k in range(1, 11)]
    assert cps["10"] == pytest.approx(list(FINALS[0])) and cps["5"] == pytest.approx([0.45, 0.15])
    assert "checkpoints" not in trials[5].user_attrs
    history, front = checkpoint_history(trials[:5])
    assert len(history) == 5 and (0.9, 0.3) in front and (0.6, 0.5) not in front


def test_surrogate_sampler_runs_a_study_through_the_worker_loop(tmp_path):
    sp = session_plan(tmp_path, sampler="surrogate", kind="weighted", pruner="none")
    session = open_session(sp)
    assert isinstance(session.study.sampler.base, SurrogateSampler)  # inside the duplicate filter
    runner = RampRunner([(0.2 + 0.1 * i, 0.6 - 0.05 * i) for i in range(7)])
    work(session, 7, echo=lambda s: None, objective=TrialObjective(sp, None, lambda s: None, runner=runner))
    trials = session.admin.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 7
    assert all(sorted(t.user_attrs["checkpoints"], key=int)[-1] == "10" for t in trials)
