"""Fault injection with real smoke trials, real processes and real signals: repeated proposals, bad data,
recurring failures and their retry, a damaged checkpoint, a read-only folder, a study that lost its
storage, more workers on a resumed study, Ctrl-C, and output through a pipe."""

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from conftest import ENV, MICRO, PTPLAN, open_plan_study, run_ptplan, spawn_ptplan

pytestmark = pytest.mark.integration

COMP = {"A": "T", "C": "G", "G": "C", "T": "A"}


def _plan(tmp_path, study, name="plan.yaml", **over):
    data = json.loads(json.dumps(MICRO))
    data.update(over)
    data["study"] = {"dir": str(tmp_path / "run"), **study}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _allocations(plan):
    _, study = open_plan_study(plan)
    trials = study.get_trials(deepcopy=False)
    return [tuple(sorted(t.params.items())) for t in trials if "retry_history" not in t.system_attrs], trials


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# -- 1. no allocation proposed twice ----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["surrogate", "tpe", "random"])
def test_no_duplicate_allocations_across_consecutive_and_concurrent_runs(tmp_path, sampler):
    plan = _plan(tmp_path, {"sampler": sampler})
    for n in (1, 2, 3):  # a rerun to extend the study: each new process used to replay trial 0's proposal
        _ok(run_ptplan("run", plan, "--trials", n, "--skip-preflight"))
    allocations, _ = _allocations(plan)
    assert len(allocations) == 3 and len(set(allocations)) == 3, allocations
    procs = [spawn_ptplan("run", plan, "--trials", 5, "--skip-preflight") for _ in range(2)]  # two at once
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    allocations, trials = _allocations(plan)
    assert sum(t.state.name == "COMPLETE" for t in trials) >= 5
    assert len(allocations) >= 5 and len(set(allocations)) == len(allocations), allocations


# -- 2/3. bad data: preflight, recurring failure, --retry-failed --------------------------------------
def _rows(rng, n, lo, hi):
    out = []
    for _ in range(n):
        s = "".join(rng.choice("ACGT") for _ in range(rng.randint(lo, hi)))
        out.append({"prompt": f"rc:{s}=", "answer": "".join(COMP[c] for c in reversed(s))})
    return out


