"""Real training on a tiny model: the budget stop, the ledger, failures and resume."""

import json

import pytest

from stages import TrialFailed, run_trial
from stages._ledger import train_flops_per_token

pytestmark = pytest.mark.integration


def _result(path):
    return json.loads((path / "result.json").read_text())


@pytest.mark.parametrize("unit,total", [("flops", 4e10), ("tokens", 8000), ("examples", 160), ("epochs", 0.5),
                                        ("seconds", 1.5)])
def test_budget_stop_and_ledger_in_every_unit(tiny_config, tmp_path, unit, total):
    cfg = tiny_config(budget={"total": total, "unit": unit})
    res = run_trial(cfg, tmp_path)
    sft = res["ledger"]["stages"]["sft"]
    spent, steps = sft["spent"], sft["spent"]["steps"]
    assert steps >= 1
    # stops when the slice is spent, never more than one optimizer step over it
    assert spent[unit] >= sft["slice"]
    per_step = spent[unit] / steps
    assert spent[unit] - sft["slice"] <= per_step * 1.5 + 1e-9
    # every unit is recorded, and they agree with each other
    n = res["parameters"]
    assert spent["flops"] == pytest.approx(spent["tokens"] * train_flops_per_token(n, 0))
    assert spent["examples"] == steps * 16
    assert spent["epochs"] == pytest.approx(spent["examples"] / 200)
    assert spent["seconds"] > 0
    # evaluation is recorded but not charged
    assert sft["eval"]["tokens"] > 0 and res["ledger"]["spent"][unit] == spent[unit]


def test_budget_too_small_is_refused_before_training(tiny_config, tmp_path):
    cfg = tiny_config(budget={"total": 1e6, "unit": "flops"})
    with pytest.raises(TrialFailed) as info:
        run_trial(cfg, tmp_path)
    assert info.value.reason == "budget"
    assert "one optimizer step costs about" in info.value.message and "`budget.total`" in info.value.message
    assert not (tmp_path / "stages").exists()  # nothing was trained
    assert _result(tmp_path)["failure"]["reason"] == "budget"


def test_nan_loss_is_diverged_and_keeps_what_was_recorded(tiny_config, tmp_path, monkeypatch):
    import torch

    import stages._backbones as backbones

    real = backbones.load_backbone

    def poisoned(*args, **kwargs):
        model, tok = real(*args, **kwargs)
        with torch.no_grad():
            model.lm_head.weight.fill_(float("nan"))
        return model, tok

    monkeypatch.setattr(backbones, "load_backbone", poisoned)
    with pytest.raises(TrialFailed) as info:
        run_trial(tiny_config(), tmp_path)
    assert info.value.reason == "diverged" and "nan" in info.value.message.lower()
    res = _result(tmp_path)
    assert res["status"] == "failed" and res["failure"]["reason"] == "diverged"
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "curves.parquet").column("stage").to_pylist() == ["start"]


