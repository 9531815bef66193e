"""`ptplan trial` end to end: the smoke preset as a user runs it, and bad input."""

import json
import subprocess
import sys

import pytest

PTPLAN = [sys.executable, "-m", "ptplan._cli"]


def ptplan(*args, cwd=None, timeout=300):
    return subprocess.run([*PTPLAN, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_smoke_trial_writes_everything_and_every_stage_trains(tmp_path):
    import pyarrow.parquet as pq

    from ptplan.stages import load_backbone
    from ptplan.stages._backbones import load_checkpoint

    out = tmp_path / "smoke"
    proc = ptplan("trial", "smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("config.yaml", "curves.parquet", "result.json", "trial.log"):
        assert (out / name).stat().st_size > 0, name
    res = json.loads((out / "result.json").read_text())
    assert res["status"] == "complete" and res["failure"] is None

    curves = pq.read_table(out / "curves.parquet").to_pylist()
    assert {"start", "cpt", "sft", "rl"} <= {p["stage"] for p in curves}
    assert all(0.0 <= p["id"] <= 1.0 and 0.0 <= p["ood"] <= 1.0 for p in curves)
    assert all(p["loss"] is not None and p["loss"] == p["loss"] for p in curves if p["stage"] != "start")
    computes = [p["compute"] for p in curves]
    assert computes == sorted(computes)
    assert any(p["reward"] is not None for p in curves if p["stage"] == "rl")

    unit = res["ledger"]["unit"]
    for stage, st in res["ledger"]["stages"].items():
        spent = st["spent"]
        assert spent["steps"] >= 1, stage
        assert st["slice"] <= spent[unit] <= st["slice"] + spent[unit] / spent["steps"] * 1.5, stage
    assert res["ledger"]["spent"][unit] <= res["ledger"]["total"] * 1.1
    assert 0 <= res["final"]["id"] <= 1 and 0 <= res["final"]["ood"] <= 1
    assert res["ood_peak"] is not None and 0 <= res["ood_peak"]["fraction"] <= 1

    # weights changed in every stage that ran
    before, _ = load_backbone("llama-0.5m", seed=res.get("seed", 0))
    prev = _params(before)
    for stage in ("cpt", "sft", "rl"):
        model, _ = load_checkpoint(res["stages"][stage]["checkpoint"])
        now = _params(model)
        delta = max((now[k] - prev[k]).abs().max().item() for k in now)
        assert delta > 0, f"{stage} did not change any weight"
        prev = now
    assert "final ID" in proc.stdout

    # --resume on a finished trial trains nothing again and reproduces the record in a new attempt folder,
    # leaving the complete result as it was
    kept = (out / "result.json").read_bytes()
    again = ptplan("trial", "--resume", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "result.json").read_bytes() == kept
    res2 = json.loads((out / "attempts" / "1" / "result.json").read_text())
    assert all(st["reused"] for st in res2["ledger"]["stages"].values())
    assert res2["final"] == res["final"] and res2["ledger"]["spent"] == res["ledger"]["spent"]


def test_malformed_plan_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("budget:\n  total: [1, 2\n")
    proc = ptplan("trial", str(bad), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "bad.yaml" in proc.stderr and "line" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("override, field", [("allocation.sft.rank=3", "allocation.sft.rank"),
                                             ("allocation.shares.sft=1.4", "allocation.shares.sft"),
                                             ("budget.colour=red", "budget.colour")])
def test_bad_override_names_the_field(tmp_path, override, field):
    proc = ptplan("trial", "smoke", "--set", override, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert f"`{field}`" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_unknown_preset_lists_the_presets(tmp_path):
    proc = ptplan("trial", "nonesuch")
    assert proc.returncode == 2 and "smoke" in proc.stderr
