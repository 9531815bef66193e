"""Real training on a tiny model: the budget stop, the ledger, failures and resume."""

import json

import pytest

from ptplan.stages import TrialFailed, run_trial
from ptplan.stages._ledger import train_flops_per_token

pytestmark = pytest.mark.integration


def _result(path):
    return json.loads((path / "result.json").read_text())


@pytest.mark.parametrize("unit,total", [("flops", 4e10), ("tokens", 8000), ("examples", 160), ("epochs", 0.5),
                                        ("seconds", 1.5)])
def test_budget_stop_and_ledger_in_every_unit(tiny_config, tmp_path, unit, total):
    from ptplan.stages.record import CURVE_COLUMNS, RESULT_KEYS

    cfg = tiny_config(budget={"total": total, "unit": unit})
    res = run_trial(cfg, tmp_path)
    assert tuple(_result(tmp_path)) == RESULT_KEYS  # the record contract, ptplan.stages.record.TrialResult
    import pyarrow.parquet as pq

    assert pq.read_schema(tmp_path / "curves.parquet").names == list(CURVE_COLUMNS)
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

    import ptplan.stages._backbones as backbones

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

    from ptplan.stages import _stages

    def boom(self, model, tokenizer, ctx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(_stages.SFTStage, "run", boom)
    with pytest.raises(TrialFailed) as info:
        run_trial(tiny_config(), tmp_path)
    assert info.value.reason == "oom"
    assert _result(tmp_path)["failure"]["reason"] == "oom"


def test_eval_crash_keeps_the_stage_and_resume_runs_only_what_is_missing(tiny_config, tmp_path, monkeypatch):
    import ptplan.stages._trial as trial_mod
    from ptplan.stages import _stages

    cfg = tiny_config(allocation={"shares": {"cpt": 0.5, "sft": 0.5, "rl": 0.0}}, budget={"total": 8e10})
    real_eval = trial_mod.TrialRunner._evaluate
    calls = {"n": 0}

    def crash_on_final_sft(self, stage, model, tokenizer, step, spent, loss=None, reward=None, **kw):
        if stage == "sft" and (tmp_path / "stages").exists() and any(
            (p / "record.json").exists() for p in (tmp_path / "stages").glob("sft-*")):
            raise RuntimeError("evaluation process killed")
        return real_eval(self, stage, model, tokenizer, step, spent, loss, reward, **kw)

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
    from ptplan.stages import ConfigMismatch

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
    from ptplan.stages import load_backbone
    from ptplan.stages._backbones import save_checkpoint

    model, tok = load_backbone("llama-0.5m", seed=3)
    save_checkpoint(model, tok, tmp_path / "my-model")
    cfg = tiny_config(backbone={"path": str(tmp_path / "my-model")}, budget={"total": 2e10})
    res = run_trial(cfg, tmp_path / "out")
    assert res["status"] == "complete" and res["parameters"] == sum(p.numel() for p in model.parameters())
    assert res["ledger"]["stages"]["sft"]["spent"]["steps"] >= 1


def test_handover_moves_the_rest_of_sft_to_rl(tiny_config, tmp_path):
    calls = []

    def switch_at_first_eval(curve, eval_points):  # the policy a caller hands the runner
        calls.append((len(curve), eval_points, curve[-1][0]))
        return "test policy: peak passed"

    cfg = tiny_config(allocation={"shares": {"cpt": 0.0, "sft": 0.6, "rl": 0.4}, "rl": {"handover": "predicted-peak"}},
                      eval={"points": {"sft": 4, "rl": 1}}, budget={"total": 4e10})
    res = run_trial(cfg, tmp_path, handover_policy=switch_at_first_eval)
    led, hand = res["ledger"], res["handover"]
    assert len(calls) == 1 and hand["switched"] and hand["reason"] == "test policy: peak passed"
    (n, points, seen), = calls
    assert n == 2 and points == 4 and 0.2 <= seen <= 0.3  # the start point and SFT's first evaluation at 1/4
    sft, rl = led["stages"]["sft"], led["stages"]["rl"]
    assert sft["spent"]["flops"] < sft["slice"] * 0.5  # stopped at the first of 4 evaluation points
    assert hand["moved_to_rl"] == pytest.approx(sft["slice"] - sft["spent"]["flops"])
    assert rl["slice"] == pytest.approx(0.4 * 4e10 + hand["moved_to_rl"])
    assert rl["spent"]["flops"] >= rl["slice"]  # RL spent the larger slice
    assert led["spent"]["flops"] >= 4e10 * (1 - 1e-9)  # the whole budget is used, not lost


def test_predicted_peak_needs_a_policy(tiny_config, tmp_path):
    """stages/ never imports the surrogates: without a policy a predicted-peak trial is refused
    before any training (`ptplan.run_trial` and the study objective pass the curve model's)."""
    from ptplan.stages import ConfigError

    cfg = tiny_config(allocation={"shares": {"cpt": 0.3, "sft": 0.4, "rl": 0.3}, "rl": {"handover": "predicted-peak"}})
    with pytest.raises(TrialFailed, match="allocation.rl.handover") as err:
        run_trial(cfg, tmp_path)
    assert isinstance(err.value.__cause__, ConfigError) and not list(tmp_path.glob("stages/*/model"))


def test_predicted_peak_policy_decides_from_the_curve(tiny_config, tmp_path):
    from ptplan.stages import CurvePoint
    from ptplan.stages._stages import StageContext
    from ptplan.stages._trial import TrialRunner
    from ptplan.surrogates import peak_handover

    cfg = tiny_config(allocation={"shares": {"cpt": 0.0, "sft": 0.5, "rl": 0.5}, "rl": {"handover": "predicted-peak"}})
    runner = TrialRunner(cfg, tmp_path)
    ctx = StageContext(name="sft", config=cfg.allocation.sft, slice=100.0, unit="flops", data=None, n_params=1,
                       eval_points=8, evaluate=None)
    decide = runner._peak_policy(ctx, peak_handover(cfg.allocation.rl.handover_confidence))

    def curve(oods):
        runner.points = [CurvePoint("start", 0, 0.0, 0, 0, 0.0, oods[0], None, None)]
        runner.points += [CurvePoint("sft", i, 100.0 * i / 8, 0, 0, 0.1 * i, o, 1.0, None)
                          for i, o in enumerate(oods[1:], start=1)]

    curve([0.0, 0.40, 0.60, 0.45, 0.30, 0.20])  # rose, peaked at 2/8, fell three times in a row
    assert decide(None) is not None and "peak" in decide(None)
    curve([0.0, 0.10, 0.20, 0.30])  # still rising steeply at 3/8
    assert decide(None) is None


def test_a_reused_stage_reports_its_recorded_points(tiny_config, tmp_path):
    """A sibling trial reusing a stage's checkpoint streams the same points to `on_point` as the trial
    that trained it, so pruners and reporters see one curve whether a stage was trained or reused."""
    cfg = tiny_config(allocation={"shares": {"cpt": 0.5, "sft": 0.5, "rl": 0.0}}, budget={"total": 8e10})
    first, second = [], []
    run_trial(cfg, tmp_path / "a", tmp_path / "store", on_point=first.append)
    res = run_trial(cfg, tmp_path / "b", tmp_path / "store", on_point=second.append)
    assert res["stages"]["cpt"]["reused"] and res["stages"]["sft"]["reused"]
    assert [p.stage for p in first].count("sft") >= 2
    key = [(p.stage, p.step, p.compute, p.id, p.ood) for p in first]
    assert [(p.stage, p.step, p.compute, p.id, p.ood) for p in second] == key