def test_oom_is_classified(tiny_config, tmp_path, monkeypatch):
    import torch

    from stages import _stages

    def boom(self, model, tokenizer, ctx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(_stages.SFTStage, "run", boom)
    with pytest.raises(TrialFailed) as info:
        run_trial(tiny_config(), tmp_path)
    assert info.value.reason == "oom"
    assert _result(tmp_path)["failure"]["reason"] == "oom"


def test_eval_crash_keeps_the_stage_and_resume_runs_only_what_is_missing(tiny_config, tmp_path, monkeypatch):
    import stages._trial as trial_mod
    from stages import _stages

    cfg = tiny_config(allocation={"shares": {"cpt": 0.5, "sft": 0.5, "rl": 0.0}}, budget={"total": 8e10})
    real_eval = trial_mod.TrialRunner._evaluate
    calls = {"n": 0}

    def crash_on_final_sft(self, stage, model, tokenizer, step, spent, loss=None, reward=None):
        if stage == "sft" and (tmp_path / "stages").exists() and any(
            (p / "record.json").exists() for p in (tmp_path / "stages").glob("sft-*")):
            raise RuntimeError("evaluation process killed")
        return real_eval(self, stage, model, tokenizer, step, spent, loss, reward)

    monkeypatch.setattr(trial_mod.TrialRunner, "_evaluate", crash_on_final_sft)
    with pytest.raises(TrialFailed):
        run_trial(cfg, tmp_path)
    (sft_dir,) = list((tmp_path / "stages").glob("sft-*"))
    record = json.loads((sft_dir / "record.json").read_text())
    assert record["status"] == "trained" and (sft_dir / "model").exists()
    assert _result(tmp_path)["status"] == "failed"

    # resume: no stage may train again, the missing final evaluation runs
    monkeypatch.setattr(trial_mod.TrialRunner, "_evaluate", real_eval)

    def must_not_train(self, *a, **k):
        calls["n"] += 1
        raise AssertionError("a finished stage was retrained")

    monkeypatch.setattr(_stages.CPTStage, "run", must_not_train)
    monkeypatch.setattr(_stages.SFTStage, "run", must_not_train)
    res = run_trial(cfg, tmp_path)
    assert res["status"] == "complete" and calls["n"] == 0
    assert json.loads((sft_dir / "record.json").read_text())["status"] == "done"
    assert res["ledger"]["stages"]["sft"]["spent"]["steps"] == record["spent"]["steps"]
    assert 0.0 <= res["final"]["id"] <= 1.0


def test_resume_refuses_a_changed_config(tiny_config, tmp_path):
    from stages import ConfigMismatch

    run_trial(tiny_config(), tmp_path)
    with pytest.raises(ConfigMismatch, match=r"allocation.sft.lr: 0.003 -> 0.001"):
        run_trial(tiny_config(allocation={"sft": {"lr": 1e-3}}), tmp_path)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _user_files(tmp_path, broken_split=None):
    import random

    rng = random.Random(0)
    comp = {"A": "T", "C": "G", "G": "C", "T": "A"}

    def rows(n, lo, hi):
        out = []
        for _ in range(n):
            s = "".join(rng.choice("ACGT") for _ in range(rng.randint(lo, hi)))
            out.append({"prompt": f"rc:{s}=", "answer": "".join(comp[c] for c in reversed(s))})
        return out

    files = {split: _write_jsonl(tmp_path / f"{split}.jsonl", rows(n, lo, hi))
             for split, n, lo, hi in [("sft", 64, 4, 8), ("rl", 16, 4, 8), ("id", 8, 4, 8), ("ood", 8, 10, 12)]}
    if broken_split:
        _write_jsonl(tmp_path / f"{broken_split}.jsonl", [{"prompt": "rc:ACG=", "reply": "CGT"}])
    return files


def test_missing_column_is_data_error_before_training(tiny_config, tmp_path):
    files = _user_files(tmp_path, broken_split="ood")
    with pytest.raises(TrialFailed) as info:
        run_trial(tiny_config(data={"files": files, "suite": None}), tmp_path / "out")
    assert info.value.reason == "data_error"
    assert "ood.jsonl" in info.value.message and "answer" in info.value.message
    assert not (tmp_path / "out" / "stages").exists()


def test_reward_that_raises_is_reward_error_and_earlier_stages_are_kept(tiny_config, tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "def broken(completions, answer, **kw):\n"
        "    if 'trainer_state' in kw:  # fails only on sampled RL completions, not on greedy evaluation\n"
        "        raise KeyError('gene symbol table missing')\n"
        "    return [float(c.strip() == a) for c, a in zip(completions, answer)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    files = _user_files(tmp_path)
    cfg = tiny_config(data={"files": files, "suite": None, "scorer": "my_rewards:broken"},
                      allocation={"shares": {"cpt": 0.0, "sft": 0.5, "rl": 0.5}}, budget={"total": 2e10})
    with pytest.raises(TrialFailed) as info:
        run_trial(cfg, tmp_path / "out")
    assert info.value.reason == "reward_error" and "gene symbol table missing" in info.value.message
    res = _result(tmp_path / "out")
    assert res["failure"]["reason"] == "reward_error"
    assert res["ledger"]["stages"]["sft"]["spent"]["steps"] >= 1  # the finished SFT stage is recorded
    assert list((tmp_path / "out" / "stages").glob("sft-*/model"))  # and its checkpoint kept


def test_backbone_from_a_local_folder(tiny_config, tmp_path):
    from stages import load_backbone
    from stages._backbones import save_checkpoint

    model, tok = load_backbone("llama-0.5m", seed=3)
    save_checkpoint(model, tok, tmp_path / "my-model")
    cfg = tiny_config(backbone={"path": str(tmp_path / "my-model")}, budget={"total": 2e10})
    res = run_trial(cfg, tmp_path / "out")
    assert res["status"] == "complete" and res["parameters"] == sum(p.numel() for p in model.parameters())
    assert res["ledger"]["stages"]["sft"]["spent"]["steps"] >= 1
