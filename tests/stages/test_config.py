import pytest

from ptplan.stages._config import ConfigError, TrialConfig, apply_overrides


@pytest.mark.parametrize(
    "plan, field, fragment",
    [
        ({"allocation": {"sft": {"rank": 3}}}, "allocation.sft.rank", "power of two"),
        ({"allocation": {"rl": {"rank": 1024}}}, "allocation.rl.rank", "up to 512"),
        ({"allocation": {"shares": {"cpt": 0.5, "sft": 0.6, "rl": 0.0}}}, "allocation.shares", "sum to 1"),
        ({"allocation": {"shares": {"cpt": -0.2, "sft": 0.6, "rl": 0.6}}}, "allocation.shares.cpt", "[0, 1]"),
        ({"allocation": {"shares": {"sft": 1.5}}}, "allocation.shares.sft", "[0, 1]"),
        ({"allocation": {"shares": {"ppo": 1.0}}}, "allocation.shares", "unknown stage"),
        ({"allocation": {"rl": {"start": "lukewarm"}}}, "allocation.rl.start", "warm"),
        ({"allocation": {"rl": {"generations": 1}}}, "allocation.rl.generations", ">= 2"),
        ({"allocation": {"rl": {"handover": "whenever"}}}, "allocation.rl.handover", "predicted-peak"),
        ({"allocation": {"rl": {"handover_confidence": 1.5}}}, "allocation.rl.handover_confidence", "[0.5, 1)"),
        ({"allocation": {"sft": {"lr": "fast"}}}, "allocation.sft.lr", "number"),
        ({"budget": {"unit": "watts"}}, "budget.unit", "flops"),
        ({"budget": {"total": -1}}, "budget.total", "positive"),
        ({"backbone": {"name": "gpt-9"}}, "backbone.name", "built-in"),
        ({"data": {"suite": "astrology"}}, "data.suite", "genomics"),
        ({"data": {"sizes": {"sft": 0}}}, "data.sizes.sft", "positive"),
        ({"data": {"files": {"id": "a.jsonl"}}}, "data.files", "ood"),
        ({"eval": {"points": {"sft": 0}}}, "eval.points.sft", "positive"),
        ({"allocation": {"rl": {"rnk": 4}}}, "allocation.rl.rnk", "not a known field"),
        ({"colour": "blue"}, "colour", "not a known field"),
    ],
)
def test_bad_fields_are_named(plan, field, fragment):
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_dict(plan)
    assert info.value.path == field
    assert f"`{field}`" in str(info.value) and fragment in str(info.value)


def test_yaml_scalars_are_coerced_and_round_trip():
    cfg = TrialConfig.from_dict({"budget": {"total": "1e9", "unit": "tokens"}, "allocation": {"sft": {"lr": "3e-4"}}})
    assert cfg.budget.total == 1e9 and cfg.allocation.sft.lr == pytest.approx(3e-4)
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


def test_overrides_set_nested_fields():
    data = apply_overrides({"allocation": {"sft": {"rank": 0}}}, ["allocation.sft.rank=16", "budget.unit=tokens"])
    assert data == {"allocation": {"sft": {"rank": 16}}, "budget": {"unit": "tokens"}}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["allocation.sft.rank"])


def test_unknown_scorer_is_refused_at_validation(tiny_config):
    from ptplan.stages import ConfigError

    with pytest.raises(ConfigError, match=r"data.scorer.*must be one of exact, numeric, set_f1.*got 'exactly'"):
        tiny_config(data={"scorer": "exactly"})
    assert tiny_config(data={"scorer": "mypkg.rewards:score"}).data.scorer == "mypkg.rewards:score"


def test_missing_backbone_folder_says_it_does_not_exist(tmp_path):
    from ptplan.stages import load_backbone

    with pytest.raises(FileNotFoundError, match=r"`backbone.path`: the folder .*nope.* does not exist"):
        load_backbone(path=str(tmp_path / "nope"))


def test_the_transfer_split_and_partial_rewards_are_part_of_the_stage_keys():
    from ptplan.stages._trial import stage_key

    base = {"budget": {"total": "1e9", "unit": "tokens"}}
    default = TrialConfig.from_dict(base)
    key = lambda cfg, stage: stage_key(cfg, stage, 0.5, "prev")  # noqa: E731
    explicit = TrialConfig.from_dict({**base, "data": {"ood": "recall"}, "allocation": {"rl": {"reward": "exact"}}})
    assert key(explicit, "cpt") == key(default, "cpt") and key(explicit, "rl") == key(default, "rl")
    transfer = TrialConfig.from_dict({**base, "data": {"ood": "transfer"}})
    assert key(transfer, "cpt") != key(default, "cpt")
    partial = TrialConfig.from_dict({**base, "allocation": {"rl": {"reward": "partial"}}})
    assert key(partial, "rl") != key(default, "rl") and key(partial, "sft") == key(default, "sft")
    with pytest.raises(ConfigError, match="ood"):
        TrialConfig.from_dict({**base, "data": {"ood": "shifted"}})
    with pytest.raises(ConfigError, match="reward"):
        TrialConfig.from_dict({**base, "allocation": {"rl": {"reward": "dense"}}})
