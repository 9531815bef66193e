"""Studies of real staged trials (micro sizes, CPU), run through `ptplan` as a user runs them:
Ctrl-C and resume, several workers on one journal / PostgreSQL storage, a worker killed with
SIGKILL mid-trial, and a grid preset that reproduces its cells and trains nothing on a rerun."""

import json
import os
import signal
import time
import uuid

import pytest

from ptplan.studies._worker import failure_reason, retry_history

from conftest import MICRO_SETS

PG_URL = os.environ.get("PTPLAN_TEST_POSTGRES_URL")
ARTIFACTS = ("config.yaml", "curves.parquet", "result.json", "trial.log")
needs_pg = pytest.mark.skipif(not PG_URL, reason="PostgreSQL tests need PTPLAN_TEST_POSTGRES_URL "
                              "(.ci/run starts a local server and sets it)")


def sets(items):
    return [x for item in items for x in ("--set", item)]


def cell(t):
    return tuple(sorted(t.params.items()))


def assert_artifacts(trial):
    folder = trial.user_attrs["artifacts"]
    for name in ARTIFACTS:
        assert os.path.getsize(os.path.join(folder, name)) > 0, (trial.number, name)
    assert os.path.exists(trial.user_attrs["curves"])
    for key in ("allocation", "ledger", "final", "ood_peak", "compute_saved"):
        assert key in trial.user_attrs, key


def delete_pg_study(name):
    import optuna

    from ptplan.studies._storage import sqlalchemy_url

    try:
        optuna.delete_study(study_name=name, storage=sqlalchemy_url(PG_URL))
    except KeyError:
        pass


def wait_for_line(proc, text, timeout=180):
    """Read the process's output until a line contains `text`; returns everything read."""
    seen, deadline = [], time.time() + timeout
    for line in proc.stdout:
        seen.append(line)
        if text in line or time.time() > deadline:
            break
    return "".join(seen)


def test_smoke_interrupted_during_second_trial_then_resumed_to_exactly_three(tmp_path, spawn, ptplan, study_of):
    overrides = [*MICRO_SETS, "budget={total: 12, unit: epochs}", f"study.dir={tmp_path}/run"]
    args = ["run", "smoke", "--trials", 3, *sets(overrides)]
    proc = spawn(*args)
    head = wait_for_line(proc, "trial 1 started")
    assert "trial 1 started" in head, head
    log = tmp_path / "run" / "trials" / "1" / "trial.log"
    deadline = time.time() + 60
    while not log.exists() and time.time() < deadline:  # the trial is training now
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    tail, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, head + tail
    assert "Traceback" not in tail and "run the same command" in tail

    sp, study = study_of("smoke", overrides)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL"]
    assert failure_reason(trials[1]) == "interrupted"
    record = json.loads((tmp_path / "run" / "trials" / "1" / "result.json").read_text())
    assert record["status"] == "failed" and record["failure"]["reason"] == "interrupted"

    done = ptplan(*args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    trials = study.get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3 and len(trials) == 4
    assert failure_reason(trials[1]) == "interrupted"  # still marked
    retry = [t for t in trials if retry_history(t) == [1]]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and cell(retry[0]) == cell(trials[1])
    for t in complete:
        assert_artifacts(t)
    assert "interrupted" in done.stdout


def test_grid_preset_on_two_journal_workers_runs_each_cell_once_then_trains_nothing_new(tmp_path, ptplan, study_of):
    overrides = [*MICRO_SETS, f"study.dir={tmp_path}/run"]
    proc = ptplan("run", "paper-epoch-split", "--jobs", 2, *sets(overrides))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "run" / "journal.log").exists() and not (tmp_path / "run" / "study.db").exists()

    sp, study = study_of("paper-epoch-split", overrides)
    trials = study.get_trials()
    assert len(trials) == 9 and all(t.state.name == "COMPLETE" for t in trials), [t.state for t in trials]
    assert sorted(map(cell, trials)) == sorted(tuple(sorted(c.items())) for c in sp.space.cells())
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    for t in trials:
        assert_artifacts(t)
        ledger = t.user_attrs["ledger"]
        assert ledger["unit"] == "epochs" and ledger["stages"]["cpt"]["spent"]["epochs"] == 2.0
    reused = [t for t in trials if "cpt" in t.user_attrs["compute_saved"]["stages"]]
    assert len(reused) >= 7  # the CPT prefix is shared (both workers may train it once at the start)

    store = tmp_path / "run" / "stages"
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    again = ptplan("run", "paper-epoch-split", "--jobs", 2, *sets(overrides))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "9 trials complete" in again.stdout
    assert len(study.get_trials()) == 9
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == before  # nothing trained or rewritten
    assert sorted(p.name for p in (tmp_path / "run" / "trials").iterdir()) == sorted(str(i) for i in range(9))


