"""`ptplan submit --slurm`, `status` and `cancel`.

The tests marked `slurm` submit real arrays of real micro trials to the single-node SLURM that
.ci/run starts (.ci/slurm-up.sh) and are skipped unless it sets PTPLAN_TEST_SLURM=1; the others
check the script, the storage refusals and the options without a scheduler.
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ptplan.studies import StudyError
from ptplan.studies._slurm import SubmitOptions, check_cluster_storage, render_script, shared_reason
from ptplan.studies._worker import failure_reason, retry_history

from conftest import open_plan_study, run_ptplan

needs_slurm = pytest.mark.skipif(os.environ.get("PTPLAN_TEST_SLURM") != "1" or shutil.which("sbatch") is None,
                                 reason="SLURM tests need a running SLURM and PTPLAN_TEST_SLURM=1 (.ci/run starts "
                                        "a single-node SLURM with .ci/slurm-up.sh and sets it)")
ARTIFACTS = ("config.yaml", "curves.parquet", "result.json", "trial.log")


def _plan(micro_plan, tmp_path, **study):
    from ptplan.studies import Plan

    path = micro_plan({"sampler": "random", **study})
    return path, Plan.load(path)


# -- without a scheduler -----------------------------------------------------------------------------
def test_script_is_one_requeueable_array_of_workers(micro_plan, tmp_path):
    _, sp = _plan(micro_plan, tmp_path)
    opts = SubmitOptions(workers=3, parallel=2, gpus_per_trial=1, partition="gpu", time="4:00:00", account="lab",
                         sbatch_args=["--qos=high"], warn_seconds=300)
    script = render_script(sp, sp.run_dir / "plan.yaml", 8, opts)
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --requeue", "#SBATCH --signal=B:USR1@300",
                 "#SBATCH --gpus-per-task=1", "#SBATCH --partition=gpu", "#SBATCH --time=4:00:00",
                 "#SBATCH --account=lab", "#SBATCH --qos=high", f"#SBATCH --output={sp.run_dir}/slurm/%A_%a.out"):
        assert line in script.splitlines(), line
    worker = next(line for line in script.splitlines() if " -m ptplan._cli worker " in line)
    assert f"worker {sp.run_dir}/plan.yaml --trials 8 --retry-interrupted --index \"$index\" &" in worker
    assert "scontrol requeue" in script and "kill -USR1 $pid" in script
    result = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert "--gpus-per-task" not in render_script(sp, sp.run_dir / "plan.yaml", 8, SubmitOptions())


@pytest.mark.parametrize("kwargs, message", [
    ({"workers": 0}, "--workers must be an integer >= 1, got 0"),
    ({"parallel": 0}, "--parallel must be an integer >= 1, got 0"),
    ({"gpus_per_trial": -1}, "--gpus-per-trial must be an integer >= 0, got -1"),
    ({"gpus_per_trial": 2}, "--gpus-per-trial must be 0 or 1: a trial runs in one process"),
    ({"time": "4h"}, "--time must be a SLURM time limit"),
    ({"partition": "a b"}, "--partition must be a SLURM name"),
    ({"sbatch_args": ["qos=high"]}, "--sbatch-arg must be one sbatch option"),
    ({"sbatch_args": ["--array=0-9"]}, "cannot override --array"),
])
def test_bad_options_are_refused_by_name(kwargs, message):
    with pytest.raises(StudyError, match=re.escape(message)):
        SubmitOptions(**kwargs)


def test_storage_compute_nodes_cannot_share_is_refused(micro_plan, tmp_path):
    _, sp = _plan(micro_plan, tmp_path, storage=f"sqlite:///{tmp_path}/s.db")
    with pytest.raises(StudyError, match=r"SQLite .*postgresql://.*journal:///.*--shared-dir"):
        check_cluster_storage(sp, [str(tmp_path)])
    _, sp = _plan(micro_plan, tmp_path)  # default: a journal in the run folder
    if shared_reason(sp.run_dir, []) is None:  # not on a network file system here
        with pytest.raises(StudyError, match=r"journal storage .*journal.log is not on a file system known to be "
                                             r"shared.*--shared-dir"):
            check_cluster_storage(sp, [])
    assert check_cluster_storage(sp, [str(tmp_path)]) == f"journal://{sp.run_dir}/journal.log"
    _, sp = _plan(micro_plan, tmp_path, storage=f"journal://{tmp_path}/shared/j.log")
    if shared_reason(sp.run_dir, []) is None:
        with pytest.raises(StudyError, match=r"run folder .* not known to be shared"):
            check_cluster_storage(sp, [str(tmp_path / "shared")])


def test_plan_resources_set_the_gpus_of_a_task(micro_plan, tmp_path):
    from ptplan.stages._config import ConfigError

    _, sp = _plan(micro_plan, tmp_path)
    sp_gpu = sp.from_mapping({**sp.data, "resources": {"gpus_per_trial": 1}})
    assert "#SBATCH --gpus-per-task=1" in render_script(sp_gpu, sp.run_dir / "plan.yaml", 4, SubmitOptions())
    assert sp_gpu.fingerprint() == sp.fingerprint()  # where a trial runs is not what it is
    with pytest.raises(ConfigError, match=r"`resources.gpus_per_trial` must be 0 or 1"):
        sp.from_mapping({**sp.data, "resources": {"gpus_per_trial": 4}})
    with pytest.raises(ConfigError, match=r"`resources.gpu` "):
        sp.from_mapping({**sp.data, "resources": {"gpu": 1}})


def test_submit_cli_dry_run_and_refusals(micro_plan, tmp_path):
    plan = micro_plan({"sampler": "random", "trials": 4})
    r = run_ptplan("submit", plan, "--slurm", "--dry-run", "--shared-dir", tmp_path, "--workers", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "#SBATCH --array=0-1%2" in r.stdout and "would run: sbatch --parsable" in r.stdout
    assert not (tmp_path / "run").exists()  # a dry run writes nothing
    r = run_ptplan("submit", plan, "--dry-run", cwd=tmp_path)
    assert r.returncode == 2 and "--slurm" in r.stderr
    r = run_ptplan("submit", plan, "--slurm", "--time", "soon", "--shared-dir", tmp_path, cwd=tmp_path)
    assert r.returncode == 2 and "--time must be a SLURM time limit" in r.stderr
    r = run_ptplan("cancel", plan, cwd=tmp_path)
    assert r.returncode == 2 and "no SLURM arrays recorded" in r.stderr


# -- a real single-node SLURM ------------------------------------------------------------------------
def _submit(plan, tmp_path, *args):
    r = run_ptplan("submit", plan, "--slurm", "--shared-dir", tmp_path, *args, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    job = re.search(r"submitted job array (\d+)", r.stdout).group(1)
    jobs = json.loads((tmp_path / "run" / "slurm" / "jobs.json").read_text())
    assert jobs[-1]["job_id"] == job and Path(jobs[-1]["script"]).exists()
    return job


def _squeue(job) -> str:
    return subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%i %T"], capture_output=True, text=True).stdout


def _wait(what, check, timeout=240, every=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value is not None and value is not False:  # trial 0 is a value
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _running_trial(tmp_path, job, task, stage=None):
    """The trial array task `task` is running now (None if none), optionally only while in one of `stage`."""
    log = tmp_path / "run" / "slurm" / f"{job}_{task}.out"
    if not log.exists():
        return None
    started = re.findall(r"trial (\d+) started", log.read_text())
    done = set(re.findall(r"trial (\d+) (?:complete|failed|pruned|interrupted)", log.read_text()))
    if not started or started[-1] in done:
        return None
    n = started[-1]
    progress = tmp_path / "run" / "trials" / n / "progress.json"
    if stage is not None:
        try:
            if json.loads(progress.read_text())["stage"] not in stage:
                return None
        except (OSError, ValueError, KeyError):
            return None
    return int(n)


def _complete_and_files(plan, target):
    _, study = open_plan_study(plan)
    trials = study.get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == target, [(t.number, t.state.name, failure_reason(t)) for t in trials]
    for t in complete:
        for name in ARTIFACTS:
            assert os.path.getsize(os.path.join(t.user_attrs["artifacts"], name)) > 0, (t.number, name)
        r = t.user_attrs["resources"]
        assert r["slurm_task"] and r["devices"] == 1 and r["device_hours"] > 0
        assert r["device_hours"] == pytest.approx(r["wall_seconds"] / 3600)
    return trials, complete


@pytest.mark.slurm
@needs_slurm
def test_array_of_two_workers_runs_a_four_trial_study(micro_plan, tmp_path):
    plan = micro_plan({"sampler": "random", "trials": 4})
    job = _submit(plan, tmp_path, "--workers", "2")
    _wait("the array to finish", lambda: _squeue(job).strip() == "", timeout=300)
    trials, complete = _complete_and_files(plan, 4)
    assert len(trials) == 4  # nothing failed, nothing ran twice
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 4
    assert len({t.user_attrs["artifacts"] for t in complete}) == 4
    tasks = {t.user_attrs["resources"]["slurm_task"] for t in complete}
    assert tasks <= {f"{job}_0", f"{job}_1"} and len(tasks) == 2  # both tasks worked
    r = run_ptplan("status", plan, cwd=tmp_path, env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert f"SLURM array tasks (job {job})" in r.stdout and "tasks: 2 COMPLETED" in r.stdout
    assert re.search(r"device-hours: .* over 4 trials \(cpu x1\); per stage: cpt", r.stdout)
    r = run_ptplan("cancel", plan, cwd=tmp_path)
    assert r.returncode == 0 and "nothing to cancel" in r.stdout


@pytest.mark.slurm
@needs_slurm
def test_requeued_and_cancelled_tasks_lose_nothing(micro_plan, tmp_path):
    # Trials of ~10 s (20 epochs), so each task can be caught mid-trial.
    plan = micro_plan({"sampler": "random", "trials": 3}, budget={"total": 20, "unit": "epochs"})
    job = _submit(plan, tmp_path, "--workers", "2")
    requeued = _wait("task 0 in SFT", lambda: _running_trial(tmp_path, job, 0, stage=("sft",)))
    subprocess.run(["scontrol", "requeue", f"{job}_0"], check=True)
    cancelled = _wait("task 1 mid-trial", lambda: _running_trial(tmp_path, job, 1, stage=("cpt", "sft")))
    subprocess.run(["scancel", f"{job}_1"], check=True)
    # SLURM holds a requeued task back for ~2 min (BeginTime); let it start in 3 s (not at once: a restart
    # in the second of the kill is refused, "Job credential revoked").
    _wait("task 0 to be pending again", lambda: f"{job}_0 PENDING" in _squeue(job), timeout=60)
    subprocess.run(["scontrol", "update", f"JobId={job}_0", "StartTime=now+3"], check=True)
    _wait("the array to finish", lambda: _squeue(job).strip() == "", timeout=300)
    trials, complete = _complete_and_files(plan, 3)
    by_number = {t.number: t for t in trials}
    for n in (requeued, cancelled):  # (the cancelled trial may itself be the requeued one's retry)
        assert by_number[n].state.name == "FAIL" and failure_reason(by_number[n]) == "interrupted", n
        done = [t for t in complete if n in retry_history(t)]
        assert len(done) == 1 and done[0].params == by_number[n].params, n  # its allocation completed once
    retry = next(t for t in complete if requeued in retry_history(t))
    assert "cpt" in retry.user_attrs["compute_saved"]["stages"]  # the CPT it had finished was kept
    assert all(by_number[t.number].state.name == "COMPLETE" for t in complete)
    log0 = (tmp_path / "run" / "slurm" / f"{job}_0.out").read_text()
    assert "(restart 1)" in log0 and f"trial {requeued} interrupted; its allocation is queued again" in log0
    r = run_ptplan("status", plan, cwd=tmp_path, env={"COLUMNS": "200"})
    assert "CANCELLED" in r.stdout and "per state: COMPLETE" in r.stdout and "FAIL" in r.stdout


@pytest.mark.slurm
@needs_slurm
def test_time_limit_warning_stops_the_trial_and_requeues_the_task(micro_plan, tmp_path):
    plan = micro_plan({"sampler": "random", "trials": 1}, budget={"total": 20, "unit": "epochs"})
    job = _submit(plan, tmp_path, "--workers", "1")
    warned = _wait("the task mid-trial", lambda: _running_trial(tmp_path, job, 0, stage=("sft",)))
    # What `--signal=B:USR1@SECS` does before the time limit: USR1 to the batch shell.
    subprocess.run(["scancel", "--batch", "--signal=USR1", f"{job}_0"], check=True)
    _wait("the task to requeue itself", lambda: f"{job}_0 PENDING" in _squeue(job), timeout=60)
    subprocess.run(["scontrol", "update", f"JobId={job}_0", "StartTime=now+3"], check=True)
    _wait("the array to finish", lambda: _squeue(job).strip() == "", timeout=300)
    trials, complete = _complete_and_files(plan, 1)
    first = next(t for t in trials if t.number == warned)
    assert failure_reason(first) == "interrupted"
    assert [t.params for t in trials if retry_history(t) == [warned]] == [first.params]
    log = (tmp_path / "run" / "slurm" / f"{job}_0.out").read_text()
    assert "time-limit warning (USR1)" in log and "requeueing task" in log and "(restart 1)" in log


@pytest.mark.slurm
@needs_slurm
def test_cancel_cancels_the_pending_array(micro_plan, tmp_path):
    plan = micro_plan({"sampler": "random", "trials": 2})
    job = _submit(plan, tmp_path, "--workers", "2", "--sbatch-arg=--begin=now+600")  # held: nothing trains
    assert "PENDING" in _squeue(job)
    r = run_ptplan("status", plan, cwd=tmp_path, env={"COLUMNS": "200"})
    assert "tasks: 1 PENDING" in r.stdout and re.search(rf"│ {job}\s+│ 0-1%2\s+│ PENDING", r.stdout), r.stdout
    r = run_ptplan("cancel", plan, cwd=tmp_path)
    assert r.returncode == 0 and f"cancelled job array {job}" in r.stdout, r.stdout + r.stderr
    _wait("the array to be gone", lambda: _squeue(job).strip() == "", timeout=30)
    r = run_ptplan("status", plan, cwd=tmp_path, env={"COLUMNS": "200"})
    assert "CANCELLED" in r.stdout and "PENDING" not in r.stdout
    r = run_ptplan("cancel", plan, cwd=tmp_path)
    assert r.returncode == 0 and "nothing to cancel" in r.stdout
