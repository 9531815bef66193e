import pytest

from ptplan.stages._ledger import Ledger, Spend, rl_flops_per_token, train_flops_per_token


def test_flops_per_token_rules():
    n = 1000
    assert train_flops_per_token(n, 0) == 6 * n  # all weights trained
    assert train_flops_per_token(n, 16) == 4 * n  # frozen base (LoRA)
    assert rl_flops_per_token(n, 0, 0.0) == 8 * n  # 2N generation + 6N update
    assert rl_flops_per_token(n, 4, 1e-3) == 8 * n  # 2N generation + 4N update + 2N reference


def test_split_and_sums_in_every_unit():
    led = Ledger.split(1000.0, "tokens", {"cpt": 0.2, "sft": 0.3, "rl": 0.5})
    assert [s.slice for s in led.stages.values()] == pytest.approx([200, 300, 500])
    led.stages["cpt"].spent = Spend(flops=10, tokens=210, examples=3, epochs=0.1, seconds=1.5, steps=3)
    led.stages["sft"].spent = Spend(flops=20, tokens=305, examples=4, epochs=0.2, seconds=2.5, steps=4)
    assert led.spent() == 515 and led.spent("flops") == 30 and led.spent("seconds") == 4.0
    assert led.spent_before("rl") == 515 and led.spent_before("cpt") == 0
    d = led.to_dict()
    assert d["spent"]["examples"] == 7 and d["spent"]["steps"] == 7
    assert d["stages"]["rl"]["slice"] == 500 and d["eval"]["flops"] == 0
