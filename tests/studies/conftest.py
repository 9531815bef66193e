"""Study fixtures: a micro plan (one real trial in a few seconds on the CPU) and a `ptplan` runner."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# One real trial of the 0.5M built-in Llama in ~1-3 s: budget in epochs so every stage gets whole
# steps (batch = training set), evaluation on 8 + 8 prompts at the start and end of each stage.
MICRO = {
    "name": "micro",
    "seed": 0,
    "backbone": {"name": "llama-0.5m"},
    "data": {"suite": "genomics", "sizes": {"cpt": 16, "sft": 16, "rl": 4, "id_test": 8, "ood_test": 8}},
    "budget": {"total": 10, "unit": "epochs"},
    "allocation": {
        "shares": {"cpt": 0.2, "sft": 0.4, "rl": 0.4},
        "cpt": {"rank": 0, "lr": 3.0e-3, "batch_size": 16, "warmup_steps": 0},
        "sft": {"rank": 0, "lr": 3.0e-3, "batch_size": 16, "warmup_steps": 0},
        "rl": {"rank": 4, "lr": 1.0e-4, "batch_size": 4, "generations": 2, "max_completion_length": 8,
               "warmup_steps": 0},
    },
    "eval": {"points": {"cpt": 1, "sft": 1, "rl": 1}, "batch_size": 16},
    "device": "cpu",
}

from ptplan.testing import MICRO_SETS  # noqa: E402,F401 - the micro sizes as `--set` overrides

# One compute thread per process: on a shared 2-core machine, several multi-threaded torch
# processes slow each other down by orders of magnitude.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}
PTPLAN = [sys.executable, "-m", "ptplan._cli"]


def _merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def micro_plan(tmp_path):
    """Write a micro plan with a `study:` section (and nested overrides) to a file; returns its path."""

    def make(study: dict | None = None, file: str = "plan.yaml", **over) -> Path:
        data = _merge(MICRO, over)
        data["study"] = {"dir": str(tmp_path / "run"), **(study or {})}
        path = tmp_path / file
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make


def run_ptplan(*args, cwd=None, timeout=240, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*PTPLAN, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**ENV, **(env or {})})


def spawn_ptplan(*args, cwd=None, env=None) -> subprocess.Popen:
    return subprocess.Popen([*PTPLAN, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=cwd, env={**ENV, **(env or {})})


@pytest.fixture
def ptplan():
    return run_ptplan


@pytest.fixture
def spawn():
    return spawn_ptplan


def open_plan_study(plan, overrides=()):
    """(StudyPlan, admin study handle) of a plan file or preset, for assertions."""
    from ptplan.studies import read_plan as load_plan
    from ptplan.studies import StudyPlan, open_session

    data, source = load_plan(str(plan))
    sp = StudyPlan.from_mapping(data, list(overrides), source)
    session = open_session(sp, create=False, must_exist=sp.study.storage is None, check=False)
    return sp, session.admin


@pytest.fixture
def study_of():
    return open_plan_study
