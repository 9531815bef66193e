"""The worker loop and its recovery, on every storage kind, with a stand-in for training (fast).

Real training through the same loop is in test_study_runs.py.
"""

import copy
import os
import subprocess
import sys
import time
import uuid

import pytest

from ptplan.stages import TrialFailed
from ptplan.studies import StudyError, StudyPlan, TrialObjective, open_session, recover, reap_lost, work
from ptplan.studies._worker import failure_reason, retry_history

from conftest import MICRO

PG_URL = os.environ.get("PTPLAN_TEST_POSTGRES_URL")
STORAGES = ["sqlite", "journal", pytest.param("postgresql", marks=pytest.mark.postgres)]


CREATED: list[tuple[str, str]] = []  # (storage url, study name) of PostgreSQL studies, deleted after each test


@pytest.fixture(params=STORAGES)
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/study.db"
    elif request.param == "journal":
        yield f"journal://{tmp_path}/journal.log"
    else:
        if not PG_URL:
            pytest.skip("PostgreSQL storage tests need PTPLAN_TEST_POSTGRES_URL (.ci/run starts a server and sets it)")
        yield PG_URL
        import optuna

        from ptplan.studies._storage import sqlalchemy_url

        while CREATED:
            url, name = CREATED.pop()
            if url == PG_URL:
                try:
                    optuna.delete_study(study_name=name, storage=sqlalchemy_url(url))
                except KeyError:
                    pass


def make_plan(tmp_path, url, study=None, **top):
    data = copy.deepcopy(MICRO)
    data.update(top)
    data["study"] = {"dir": str(tmp_path / "run"), "storage": url, "name": f"t-{uuid.uuid4().hex[:8]}",
                     **(study or {})}
    sp = StudyPlan.from_mapping(data)
    CREATED.append((url, sp.name))
    return sp


def fake_result(config, status="complete"):
    shares = config.allocation.shares
    unit = config.budget.unit
    stages = {s: {"slice": config.budget.total * shares[s],
                  "spent": {"flops": 1e9 * shares[s], "tokens": 1.0, "examples": 1.0, "epochs": 10 * shares[s],
                            "seconds": 0.1, "steps": 1},
                  "eval": {}, "reused": s == "cpt"} for s in ("cpt", "sft", "rl")}
    return {"status": status, "allocation": {"shares": shares, "cpt": {"rank": 0}, "sft": {"rank": 0},
                                             "rl": {"rank": 4}},
            "ledger": {"total": config.budget.total, "unit": unit, "stages": stages, "spent": {unit: 10.0}},
            "final": {"id": shares["sft"], "ood": shares["rl"]} if status == "complete" else None,
            "ood_peak": {"fraction": 0.5, "value": 0.2, "censored": False, "compute": 1.0},
            "timings": {"total": 0.01}, "curves": "curves.parquet"}


class FakeRunner:
    """Stands in for stages.run_trial; `plan` maps call index -> 'ok' | a failure reason | 'interrupt'."""

    def __init__(self, plan=None, points=None):
        self.calls, self.plan, self.points = 0, plan or {}, points

    def __call__(self, config, out, store, on_point=None, on_progress=None):
        what = self.plan.get(self.calls, "ok")
        self.calls += 1
        out.mkdir(parents=True, exist_ok=True)
        if what == "interrupt":
            raise KeyboardInterrupt
        if what != "ok":
            raise TrialFailed(what, f"{what} in stage sft", fake_result(config, "failed"))
        if self.points and on_point:
            for p in self.points(config, self.calls - 1):
                on_point(p)
        return fake_result(config)


def objective(sp, runner, echo=lambda s: None):
    return TrialObjective(sp, None, echo, runner=runner)


