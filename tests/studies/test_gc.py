"""`ptplan gc`: a LoRA study keeps adapters (small) and frees what no kept result needs; resume still works."""

import json
from pathlib import Path

import pytest


@pytest.mark.integration
def test_gc_frees_unneeded_stages_and_resume_still_works(micro_plan, ptplan, tmp_path):
    plan = micro_plan({"sampler": "grid", "search": {"allocation.rl.rank": {"choices": [4, 8]}}},
                      allocation={"sft": {"rank": 8}})
    run = ptplan("run", plan, "--trials", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    status = ptplan("status", plan)
    assert "stage store: 4 checkpoints" in status.stdout  # one CPT + SFT shared, two RL adapters
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "trials").glob("*/result.json"))]
    assert all(r["stages"]["sft"]["adapter"] and r["stages"]["rl"]["adapter"] for r in results)
    assert all(r["stages"]["rl"]["bytes"] < r["stages"]["cpt"]["bytes"] / 3 for r in results)

    dry = ptplan("gc", plan, "--keep", "none", "--dry-run")
    assert dry.returncode == 0 and "would remove 4 stage checkpoints" in dry.stdout
    assert len(list((tmp_path / "run" / "stages").glob("*-*"))) == 4  # nothing removed
    final = ptplan("gc", plan, "--keep", "final")
    assert final.returncode == 0 and "removed 0 stage checkpoints" in final.stdout  # both finals need all four
    best = ptplan("gc", plan, "--keep", "none")
    assert best.returncode == 0 and "removed 4 stage checkpoints" in best.stdout
    assert not list((tmp_path / "run" / "stages").glob("*-*"))

    trial = Path(results[0]["stages"]["cpt"]["checkpoint"]).parents[2] / "trials" / "0"
    before = (trial / "result.json").read_bytes()
    again = ptplan("trial", "--resume", trial)  # retrains what gc freed, keeps the complete record
    assert again.returncode == 0, again.stdout + again.stderr
    assert (trial / "result.json").read_bytes() == before and list((trial / "attempts").glob("*/result.json"))
