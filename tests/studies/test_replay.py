"""Replay of search strategies against a recorded grid (issue 6): a strategy sees only what it paid
for, the ledger charges what ran (less with checkpoint reuse, only the streamed part when pruned),
replaying the grid order reproduces the table, and the metrics are right on hand-made examples.
All on small SYNTHETIC tables with the recorded schema."""

import copy
import math

import pytest

from ptplan.studies import StudyPlan
from ptplan.studies._prune import pareto_points
from ptplan.testing.replay import (STRATEGIES, GridOracle, GridOrder, ReplayLedger, Observation, Strategy, grid_truth,
                             heuristic_params, hypervolume, replay, score, synthetic_grid)

from conftest import MICRO

SEARCH = {"allocation.shares.sft_of_rest": {"choices": [0.25, 0.5, 0.75]}, "allocation.sft.rank": {"choices": [0, 4]},
          "allocation.rl.rank": {"choices": [4, 16]}, "allocation.sft.lr": {"choices": [1.0e-4, 1.0e-3]}}
P_SHARE, P_SFT, P_RL, P_LR = SEARCH


def make_plan(**study):
    data = copy.deepcopy(MICRO)
    data["budget"] = {"total": 1.2e12, "unit": "flops"}
    data["allocation"]["shares"] = {"cpt": 0.3, "sft": 0.35, "rl": 0.35}
    data["allocation"]["sft"]["lr"] = 1.0e-4
    data["eval"] = {"points": {"cpt": 2, "sft": 4, "rl": 2}, "batch_size": 16}
    data["study"] = {"sampler": "surrogate", "objective": {"kind": "multi", "pruner": "dominated"},
                     "search": copy.deepcopy(SEARCH), **study}
    return StudyPlan.from_mapping(data)


@pytest.fixture(scope="module")
def plan():
    return make_plan()


@pytest.fixture(scope="module")
def table(plan):
    """24 cells, every OOD distinct so that a leaked value can be traced to its cell."""
    rows, curves = synthetic_grid(plan, suites=("transcriptomics",), seeds=(0,), noise=0.02, rng_seed=1)
    assert len({r["ood"] for r in rows}) == len(rows) == 24
    return rows, curves


def key(params):
    return tuple(sorted((k, round(v, 12) if isinstance(v, float) else v) for k, v in params.items()))


def cell_params(row):
    return {k[len("param."):]: v for k, v in row.items() if k.startswith("param.")}


class Spy(Strategy):
    """Wraps a strategy and keeps every value that reaches it."""

    def __init__(self, inner):
        self.inner, self.reuse, self.seen, self.scores, self.observations = inner, inner.reuse, [], [], []

    def ask(self):
        return self.inner.ask()

    def on_point(self, point):
        self.seen += [point.id, point.ood]
        self.scores.append(0.5 * point.id + 0.5 * point.ood)  # the weighted score a pruner is fed
        return self.inner.on_point(point)

    def tell(self, obs):
        self.observations.append(obs)
        self.seen += [v for v in (obs.id, obs.ood) if v is not None]
        self.inner.tell(obs)


@pytest.mark.parametrize("name", ["random", "tpe+median", "ptplan"])
def test_a_strategy_sees_only_the_cells_it_paid_for(plan, table, name):
    rows, curves = table
    spy = Spy(STRATEGIES[name](plan, 3))
    oracle = GridOracle(rows, curves, reuse=spy.reuse)
    ledger = replay(spy, oracle, cap=math.inf, max_trials=8)
    assert len(ledger.entries) == len(spy.observations) == 8
    paid = {key(o.params) for o in spy.observations}
    assert len(paid) < len(rows)  # some cells were never run ...
    by_cell = {key(cell_params(r)): r for r in rows}
    allowed = set()
    for k in paid:
        number = by_cell[k]["number"]
        allowed |= {by_cell[k]["id"], by_cell[k]["ood"]}
        allowed |= {v for c in curves if c["number"] == number for v in (c["id"], c["ood"])}
    assert set(spy.seen) <= allowed  # ... and no value of theirs reached the strategy
    for unpaid in set(by_cell) - paid:
        assert by_cell[unpaid]["ood"] not in spy.seen
    completed = {key(o.params) for o in spy.observations if o.state == "COMPLETE"}
    pruned = {key(o.params) for o in spy.observations if o.state == "PRUNED"}
    assert pruned or name == "random"
    for k in pruned - completed:  # a pruned trial's final score stays unknown
        assert by_cell[k]["ood"] not in spy.seen
    # the strategy holds no way to the oracle or its table
    assert all(v is not oracle and v is not oracle.ledger for v in vars(spy.inner).values())
    if hasattr(spy.inner, "study"):  # what Optuna was told is what was paid for
        told = {v for t in spy.inner.study.trials for v in (t.values or [])}
        assert told <= allowed | set(spy.scores) | {o.weighted for o in spy.observations if o.id is not None}
    # every evaluation was charged, pruned ones up to the point they reached
    for obs, entry in zip(spy.observations, ledger.entries):
        assert entry.charged == obs.charged and obs.charged <= obs.compute + 1e-3
        if obs.state == "PRUNED":
            assert obs.compute == obs.points[-1].compute and obs.id is None and obs.ood is None