def states(study):
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def test_runs_until_n_complete_in_total_not_n_more(tmp_path, storage_url):
    sp = make_plan(tmp_path, storage_url, {"sampler": "random"})
    session = open_session(sp)
    runner = FakeRunner()
    work(session, 3, objective=objective(sp, runner))
    assert states(session.admin) == ["COMPLETE"] * 3
    work(open_session(sp), 5, objective=objective(sp, runner))
    assert states(session.admin) == ["COMPLETE"] * 5 and runner.calls == 5
    work(open_session(sp), 5, objective=objective(sp, runner))
    assert runner.calls == 5  # reached: nothing runs
    t = session.admin.get_trials()[0]
    for key in ("allocation", "ledger", "final", "ood_peak", "curves", "compute_saved", "artifacts", "worker"):
        assert t.user_attrs.get(key) is not None, key
    assert t.values == [t.user_attrs["final"]["id"], t.user_attrs["final"]["ood"]]
    assert t.user_attrs["compute_saved"]["stages"] == ["cpt"]


def test_failed_trials_keep_their_reason_and_stop_at_max_failures(tmp_path, storage_url):
    sp = make_plan(tmp_path, storage_url, {"sampler": "random", "max_failures": 2})
    session = open_session(sp)
    result = work(session, 3, objective=objective(sp, FakeRunner({0: "diverged", 1: "oom", 2: "diverged"})))
    trials = session.admin.get_trials()
    assert [failure_reason(t) for t in trials] == ["diverged", "oom"]
    assert "failed" in result.stopped
    assert trials[0].user_attrs["ledger"] and trials[0].user_attrs["final"] is None


def test_interrupted_trial_is_marked_and_retried_once_on_the_next_run(tmp_path, storage_url):
    sp = make_plan(tmp_path, storage_url, {"sampler": "random"})
    session = open_session(sp)
    runner = FakeRunner({1: "interrupt"})
    with pytest.raises(KeyboardInterrupt):
        work(session, 3, objective=objective(sp, runner))
    trials = session.admin.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL"]
    assert failure_reason(trials[1]) == "interrupted"
    assert recover(session.admin, retries=2, echo=print) == 1
    assert recover(session.admin, retries=2, echo=print) == 0  # already queued
    work(open_session(sp), 3, objective=objective(sp, runner))
    trials = session.admin.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert retry_history(trials[2]) == [1] and trials[2].params == trials[1].params
    assert trials[2].user_attrs["failure"] is None and failure_reason(trials[2]) is None


def test_retries_are_bounded(tmp_path):
    sp = make_plan(tmp_path, f"journal://{tmp_path}/j.log", {"sampler": "random", "retries": 1})
    session = open_session(sp)
    runner = FakeRunner({0: "interrupt", 1: "interrupt"})
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            work(session, 1, objective=objective(sp, runner))
        recover(session.admin, retries=1, echo=print)
    trials = session.admin.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"] and retry_history(trials[1]) == [0]
    assert recover(session.admin, retries=1, echo=print) == 0


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_journal_lease_reaper_fails_dead_and_silent_trials_once(tmp_path):
    sp = make_plan(tmp_path, f"journal://{tmp_path}/j.log", {"sampler": "random", "heartbeat": {"interval": 1,
                                                                                                  "grace": 30}})
    session = open_session(sp)
    study = session.study
    dead, alive, silent = study.ask(), study.ask(), study.ask()
    for t in (dead, alive, silent):
        sp.space.suggest(t)
    from ptplan.studies._objective import HOST

    dead.set_user_attr("lease", {"trial": dead.number, "host": HOST, "pid": _dead_pid(), "time": time.time()})
    alive.set_user_attr("lease", {"trial": alive.number, "host": HOST, "pid": os.getppid(), "time": time.time()})
    silent.set_user_attr("lease", {"trial": silent.number, "host": "elsewhere", "pid": 1, "time": time.time() - 60})
    snapshot = session.admin.get_trials(deepcopy=False)
    assert reap_lost(session.admin, snapshot, 30, 2, print) == 2
    assert reap_lost(session.admin, snapshot, 30, 2, print) == 0  # a second worker's stale view: no duplicate
    trials = session.admin.get_trials()
    by_number = {t.number: t for t in trials}
    assert by_number[dead.number].state.name == "FAIL" and failure_reason(by_number[dead.number]) == "lost"
    assert by_number[silent.number].state.name == "FAIL"
    assert by_number[alive.number].state.name == "RUNNING"
    retries = [t for t in trials if t.state.name == "WAITING"]
    assert sorted(retry_history(t)[0] for t in retries) == sorted([dead.number, silent.number])
    assert {tuple(sorted(t.params.items())) for t in retries} == \
        {tuple(sorted(by_number[n].params.items())) for n in (dead.number, silent.number)}


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_rdb_heartbeat_fails_a_silent_trial_and_queues_its_allocation(tmp_path):
    import optuna

    sp = make_plan(tmp_path, f"sqlite:///{tmp_path}/s.db", {"sampler": "random",
                                                            "heartbeat": {"interval": 1, "grace": 2}})
    session = open_session(sp)
    trial = session.study.ask()
    sp.space.suggest(trial)
    session.storage.record_heartbeat(trial._trial_id)
    time.sleep(3.2)
    optuna.storages.fail_stale_trials(session.admin)
    trials = session.admin.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert failure_reason(trials[0]) == "lost" and retry_history(trials[1]) == [0]
    assert trials[1].params == trials[0].params


