"""Stage hand-offs cannot alias: every stage starts from the checkpoint it should, and the last recorded
point of each stage is what its saved checkpoint scores when loaded fresh from disk.

Real training of the 0.5M built-in Llama for a few steps per stage, in every start mode.
"""

import json

import pytest
import torch

import ptplan.stages._eval as eval_mod
import ptplan.stages._stages as stages_mod
import ptplan.stages._trial as trial_mod
from ptplan.stages import run_trial
from ptplan.stages._backbones import load_backbone, load_checkpoint
from ptplan.stages._trial import load_task_data

pytestmark = pytest.mark.integration

# Budget in epochs with batch = training set: every stage gets whole steps, fast.
MICRO = {
    "data": {"suite": "genomics", "sizes": {"cpt": 16, "sft": 16, "rl": 4, "id_test": 8, "ood_test": 8}},
    "budget": {"total": 10, "unit": "epochs"},
    "allocation": {
        "shares": {"cpt": 0.2, "sft": 0.4, "rl": 0.4},
        "cpt": {"rank": 0, "lr": 3e-3, "batch_size": 16, "warmup_steps": 0},
        "sft": {"rank": 0, "lr": 3e-3, "batch_size": 16, "warmup_steps": 0},
        "rl": {"rank": 4, "lr": 1e-3, "batch_size": 4, "generations": 2, "max_completion_length": 8,
               "warmup_steps": 0, "beta": 1e-3},
    },
    "eval": {"points": {"cpt": 2, "sft": 3, "rl": 2}, "batch_size": 16},
}
PROBE = "rc:ACGTTGCA="  # a fixed input whose logits identify a model


def _logits(model) -> torch.Tensor:
    from ptplan.stages._backbones import char_tokenizer

    ids = char_tokenizer()(PROBE, return_tensors="pt", add_special_tokens=False)["input_ids"]
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(input_ids=ids.to(device)).logits.float().cpu()
    model.train(was)
    return out


class _Spy:
    """Records, per stage, the logits of the model a stage receives and the completions of each evaluation."""

    def __init__(self, monkeypatch):
        self.incoming: dict[str, torch.Tensor] = {}
        self.evals: list[tuple[str, list[str]]] = []
        self._buffer: list[str] = []
        real_run, real_eval, real_point = stages_mod._TrainerStage.run, eval_mod.evaluate, trial_mod.TrialRunner._evaluate
        spy = self

        def run(stage, model, tokenizer, ctx):
            spy.incoming[ctx.name] = _logits(model)
            return real_run(stage, model, tokenizer, ctx)

        def evaluate(*args, **kwargs):
            res = real_eval(*args, **kwargs)
            spy._buffer += res.completions
            return res

        def point(runner, stage, *args, **kwargs):
            spy._buffer = []
            out = real_point(runner, stage, *args, **kwargs)
            spy.evals.append((stage, list(spy._buffer)))
            return out

        monkeypatch.setattr(stages_mod._TrainerStage, "run", run)
        monkeypatch.setattr(eval_mod, "evaluate", evaluate)
        monkeypatch.setattr(trial_mod.TrialRunner, "_evaluate", point)

    def last_completions(self, stage: str) -> list[str] | None:
        found = [c for s, c in self.evals if s == stage]
        return found[-1] if found else None


def _fresh(cfg, checkpoint):
    """ID/OOD score and completions of a checkpoint loaded from disk, evaluated as a trial does."""
    model, tok = load_checkpoint(checkpoint)
    data = load_task_data(cfg)
    answers = [e.answer for e in data.id_test + data.ood_test]
    mnt = cfg.eval.max_new_tokens or max(len(i) for i in tok(answers, add_special_tokens=False)["input_ids"]) + 2
    from ptplan.stages._scoring import score_settled

    def settled(completion, example):  # the trial's rule: a row stops once its score cannot change
        return score_settled(data.scorer(example.task), completion, example.answer)

    ids = eval_mod.evaluate(model, tok, data.id_test, data.score, mnt, cfg.eval.batch_size, settled=settled)
    ood = eval_mod.evaluate(model, tok, data.ood_test, data.score, mnt, cfg.eval.batch_size, settled=settled)
    return ids, ood, model