def test_the_oracle_keeps_its_table_private(table):
    rows, curves = table
    oracle = GridOracle(rows, curves)
    public = {a for a in dir(oracle) if not a.startswith("_")}
    assert public == {"reuse", "ledger", "n_cells", "exhausted", "evaluate", "run"}
    assert oracle.ledger.entries == [] and oracle.ledger.finals == [] and oracle.n_cells == 24


def test_replaying_the_grid_order_reproduces_the_table(plan, table):
    import polars as pl

    rows, curves = table
    oracle = GridOracle(pl.DataFrame(rows), pl.DataFrame(curves))  # as read from the Parquet files
    ledger = replay(GridOrder(plan, 0), oracle, cap=math.inf)
    assert oracle.exhausted and len(ledger.entries) == 24
    assert sorted(ledger.finals) == sorted((r["id"], r["ood"]) for r in rows)
    assert ledger.compute == pytest.approx(sum(r["spent"] for r in rows), rel=1e-12)
    assert ledger.compute == pytest.approx(grid_truth(rows).compute, rel=1e-12)
    # the seed study's order: nested loops, first searched parameter outermost
    cells = plan.space.cells()
    assert [c[P_SHARE] for c in cells[:16:8]] == [0.25, 0.5] and cells[0][P_LR] != cells[1][P_LR]


def test_checkpoint_reuse_charges_a_shared_stage_once(table):
    rows, curves = table
    by = {key(cell_params(r)): r for r in rows}
    a = {P_SHARE: 0.5, P_SFT: 0, P_RL: 4, P_LR: 1e-4}
    b = {**a, P_RL: 16}  # same CPT and SFT
    c = {**a, P_SFT: 4}  # same CPT only
    ra, rb, rc = (by[key(p)] for p in (a, b, c))
    assert ra["key_sft"] == rb["key_sft"] != rc["key_sft"] and ra["key_cpt"] == rc["key_cpt"]
    plain = GridOracle(rows, curves)
    for p in (a, a, b, c):
        plain.evaluate(p)
    assert [e.charged for e in plain.ledger.entries] == [ra["spent"], ra["spent"], rb["spent"], rc["spent"]]
    oracle = GridOracle(rows, curves, reuse=True)
    got = [oracle.evaluate(p) for p in (a, a, b, c)]
    assert got[0].charged == pytest.approx(ra["spent"]) and got[0].reused == ()
    assert got[1].charged == pytest.approx(0.0, abs=1e-3) and got[1].reused == ("cpt", "sft", "rl")
    assert got[2].charged == pytest.approx(rb["spent_rl"]) and got[2].reused == ("cpt", "sft")
    assert got[3].charged == pytest.approx(rc["spent_sft"] + rc["spent_rl"]) and got[3].reused == ("cpt",)
    assert oracle.ledger.compute == pytest.approx(sum(o.charged for o in got))


def test_pruning_charges_only_the_streamed_part(table):
    rows, curves = table
    a = {P_SHARE: 0.75, P_SFT: 4, P_RL: 16, P_LR: 1e-3}
    for reuse in (False, True):
        oracle = GridOracle(rows, curves, reuse=reuse)
        streamed = []

        def stop_in_sft(point):
            streamed.append(point)
            return point.stage == "sft" and point.step == 20

        obs = oracle.run(a, stop_in_sft)
        assert obs.state == "PRUNED" and obs.points == tuple(streamed) and streamed[-1].stage == "sft"
        assert obs.charged == pytest.approx(streamed[-1].compute) == oracle.ledger.compute
        again = oracle.run(a, stop_in_sft)  # CPT finished in the first run: reusable, SFT was not
        cpt = next(r for r in rows if key(cell_params(r)) == key(a))["spent_cpt"]
        assert again.charged == pytest.approx(obs.charged - (cpt if reuse else 0.0))
        assert oracle.ledger.entries[-1].best_ood == -math.inf  # a pruned trial finds nothing


