"""Preflight in process: each check passes on a good plan and names what is wrong on a bad one."""

import json

import pytest

from ptplan.studies import PreflightError, StudyPlan, preflight

from conftest import MICRO

pytestmark = pytest.mark.integration


def _plan(tmp_path, search=None, **over):
    data = json.loads(json.dumps(MICRO))
    data.update(over)
    data["study"] = {"dir": str(tmp_path / "run"), **({"search": search} if search else {})}
    return StudyPlan.from_mapping(data)


def test_a_good_plan_passes_every_check(tmp_path):
    lines = []
    checks = preflight(_plan(tmp_path), echo=lines.append)
    assert [c.name for c in checks] == ["data", "scorer", "backbone", "budget", "evaluation", "one step"]
    assert "one optimizer step of cpt, sft, rl" in lines[-1] and all(c.seconds >= 0 for c in checks)


def test_a_reward_that_raises_is_named(tmp_path, monkeypatch):
    (tmp_path / "badreward.py").write_text("def score(completions, answer, **kw):\n    raise KeyError('label')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for split in ("id", "ood", "rl", "sft"):
        (tmp_path / f"{split}.jsonl").write_text(json.dumps({"prompt": "rc:ACG=", "answer": "CGT"}) + "\n")
    files = {s: str(tmp_path / f"{s}.jsonl") for s in ("id", "ood", "rl", "sft")}
    plan = _plan(tmp_path, data={"files": files, "scorer": "badreward:score"},
                 allocation={**MICRO["allocation"], "shares": {"cpt": 0.0, "sft": 0.5, "rl": 0.5},
                             "sft": {**MICRO["allocation"]["sft"], "batch_size": 1},
                             "rl": {**MICRO["allocation"]["rl"], "batch_size": 1}})
    with pytest.raises(PreflightError, match=r"preflight \(scorer\): data.scorer raised RewardError .*badreward:score"):
        preflight(plan, train_steps=False)


def test_a_corner_of_the_space_that_cannot_pay_one_step_is_named(tmp_path):
    plan = _plan(tmp_path, search={"allocation.shares.cpt": {"low": 0.0001, "high": 0.5}})
    with pytest.raises(PreflightError, match=r"preflight \(budget\): at shares 0\.00/.*one optimizer step costs"):
        preflight(plan, train_steps=False)
