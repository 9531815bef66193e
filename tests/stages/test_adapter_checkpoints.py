"""LoRA stages save their adapter only (MB for a real model), merged into its base when loaded."""

import pytest
import torch

from ptplan.stages import run_trial
from ptplan.stages._backbones import BASE_FILE, load_checkpoint


@pytest.mark.integration
def test_lora_stages_store_adapters_and_reload_to_the_trained_weights(tiny_config, tmp_path):
    cfg = tiny_config(allocation={"shares": {"cpt": 0.3, "sft": 0.4, "rl": 0.3}, "sft": {"rank": 8},
                                  "rl": {"rank": 4}}, budget={"total": 5e10})
    res = run_trial(cfg, tmp_path)
    stages = res["stages"]
    assert not stages["cpt"]["adapter"] and stages["sft"]["adapter"] and stages["rl"]["adapter"]
    for name in ("sft", "rl"):
        folder = tmp_path / "stages" / f"{name}-{stages[name]['key']}" / "model"
        files = {p.name for p in folder.iterdir()}
        assert {"adapter_model.safetensors", "adapter_config.json", BASE_FILE} <= files
        assert not any(f.startswith("model") and f.endswith(".safetensors") for f in files)  # no full copy
        assert stages[name]["bytes"] < stages["cpt"]["bytes"] / 3
    # The RL adapter applies to SFT's, which applies to CPT's full weights: loading walks the chain.
    import json
    from pathlib import Path

    def base_of(name):
        folder = Path(stages[name]["checkpoint"])
        return (folder / json.loads((folder / BASE_FILE).read_text())["checkpoint"]).resolve()

    assert base_of("rl") == Path(stages["sft"]["checkpoint"]).resolve()
    assert base_of("sft") == Path(stages["cpt"]["checkpoint"]).resolve()
    cpt, _ = load_checkpoint(stages["cpt"]["checkpoint"])
    sft, _ = load_checkpoint(stages["sft"]["checkpoint"])
    rl, _ = load_checkpoint(stages["rl"]["checkpoint"])
    names = [n for n, _ in cpt.named_parameters() if "proj" in n]
    diff = lambda a, b: sum((dict(a.named_parameters())[n] - dict(b.named_parameters())[n]).abs().sum().item()
                            for n in names)  # noqa: E731
    assert diff(sft, cpt) > 0  # SFT's training is in its adapter (RL's may be zero: flat rewards here)
    with torch.no_grad():  # reloading an adapter checkpoint is deterministic
        again, _ = load_checkpoint(stages["rl"]["checkpoint"])
        assert diff(again, rl) == 0