def _check_invariants(cfg, out, spy: _Spy, reused=()):
    import pyarrow.parquet as pq

    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "complete"
    points = pq.read_table(out / "curves.parquet").to_pylist()
    models = {}
    for stage, info in result["stages"].items():
        assert info["reused"] == (stage in reused), stage
        ids, ood, models[stage] = _fresh(cfg, info["checkpoint"])
        last = [p for p in points if p["stage"] == stage][-1]
        assert last["step"] == result["ledger"]["stages"][stage]["spent"]["steps"]
        assert (last["id"], last["ood"]) == (ids.score, ood.score), stage
        assert json.loads(last["id_tasks"]) == ids.by_task and json.loads(last["ood_tasks"]) == ood.by_task
        if stage not in reused:  # the stage's final evaluation saw exactly what the checkpoint generates
            assert spy.last_completions(stage) == ids.completions + ood.completions, stage
    # what each trained stage received: the backbone, then the previous stage's checkpoint (cold RL: CPT's)
    expected_input = {"cpt": None, "sft": "cpt", "rl": "cpt" if cfg.allocation.rl.start == "cold" else "sft"}
    for stage, logits in spy.incoming.items():
        source = expected_input[stage]
        if source is None or source not in models:
            ref, _ = load_backbone(cfg.backbone.name, seed=cfg.seed)
        else:
            ref = models[source]
        torch.testing.assert_close(logits, _logits(ref), rtol=0, atol=1e-5, msg=f"{stage} got the wrong model")
    return result, models


def _merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("over", [
    pytest.param({}, id="warm-full-cpt-sft-lora-rl"),
    pytest.param({"allocation": {"rl": {"start": "cold"}}}, id="cold"),
    pytest.param({"allocation": {"cpt": {"rank": 8}, "sft": {"rank": 16}, "rl": {"rank": 4}}}, id="lora-everywhere"),
    pytest.param({"allocation": {"rl": {"rank": 0}}}, id="full-everywhere"),
    pytest.param({"allocation": {"shares": {"cpt": 0.0, "sft": 0.5, "rl": 0.5}, "rl": {"start": "cold"}}},
                 id="cold-without-cpt"),
])
def test_each_stage_records_what_its_checkpoint_scores(tiny_config, tmp_path, monkeypatch, over):
    cfg = tiny_config(**_merge(MICRO, over))
    spy = _Spy(monkeypatch)
    run_trial(cfg, tmp_path)
    assert set(spy.incoming) == {s for s in ("cpt", "sft", "rl") if cfg.allocation.shares[s] > 0}
    _check_invariants(cfg, tmp_path, spy)


def test_cold_start_rl_starts_from_the_cpt_weights(tiny_config, tmp_path, monkeypatch):
    """The RL stage of a cold start trains the CPT checkpoint: its incoming weights are CPT's, bit for bit."""
    cfg = tiny_config(**_merge(MICRO, {"allocation": {"rl": {"start": "cold"}}}))
    seen = {}
    real_run = stages_mod.RLStage.run

    def run(stage, model, tokenizer, ctx):
        seen["weights"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        seen["logits"] = _logits(model)  # weights alone do not show an aliased `forward`
        return real_run(stage, model, tokenizer, ctx)

    monkeypatch.setattr(stages_mod.RLStage, "run", run)
    result = run_trial(cfg, tmp_path)
    cpt, _ = load_checkpoint(result["stages"]["cpt"]["checkpoint"])
    sft, _ = load_checkpoint(result["stages"]["sft"]["checkpoint"])
    for name, value in cpt.state_dict().items():
        assert torch.equal(seen["weights"][name], value), name
    torch.testing.assert_close(seen["logits"], _logits(cpt), rtol=0, atol=0)
    assert not torch.allclose(seen["logits"], _logits(sft))


def test_handover_point_is_taken_on_the_checkpoint(tiny_config, tmp_path, monkeypatch):
    """A hand-over ends SFT right after an intermediate evaluation; its last point is re-taken on the
    saved checkpoint, and RL receives that checkpoint."""
    cfg = tiny_config(**_merge(MICRO, {"allocation": {"rl": {"handover": "predicted-peak"}}}))
    spy = _Spy(monkeypatch)
    result = run_trial(cfg, tmp_path, handover_policy=lambda curve, points: "hand over (test)")
    assert result["handover"]["switched"] and result["handover"]["reason"] == "hand over (test)"
    assert result["handover"]["at_fraction"] < 1.0
    _check_invariants(cfg, tmp_path, spy)
    import pyarrow.parquet as pq

    sft_steps = [p["step"] for p in pq.read_table(tmp_path / "curves.parquet").to_pylist() if p["stage"] == "sft"]
    assert len(sft_steps) == len(set(sft_steps))  # the re-taken point replaced the live one


def test_reused_stages_hand_over_their_checkpoint(tiny_config, tmp_path, monkeypatch):
    """A sibling trial that shares CPT and SFT reuses both and starts RL from the SFT checkpoint on disk."""
    store = tmp_path / "stages"
    first = tiny_config(**MICRO)
    run_trial(first, tmp_path / "a", store)
    second = tiny_config(**_merge(MICRO, {"allocation": {"rl": {"lr": 3e-3}}}))
    spy = _Spy(monkeypatch)
    run_trial(second, tmp_path / "b", store)
    assert set(spy.incoming) == {"rl"}
    _check_invariants(second, tmp_path / "b", spy, reused=("cpt", "sft"))