@needs_pg
def test_grid_on_postgresql_with_a_run_and_a_worker_process(tmp_path, micro_plan, spawn, ptplan, study_of):
    name = f"pg-grid-{uuid.uuid4().hex[:8]}"
    plan = micro_plan({"name": name, "storage": PG_URL, "sampler": "grid", "search": {
        "allocation.rl.start": ["warm", "cold"], "allocation.rl.beta": [1.0e-4, 1.0e-3]}})
    try:
        run = spawn("run", plan)
        head = wait_for_line(run, "grid of 4 cells")
        worker = spawn("worker", plan)
        out_w, _ = worker.communicate(timeout=240)
        out_r, _ = run.communicate(timeout=240)
        assert run.returncode == 0 and worker.returncode == 0, head + out_r + out_w
        sp, study = study_of(plan)
        trials = study.get_trials()
        assert [t.state.name for t in trials] == ["COMPLETE"] * 4
        assert sorted(map(cell, trials)) == sorted(tuple(sorted(c.items())) for c in sp.space.cells())
        for t in trials:
            assert_artifacts(t)
    finally:
        delete_pg_study(name)


def _kill_a_running_worker(plan_path, study_of, timeout=180):
    """Wait for a trial to be mid-run, SIGKILL its worker process; returns the trial number."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            _, study = study_of(plan_path)
        except Exception:  # noqa: BLE001 - the study may not exist yet
            time.sleep(0.2)
            continue
        for t in study.get_trials(deepcopy=False, states=None):
            worker = t.user_attrs.get("worker")
            if t.state.name == "RUNNING" and worker and os.path.exists(os.path.join(t.user_attrs["artifacts"],
                                                                                     "config.yaml")):
                os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)
                return t.number
        time.sleep(0.1)
    raise AssertionError("no trial was seen running")


GRID4 = {"allocation.shares.sft_of_rest": [0.25, 0.75], "allocation.rl.rank": [4, 8]}


@pytest.mark.parametrize("storage", ["journal", pytest.param("postgresql", marks=needs_pg)])
def test_worker_killed_mid_trial_its_allocation_is_retried_by_a_survivor(tmp_path, micro_plan, spawn, study_of,
                                                                        storage):
    name = f"kill-{uuid.uuid4().hex[:8]}"
    study = {"name": name, "sampler": "grid", "search": GRID4, "heartbeat": {"interval": 1, "grace": 4}}
    if storage == "postgresql":
        study["storage"] = PG_URL
    plan = micro_plan(study)
    try:
        if storage == "journal":
            procs = [spawn("run", plan, "--jobs", 2)]
        else:  # two processes on one database, as on two machines
            procs = [spawn("run", plan)]
            wait_for_line(procs[0], "grid of 4 cells")
            procs.append(spawn("worker", plan))
        killed = _kill_a_running_worker(plan, study_of)
        outputs = [p.communicate(timeout=240)[0] for p in procs]
        text = "\n".join(outputs)
        codes = [p.returncode for p in procs]
        assert codes.count(0) >= 1 and all(c in (0, -signal.SIGKILL) for c in codes), (codes, text[-3000:])

        sp, study_h = study_of(plan)
        trials = study_h.get_trials()
        by_number = {t.number: t for t in trials}
        assert by_number[killed].state.name == "FAIL" and failure_reason(by_number[killed]) == "lost", text[-3000:]
        retries = [t for t in trials if retry_history(t) == [killed]]
        assert len(retries) == 1 and retries[0].state.name == "COMPLETE" and cell(retries[0]) == cell(
            by_number[killed])
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        assert sorted(map(cell, complete)) == sorted(tuple(sorted(c.items())) for c in sp.space.cells())
        for t in complete:
            assert_artifacts(t)
    finally:
        if storage == "postgresql":
            delete_pg_study(name)