def _user_data(folder):
    """Good JSONL splits, and a CSV copy of the OOD split whose `prompt` column is named `question`."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n, lo, hi in (("sft", 16, 3, 6), ("rl", 4, 3, 6), ("id", 8, 3, 6), ("ood", 8, 7, 9)):
        files[split] = folder / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in _rows(rng, n, lo, hi)))
    with open(folder / "ood_bad.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question", "answer"])
        for r in map(json.loads, files["ood"].read_text().splitlines()):
            w.writerow([r["prompt"], r["answer"]])
    return files


def _user_plan(tmp_path, ood):
    files = _user_data(tmp_path / "data")
    data = {"files": {"sft": str(files["sft"]), "rl": str(files["rl"]), "id": str(files["id"]), "ood": str(ood)},
            "scorer": "exact"}
    return _plan(tmp_path, {"sampler": "grid", "search": {"allocation.sft.lr": {"choices": [1e-3, 3e-3]}}},
                 data=data, budget={"total": 8, "unit": "epochs"},
                 allocation={**MICRO["allocation"], "shares": {"cpt": 0.0, "sft": 0.5, "rl": 0.5}})


def test_bad_split_stops_the_study_in_preflight_before_any_training(tmp_path):
    _user_data(tmp_path / "data")
    plan = _user_plan(tmp_path, tmp_path / "data" / "ood_bad.csv")
    t0 = time.perf_counter()
    proc = run_ptplan("run", plan)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "preflight (data)" in proc.stderr and "ood_bad.csv" in proc.stderr and "column `prompt`" in proc.stderr
    assert "Traceback" not in proc.stderr and time.perf_counter() - t0 < 60
    assert not (tmp_path / "run" / "trials").exists() and not (tmp_path / "run" / "stages").exists()
    pre = run_ptplan("preflight", plan)
    assert pre.returncode == 2 and "column `prompt`: column missing; columns found: question, answer" in pre.stderr


@pytest.fixture(scope="module")
def fixed_study(tmp_path_factory):
    """A grid whose cells failed on a bad split (preflight skipped), then fixed and retried: the run
    outputs of each step, and the plan."""
    tmp_path = tmp_path_factory.mktemp("fixed")
    _user_data(tmp_path / "data")
    plan = _user_plan(tmp_path, tmp_path / "data" / "ood_bad.csv")
    broken = run_ptplan("run", plan, "--skip-preflight")
    still = run_ptplan("run", plan)  # without --retry-failed the failed cells stay failed: exit 2 in preflight
    # fix: point the plan at a corrected copy of the split (a new path, the content fixed)
    text = plan.read_text().replace(str(tmp_path / "data" / "ood_bad.csv"), str(tmp_path / "data" / "ood.jsonl"))
    plan.write_text(text)
    retried = run_ptplan("run", plan, "--retry-failed")
    return {"plan": plan, "broken": broken, "still": still, "retried": retried, "dir": tmp_path}


def test_recurring_failure_stops_the_study_and_retry_failed_completes_the_grid(fixed_study):
    broken, retried = fixed_study["broken"], fixed_study["retried"]
    assert broken.returncode == 1, broken.stdout[-3000:]
    assert "the same failure ended two trials (data_error" in broken.stdout
    assert "target not reached: 0 of 2 trials complete" in broken.stdout
    assert fixed_study["still"].returncode == 2
    _ok(retried)
    assert "2 failed allocation(s) queued again" in retried.stdout
    _, study = open_plan_study(fixed_study["plan"])
    trials = study.get_trials(deepcopy=False)
    cells = sorted(t.params["allocation.sft.lr"] for t in trials if t.state.name == "COMPLETE")
    assert cells == [1e-3, 3e-3]
    assert sorted(t.user_attrs["failure"]["reason"] for t in trials if t.state.name == "FAIL") == ["data_error"] * 2


def test_status_export_and_surrogate_eval_through_a_pipe(fixed_study):
    """COLUMNS unset, stdout a pipe: every header and failure reason in full, nothing cut to `…`."""
    env = {k: v for k, v in ENV.items() if k not in ("COLUMNS", "LINES")}
    plan = fixed_study["plan"]

    def piped(*args):
        proc = subprocess.run([*PTPLAN, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "…" not in proc.stdout
        return proc.stdout

    status = piped("status", plan)
    header = "trial\tstate\tshares c/s/r\tranks c/s/r\tsft.lr\tspent\tID\tOOD\tfailure\tretries\treused"
    assert header in status.splitlines()
    fails = [line.split("\t") for line in status.splitlines() if "\tFAIL\t" in line]
    assert len(fails) == 2 and all(f[8] == "data_error" for f in fails)
    table = fixed_study["dir"] / "trials.parquet"
    export = piped("export", plan, "--out", table, "--preview", 10)
    lines = export.splitlines()
    columns = lines[lines.index(next(l for l in lines if l.startswith("number\t")))].split("\t")
    assert {"number", "state", "failure_reason", "failure_message", "curves"} <= set(columns)
    rows = [dict(zip(columns, line.split("\t"))) for line in lines if line[:1].isdigit()]
    assert sorted(r["failure_reason"] for r in rows) == ["-", "-", "data_error", "data_error"]
    assert all("column `prompt`: column missing" in r["failure_message"] for r in rows if r["state"] == "FAIL")
    evaluated = piped("surrogate", "eval", table)
    for head in ("model\tobserved\tcurves\tMAE\tmedian AE\tcoverage\tvalue MAE\tvalue cov.\tbehind Brier\t"
                 "vs best baseline\ttargets", "model\ttarget\ttrials\tSpearman\tMAE\tcoverage\tre-run coverage\ttarget met"):
        assert head in evaluated.splitlines()


# -- 4. a damaged checkpoint --------------------------------------------------------------------------
def test_truncated_checkpoint_is_retrained_and_the_complete_trial_kept(tmp_path):
    plan = _plan(tmp_path, {"sampler": "grid", "search": {"allocation.rl.lr": {"choices": [1e-4, 3e-4]}}})
    _ok(run_ptplan("run", plan, "--trials", 1))
    trial0 = tmp_path / "run" / "trials" / "0"
    kept = {name: (trial0 / name).read_bytes() for name in ("result.json", "curves.parquet")}
    (cpt,) = (tmp_path / "run" / "stages").glob("cpt-*")
    weights = cpt / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    proc = _ok(run_ptplan("run", plan, "--trials", 2))
    result = json.loads((tmp_path / "run" / "trials" / "1" / "result.json").read_text())
    assert result["status"] == "complete" and not result["ledger"]["stages"]["cpt"]["reused"]
    assert result["ledger"]["stages"]["sft"]["reused"]
    (aside,) = (tmp_path / "run" / "stages" / "quarantine").iterdir()
    assert aside.name.startswith(cpt.name)
    assert "is damaged" in (tmp_path / "run" / "trials" / "1" / "trial.log").read_text()
    assert {name: (trial0 / name).read_bytes() for name in kept} == kept
    assert "2 trials complete" in proc.stdout


# -- 5. the environment: read-only folder ------------------------------------------------------------
def _read_only_argv(folder, argv):
    """argv run with `folder` read-only: a private read-only bind mount for root, chmod otherwise."""
    if os.geteuid() != 0:
        for p in [folder, *folder.rglob("*")]:
            if p.is_dir():
                p.chmod(0o555)
        return argv
    if not shutil.which("unshare"):
        pytest.skip("running as root without `unshare`: cannot make a folder read-only")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("`unshare -m` is not permitted here")
    script = f'mount --bind "{folder}" "{folder}" && mount -o remount,ro,bind "{folder}" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", *argv]


def test_read_only_folder_gives_one_line_and_exit_1(tmp_path):
    plan = _plan(tmp_path, {"sampler": "random"})
    _ok(run_ptplan("run", plan, "--trials", 1, "--skip-preflight"))
    run_dir = tmp_path / "run"
    for args in (["export", plan], ["run", plan, "--trials", 2, "--skip-preflight"],
                 ["trial", plan, "--out", run_dir / "t1"], ["report", plan]):
        argv = _read_only_argv(run_dir, [*PTPLAN, *map(str, args)])
        proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=300)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1, (args, proc.stdout[-2000:], proc.stderr[-3000:])
        assert "Traceback" not in proc.stderr and len(lines) == 1, (args, proc.stderr)
        assert str(run_dir) in lines[0] and ("Read-only" in lines[0] or "Permission denied" in lines[0]), lines
    if os.geteuid() != 0:
        for p in [run_dir, *run_dir.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
    _, trials = _allocations(plan)
    assert [t.state.name for t in trials] == ["COMPLETE"]  # nothing already recorded was lost


# -- 6. the study store -------------------------------------------------------------------------------
def test_extend_a_study_from_one_worker_to_two(tmp_path):
    plan = _plan(tmp_path, {"sampler": "random"})
    _ok(run_ptplan("run", plan, "--trials", 1, "--skip-preflight"))
    assert (tmp_path / "run" / "journal.log").exists()  # the default: serves any number of local workers
    _ok(run_ptplan("run", plan, "--trials", 3, "--jobs", 2, "--skip-preflight"))
    _, trials = _allocations(plan)
    assert sum(t.state.name == "COMPLETE" for t in trials) >= 3


def test_missing_storage_next_to_trials_is_refused_until_new_study(tmp_path):
    plan = _plan(tmp_path, {"sampler": "random"})
    _ok(run_ptplan("run", plan, "--trials", 1, "--skip-preflight"))
    (tmp_path / "run" / "journal.log").unlink()
    proc = run_ptplan("run", plan, "--trials", 1, "--skip-preflight")
    assert proc.returncode == 2 and "holds 1 trial folder(s)" in proc.stderr and "--new-study" in proc.stderr
    assert (tmp_path / "run" / "trials" / "0" / "result.json").exists()  # untouched
    fresh = _ok(run_ptplan("run", plan, "--trials", 1, "--skip-preflight", "--new-study"))
    (old,) = (tmp_path / "run").glob("trials.old-*")
    assert (old / "0" / "result.json").exists() and "trials.old-" in fresh.stdout


# -- 6. Ctrl-C on `ptplan trial` ----------------------------------------------------------------------
def test_ctrl_c_on_trial_prints_where_the_record_is(tmp_path):
    plan = _plan(tmp_path, {}, budget={"total": 400, "unit": "epochs"})
    out = tmp_path / "t"
    proc = subprocess.Popen([*PTPLAN, "trial", str(plan), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "stages").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err and str(out) in err and "--resume" in err
    assert json.loads((out / "result.json").read_text())["failure"]["reason"] == "interrupted"