def test_grid_cells_are_queued_once_and_each_runs_once(tmp_path, storage_url):
    sp = make_plan(tmp_path, storage_url, {"sampler": "grid", "search": {
        "allocation.shares.sft_of_rest": [0.0, 0.5, 1.0], "allocation.rl.rank": [4, 8]}})
    session = open_session(sp)
    assert session.created and session.queued == 6
    again = open_session(sp)
    assert not again.created and again.queued == 0
    from ptplan.studies import ensure_grid_cells

    assert ensure_grid_cells(again.admin, sp) == 0
    result = work(again, sp.target(), objective=objective(sp, FakeRunner()))
    trials = session.admin.get_trials()
    assert states(session.admin) == ["COMPLETE"] * 6, result
    assert sorted(tuple(sorted(t.params.items())) for t in trials) == \
        sorted(tuple(sorted(c.items())) for c in sp.space.cells())


def test_grid_stops_when_every_cell_ran_even_if_one_failed(tmp_path):
    sp = make_plan(tmp_path, f"journal://{tmp_path}/j.log", {"sampler": "grid", "search": {
        "allocation.rl.rank": [4, 8, 16]}})
    result = work(open_session(sp), 3, objective=objective(sp, FakeRunner({1: "diverged"})))
    assert "grid done: 2 of 3" in result.stopped


def test_weighted_objective_reports_each_tenth_of_the_budget_and_prunes(tmp_path):
    from ptplan.stages import CurvePoint

    sp = make_plan(tmp_path, f"sqlite:///{tmp_path}/s.db", {
        "sampler": "random", "objective": {"kind": "weighted", "ood_weight": 0.75, "pruner": "median"}})

    def points(config, i):
        good = 0.9 if i < 3 else 0.0
        total = config.budget.total
        return [CurvePoint("start", 0, 0.0, 0, 0, 0.0, 0.0, None, None)] + [
            CurvePoint("sft", k, total * k / 4, 0, 0, good, good, 1.0, None) for k in range(1, 5)]

    session = open_session(sp)
    work(session, 3, objective=objective(sp, FakeRunner(points=points)))
    work(session, 4, objective=objective(sp, FakeRunner(points=points)))  # fresh runner: call 0 is good again
    trials = session.admin.get_trials()
    assert sorted(trials[0].intermediate_values) == list(range(1, 11))
    assert trials[0].values == [pytest.approx(0.25 * trials[0].user_attrs["final"]["id"]
                                              + 0.75 * trials[0].user_attrs["final"]["ood"])]
    assert session.admin.directions[0].name == "MAXIMIZE" and len(session.admin.directions) == 1


def test_weighted_objective_prunes_a_bad_trial(tmp_path):
    from ptplan.stages import CurvePoint

    sp = make_plan(tmp_path, f"sqlite:///{tmp_path}/s.db", {
        "sampler": "random", "objective": {"kind": "weighted", "pruner": "median"}})

    def points(config, i):
        v = 0.9 if i < 3 else 0.0
        return [CurvePoint("sft", k, config.budget.total * k / 4, 0, 0, v, v, 1.0, None) for k in range(1, 5)]

    class PrunableRunner(FakeRunner):
        def __call__(self, config, out, store, on_point=None, on_progress=None):
            try:
                return super().__call__(config, out, store, on_point)
            except Exception as err:  # what stages.run_trial does with any exception: record and wrap
                from ptplan.stages import reason_of

                raise TrialFailed(reason_of(err), str(err), fake_result(config, "failed")) from err

    session = open_session(sp)
    work(session, 4, objective=objective(sp, PrunableRunner(points=points)))
    trials = session.admin.get_trials()
    assert [t.state.name for t in trials][:4] == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]
    assert failure_reason(trials[3]) == "pruned"


