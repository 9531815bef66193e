"""`ptplan run | worker | status | export | init` as a user types them: bad input is one clear line
(exit 2, no traceback, the field and value named), status and export read a study quickly."""

import copy
import os
import subprocess
import sys
import time

import pytest

from ptplan.testing import synthetic_study
import yaml

PTPLAN = [sys.executable, "-m", "ptplan._cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
MICRO = {
    "name": "cli",
    "backbone": {"name": "llama-0.5m"},
    "data": {"suite": "genomics", "sizes": {"cpt": 16, "sft": 16, "rl": 4, "id_test": 8, "ood_test": 8}},
    "budget": {"total": 10, "unit": "epochs"},
    "allocation": {"shares": {"cpt": 0.2, "sft": 0.4, "rl": 0.4},
                   "cpt": {"batch_size": 16}, "sft": {"batch_size": 16},
                   "rl": {"rank": 4, "batch_size": 4, "generations": 2, "max_completion_length": 8}},
    "eval": {"points": {"cpt": 1, "sft": 1, "rl": 1}, "batch_size": 16},
    "device": "cpu",
}


def ptplan(*args, timeout=120):
    return subprocess.run([*PTPLAN, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)


def write_plan(tmp_path, study=None, name="plan.yaml", **top):
    data = copy.deepcopy(MICRO)
    data.update(top)
    data["study"] = {"dir": str(tmp_path / "run"), **(study or {})}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def assert_clean_error(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1500:], proc.stderr[-1500:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)


def test_help_is_instant_and_lists_the_study_commands():
    t0 = time.perf_counter()
    proc = ptplan("--help")
    assert proc.returncode == 0 and time.perf_counter() - t0 < 5
    for cmd in ("run", "worker", "status", "export", "init"):
        assert cmd in proc.stdout
    light = subprocess.run([sys.executable, "-c", "import sys, ptplan._cli, ptplan.studies; "
                            "print(sorted(m for m in ('torch', 'optuna', 'transformers') if m in sys.modules))"],
                           capture_output=True, text=True, env=ENV)
    assert light.stdout.strip() == "[]"


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("study:\n  search: {allocation.sft.rank: [16, 64\n")
    assert_clean_error(ptplan("run", bad), "bad.yaml", "line")


@pytest.mark.parametrize("study, overrides, words", [
    ({"samplr": "tpe"}, [], ["`study.samplr`", "not a known field"]),
    ({}, ["allocation.sft.rnak=4"], ["`allocation.sft.rnak`"]),
    ({"search": {"allocation.shares.cpt": {"low": 0.1, "high": 1.5}}}, [],
     ["`study.search.allocation.shares.cpt`", "1.5", "outside [0, 1]"]),
    ({}, ["allocation.shares.sft=1.4"], ["`allocation.shares.sft`", "1.4"]),
    ({"search": {"allocation.sft.rank": {"choices": [16, 48]}}}, [],
     ["`study.search.allocation.sft.rank`", "48", "power of two"]),
    ({"sampler": "annealing"}, [], ["`study.sampler`", "annealing"]),
    ({"sampler": "grid", "search": {"allocation.sft.lr": {"low": 1e-4, "high": 1e-3}}}, [],
     ["`study.search.allocation.sft.lr`", "grid"]),
])
def test_bad_input_is_one_clear_error_naming_the_field(tmp_path, study, overrides, words):
    plan = write_plan(tmp_path, study)
    assert_clean_error(ptplan("run", plan, *[x for o in overrides for x in ("--set", o)]), *words)
    assert not (tmp_path / "run").exists()  # nothing was created


def test_unreachable_storage_is_a_clear_error_within_10_seconds(tmp_path):
    plan = write_plan(tmp_path, {"storage": "postgresql://ptplan:hunter2@127.0.0.1:9/nowhere"})
    t0 = time.perf_counter()
    proc = ptplan("run", plan, "--trials", 1)
    assert time.perf_counter() - t0 < 10
    assert_clean_error(proc, "cannot open the study storage", "127.0.0.1:9")
    assert "hunter2" not in proc.stderr


def test_changed_plan_on_resume_is_refused_with_the_difference(tmp_path):
    plan = write_plan(tmp_path, {"search": {"allocation.sft.rank": [16, 64]}})
    first = ptplan("run", plan, "--trials", 0)  # creates the study, trains nothing
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "run" / "journal.log").exists() and (tmp_path / "run" / "plan.yaml").exists()
    changed = ptplan("run", plan, "--trials", 0, "--set", "allocation.sft.lr=0.002",
                     "--set", "study.search.allocation.sft.rank.choices=[16, 64, 256]")
    assert_clean_error(changed, "different plan", "trial.allocation.sft.lr: 0.001 -> 0.002",
                       "search.allocation.sft.rank.choices: [16, 64] -> [16, 64, 256]")
    same = ptplan("run", plan, "--trials", 0, "--set", "study.trials=50", "--set", "device=auto")
    assert same.returncode == 0, same.stderr  # how many trials and which device are not the study's identity


def test_worker_without_a_study_says_how_to_start_one(tmp_path):
    plan = write_plan(tmp_path)
    assert_clean_error(ptplan("worker", plan), "ptplan run")


def test_init_writes_a_commented_plan_that_runs_and_lists_presets(tmp_path):
    out = tmp_path / "my-plan.yaml"
    proc = ptplan("init", "--out", out)
    assert proc.returncode == 0 and out.exists()
    text = out.read_text()
    assert text.count("#") > 20 and "study:" in text and "sft_of_rest" in text
    from ptplan.studies import StudyPlan

    assert StudyPlan.from_mapping(yaml.safe_load(text)).name == "quick"
    assert_clean_error(ptplan("init", "--out", out), "exists", "--force")
    assert ptplan("init", "--preset", "paper-rank-grid", "--out", out, "--force").returncode == 0
    listed = ptplan("init", "--list")
    for name in ("quick", "smoke", "paper-epoch-split", "paper-data-split", "paper-rank-grid", "paper-sft-epochs",
                 "paper-warm-vs-cold"):
        assert name in listed.stdout
    assert_clean_error(ptplan("init", "--preset", "nope", "--out", tmp_path / "x.yaml"), "nope")




def test_status_and_export_read_the_trial_table(tmp_path):
    import polars as pl

    plan = write_plan(tmp_path)
    sp, session = synthetic_study(plan, 30, failed_every=7)
    status = ptplan("status", plan, "--limit", 0)
    assert status.returncode == 0, status.stderr
    for words in ("26 COMPLETE", "4 FAIL", "4 diverged", "Pareto front", "compute saved", "diverged"):
        assert words in status.stdout, words
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"t.{fmt}"
        proc = ptplan("export", plan, "--format", fmt, "--out", out)
        assert proc.returncode == 0, proc.stderr
        frame = pl.read_csv(out) if fmt == "csv" else pl.read_parquet(out)
        assert frame.height == 30
        for col in ("number", "state", "id", "ood", "share_cpt", "share_sft", "share_rl", "rank_sft", "spent",
                    "failure_reason", "retries", "reused", "saved", "curves", "ood_peak_fraction"):
            assert col in frame.columns, col
        assert frame.filter(pl.col("state") == "FAIL")["failure_reason"].to_list() == ["diverged"] * 4
    assert_clean_error(ptplan("export", plan, "--format", "xlsx"), "parquet or csv")


def test_status_of_a_thousand_trials_takes_under_two_seconds(tmp_path):
    plan = write_plan(tmp_path, {"storage": f"journal://{tmp_path}/j.log"})
    synthetic_study(plan, 1000)
    proc = ptplan("status", plan)
    assert proc.returncode == 0 and "last 50 of 1000" in proc.stdout, proc.stderr
    # Its speed (target 2 s) is measured by benchmarks/bench_studies.py, not asserted here.