def test_nearest_cell_log_scale_for_lr_and_categories_exact():
    rows = [{"number": i, "state": "COMPLETE", "id": 0.1 * i, "ood": 0.1 * i, "spent": 1.0,
             "param.allocation.sft.lr": lr, "param.allocation.shares.sft_of_rest": share,
             "param.allocation.rl.rank": rk}
            for i, (lr, share, rk) in enumerate([(1e-4, 0.25, 4), (1e-3, 0.25, 4), (1e-4, 0.75, 4), (1e-3, 0.75, 16)])]
    oracle = GridOracle(rows)

    def nearest(**kw):
        obs = oracle.evaluate({f"allocation.{k.replace('__', '.')}": v for k, v in kw.items()})
        return obs.id / 0.1, obs.distance

    assert nearest(sft__lr=1e-3, shares__sft_of_rest=0.75, rl__rank=16) == (pytest.approx(3), 0.0)
    # 3e-4 is nearer 1e-4 than 1e-3 on the log scale (it is nearer 1e-3 on the linear one)
    assert nearest(sft__lr=3e-4, shares__sft_of_rest=0.25, rl__rank=4)[0] == pytest.approx(0)
    assert nearest(sft__lr=1e-4, shares__sft_of_rest=0.6, rl__rank=4)[0] == pytest.approx(2)
    # a rank is a category: an exact match beats any numeric closeness elsewhere
    assert nearest(sft__lr=1e-3, shares__sft_of_rest=0.25, rl__rank=16)[0] == pytest.approx(3)
    with pytest.raises(ValueError, match="one suite and seed"):
        GridOracle([{**rows[0], "suite": "a"}, {**rows[1], "suite": "b"}])


def obs(id_, ood, charged, state="COMPLETE"):
    done = state == "COMPLETE"
    return Observation({}, {}, state, id_ if done else None, ood if done else None, charged, charged, (), (), 0.0)


def test_metrics_on_a_hand_made_ledger():
    assert hypervolume([(0.5, 0.5)]) == pytest.approx(0.25)
    assert hypervolume([(1.0, 0.2), (0.2, 1.0), (0.1, 0.1)]) == pytest.approx(0.2 * 1.0 + 0.8 * 0.2)
    assert pareto_points([(1.0, 0.2), (0.2, 1.0), (0.1, 0.1)]) == [(0.2, 1.0), (1.0, 0.2)]
    ledger = ReplayLedger()
    for o in (obs(0.9, 0.1, 10), obs(0, 0, 5, "PRUNED"), obs(0.2, 0.6, 10), obs(0.5, 0.7, 10)):
        ledger.add(o)
    assert [e.compute for e in ledger.entries] == [10, 15, 25, 35]
    assert [e.best_ood for e in ledger.entries] == [0.1, 0.1, 0.6, 0.7]
    assert ledger.compute_to("ood", 0.69) == 35 and ledger.compute_to("ood", 0.6) == 25
    assert ledger.compute_to("weighted", 0.5) == 10 and ledger.compute_to("ood", 0.8) is None
    assert ledger.hypervolume_at(24) == pytest.approx(0.09) and ledger.hypervolume_at(9) == 0.0
    assert ledger.hypervolume_at(35) == pytest.approx(0.5 * 0.7 + 0.4 * 0.1)
    rows = [{"number": i, "state": "COMPLETE", "id": a, "ood": b, "spent": 10.0, "param.x": i}
            for i, (a, b) in enumerate([(0.9, 0.1), (0.2, 0.6), (0.5, 0.71), (0.3, 0.3)])]
    truth = grid_truth(rows)
    assert truth.compute == 40 and truth.best_ood == 0.71 and truth.best_weighted == pytest.approx(0.605)
    got = score(ledger, truth, (0.5, 1.0))
    assert got.to_ood == 35 and got.to_weighted == 35  # 0.7 >= 0.71 - 0.01 and 0.6 >= 0.605 - 0.01
    assert truth.hypervolume == pytest.approx(0.5 * 0.71 + 0.4 * 0.1)
    assert got.hv == pytest.approx((0.09 / truth.hypervolume, 0.39 / truth.hypervolume))
    assert score(ledger, truth, (1.0,), tol=0.005).to_ood is None


def test_heuristic_is_brief_sft_large_rl_sft_rank_above_rl_rank():
    sp = make_plan()
    assert heuristic_params(sp) == {P_SHARE: 0.25, P_SFT: 0, P_RL: 4, P_LR: 1e-4}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_replays(plan, table, name):
    rows, curves = table
    strategy = STRATEGIES[name](plan, 0)
    ledger = replay(strategy, GridOracle(rows, curves, reuse=strategy.reuse), cap=math.inf, max_trials=6)
    assert 1 <= len(ledger.entries) <= 6 and ledger.compute > 0


def test_a_failed_cell_is_charged_and_reveals_no_score():
    rows = [{"number": 0, "state": "COMPLETE", "id": 0.4, "ood": 0.3, "spent": 2.0, "param.x": 0.0},
            {"number": 1, "state": "FAIL", "id": None, "ood": None, "spent": 1.0, "param.x": 1.0}]
    oracle = GridOracle(rows)
    got = oracle.evaluate({"x": 0.9})
    assert got.state == "FAIL" and got.id is None and got.charged == 1.0 and not oracle.exhausted
    assert oracle.evaluate({"x": 0.1}).ood == 0.3 and oracle.exhausted and oracle.ledger.compute == 3.0
    assert grid_truth(rows).compute == 3.0 and grid_truth(rows).n_cells == 2