def test_a_changed_plan_is_refused_with_the_difference(tmp_path):
    url = f"journal://{tmp_path}/j.log"
    sp = make_plan(tmp_path, url, {"name": "same", "search": {"allocation.sft.rank": [16, 64]}})
    open_session(sp)
    changed = make_plan(tmp_path, url, {"name": "same", "search": {"allocation.sft.rank": [16, 64, 256]}})
    with pytest.raises(StudyError) as err:
        open_session(changed)
    assert "search.allocation.sft.rank.choices: [16, 64] -> [16, 64, 256]" in str(err.value)
    lr = copy.deepcopy(sp.data)
    lr["allocation"]["sft"]["lr"] = 0.002
    with pytest.raises(StudyError, match=r"trial.allocation.sft.lr: 0.003 -> 0.002"):
        open_session(StudyPlan.from_mapping(lr))
    moved = copy.deepcopy(sp.data)
    moved["study"]["trials"] = 99  # not part of the identity
    open_session(StudyPlan.from_mapping(moved))


def test_unreachable_storage_is_a_clear_error_quickly(tmp_path):
    sp = make_plan(tmp_path, "postgresql://ptplan:secret@127.0.0.1:9/nodb")
    t0 = time.perf_counter()
    with pytest.raises(StudyError) as err:
        open_session(sp)
    assert time.perf_counter() - t0 < 10
    assert "cannot open the study storage" in str(err.value) and "secret" not in str(err.value)


def test_slurm_worker_queues_its_interrupted_trial_again_at_once(tmp_path, storage_url):
    from ptplan.studies._worker import requeue_own_interrupted

    sp = make_plan(tmp_path, storage_url, {"sampler": "random"})
    session = open_session(sp)
    with pytest.raises(KeyboardInterrupt):
        work(session, 2, objective=objective(sp, FakeRunner({0: "interrupt"})))
    [t] = session.admin.get_trials()
    assert failure_reason(t) == "interrupted" and t.user_attrs["resources"]["devices"] == 1
    assert requeue_own_interrupted(session.admin, 2, print) == 1
    assert requeue_own_interrupted(session.admin, 2, print) == 0  # queued once
    assert recover(session.admin, 2, print) == 0  # and `ptplan run` does not queue it again
    work(open_session(sp), 2, objective=objective(sp, FakeRunner()))
    trials = session.admin.get_trials()
    assert [x.state.name for x in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert retry_history(trials[1]) == [0] and trials[1].params == t.params


def test_trials_record_wall_time_devices_and_device_hours(tmp_path):
    from ptplan.studies._accounting import study_cost

    sp = make_plan(tmp_path, f"journal://{tmp_path}/j.log", {"sampler": "random"})
    session = open_session(sp)
    work(session, 2, objective=objective(sp, FakeRunner({1: "diverged"})))
    trials = session.admin.get_trials()
    for t in trials:
        r = t.user_attrs["resources"]
        assert r["device"] == "cpu" and r["devices"] == 1 and r["wall_seconds"] > 0
        assert r["device_hours"] == pytest.approx(r["wall_seconds"] / 3600)
        assert sum(r["stage_device_hours"].values()) == pytest.approx(r["device_hours"], abs=1e-9)
    cost = study_cost(trials)
    assert cost["trials"] == len(trials) == 3 and cost["devices"] == ["cpu x1"]
    assert cost["device_hours"] == pytest.approx(sum(t.user_attrs["resources"]["device_hours"] for t in trials))
    assert set(cost["states"]) == {"COMPLETE", "FAIL"}
    from ptplan.studies import study_table

    rows = study_table(session.admin, sp).rows
    assert [r["device_hours"] for r in rows] == [t.user_attrs["resources"]["device_hours"] for t in trials]
    assert all(r["device"] == "cpu" and r["devices"] == 1 and r["device_hours_other"] > 0 for r in rows)
