"""A run folder and study written by ptplan 0.1 before the namespace change (top-level `planner`,
`stages`, ... packages; fixtures/run-0.1 was made by that code: `ptplan run plan.yaml --trials 3`
on the micro plan, random sampler) still opens with today's `ptplan status` and `recommend`."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import ptplan

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1"
PTPLAN = [sys.executable, "-m", "ptplan._cli"]


def _copy(tmp_path) -> Path:
    where = tmp_path / "old"
    shutil.copytree(FIXTURE, where)
    return where


def test_status_and_recommend_open_a_study_made_by_the_previous_version(tmp_path):
    where = _copy(tmp_path)
    status = subprocess.run([*PTPLAN, "status", "plan.yaml"], cwd=where, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "3 COMPLETE" in status.stdout and "warning" not in status.stderr  # same study identity as before
    rec = subprocess.run([*PTPLAN, "recommend", "plan.yaml", "--json"], cwd=where, capture_output=True, text=True,
                         timeout=120)
    assert rec.returncode == 0, rec.stderr
    out = json.loads(rec.stdout)
    assert out["n_complete"] == 3 and abs(sum(out["shares"].values()) - 1.0) < 1e-6


def test_the_python_api_reads_the_old_study(tmp_path, monkeypatch):
    where = _copy(tmp_path)
    monkeypatch.chdir(where)
    study = ptplan.Study("plan.yaml")
    table = study.table()
    assert table.height == 3 and set(table["state"]) == {"COMPLETE"}
    assert study.status().counts == {"COMPLETE": 3}
    assert ptplan.recommend(study).n_complete == 3
