"""GPU options from a plan, the memory estimate that refuses what cannot fit, and tracking."""

import pytest

from ptplan.stages import ConfigError, TrialConfig, run_trial
from ptplan.stages._accel import GIB, ModelShape, check_accel, check_memory, estimate_memory, trainer_args

# Qwen3-4B's shape (config.json of the hub model), for the estimate only: nothing is built.
QWEN3_4B = ModelShape(params=4_022_468_096, layers=36, hidden=2560, heads=32, kv_heads=8, head_dim=128,
                      vocab=151_936, intermediate=9728)


@pytest.mark.parametrize("accel, field, says", [
    ({"bf16": "on"}, "accel.bf16", "CUDA"), ({"liger": True}, "accel.liger", "CUDA"),
    ({"padding_free": True}, "accel.padding_free", "CUDA"), ({"rl_generation": "vllm"}, "accel.rl_generation", "CUDA"),
    ({"eval_engine": "vllm"}, "accel.eval_engine", "not built yet"),
])
def test_a_gpu_option_on_the_cpu_is_refused_with_the_field(accel, field, says):
    cfg = TrialConfig.from_dict({"accel": accel})
    with pytest.raises(ConfigError, match=says) as err:
        check_accel(cfg.accel, use_cuda=False)
    assert err.value.path == field


def test_defaults_stay_off_on_the_cpu():
    args = trainer_args(TrialConfig().accel, use_cuda=False, stage="sft")
    assert args == {"bf16": False, "gradient_checkpointing": False}
    check_accel(TrialConfig().accel, use_cuda=False)


def test_memory_estimate_refuses_full_fine_tuning_of_a_4b_model_on_an_80gb_card():
    full = estimate_memory(QWEN3_4B, stage="sft", rank=0, batch=8, seq=1024, bf16=True)
    assert full["weights"] == pytest.approx(16.1e9, rel=0.01) and full["optimizer"] == 2 * full["weights"]
    with pytest.raises(ConfigError, match=r"needs about \d+\.\d GiB .*optimizer 30\.0.*has 80\.0 GiB") as err:
        check_memory(full, 80 * GIB, "allocation.sft")
    assert err.value.path == "allocation.sft"
    lora = estimate_memory(QWEN3_4B, stage="sft", rank=16, batch=8, seq=1024, bf16=True, gradient_checkpointing=True)
    assert lora["optimizer"] < 0.01 * full["optimizer"] and lora["total"] < 0.5 * 80 * GIB
    check_memory(lora, 80 * GIB, "allocation.sft")  # fits
    grpo = estimate_memory(QWEN3_4B, stage="rl", rank=16, batch=64 * 8, seq=512, bf16=True, completion=1024)
    assert grpo["generation_cache"] > 0 and grpo["total"] > 80 * GIB  # the seed's protein GRPO cells


def test_memory_grows_with_batch_and_shrinks_with_checkpointing():
    a = estimate_memory(QWEN3_4B, stage="sft", rank=16, batch=4, seq=512, bf16=True)
    b = estimate_memory(QWEN3_4B, stage="sft", rank=16, batch=8, seq=512, bf16=True)
    c = estimate_memory(QWEN3_4B, stage="sft", rank=16, batch=8, seq=512, bf16=True, gradient_checkpointing=True)
    assert a["activations"] * 2 == pytest.approx(b["activations"]) and c["activations"] < b["activations"] / 5


@pytest.mark.integration
def test_tensorboard_tracking_writes_one_run_per_stage(tiny_config, tmp_path):
    pytest.importorskip("tensorboard")
    cfg = tiny_config(allocation={"shares": {"cpt": 0.5, "sft": 0.5, "rl": 0.0}}, budget={"total": 4e10})
    cfg.tracking = "tensorboard"
    res = run_trial(cfg, tmp_path)
    assert res["status"] == "complete"
    for stage in ("cpt", "sft"):
        events = list((tmp_path / "tracking" / stage).rglob("events.out.tfevents.*"))
        assert events and events[0].stat().st_size > 0, stage
