"""The `study:` section and its search space: validation names the field, shares live on the simplex,
grid presets hold exactly their cells, and a study's identity changes with what it searches."""

import copy

import pytest

from ptplan.studies import read_plan as load_plan
from ptplan.stages import ConfigError
from ptplan.studies import StudyPlan

from conftest import MICRO

GRIDS = {"paper-epoch-split": 9, "paper-data-split": 5, "paper-rank-grid": 9, "paper-sft-epochs": 6,
         "paper-warm-vs-cold": 4}


def plan(study=None, **top):
    data = copy.deepcopy(MICRO)
    data.update(top)
    if study is not None:
        data["study"] = study
    return StudyPlan.from_mapping(data)


def test_default_pruner_follows_the_objective_and_a_grid_runs_every_cell():
    assert plan(study={"objective": {"kind": "weighted"}}).study.objective.pruner == "median"
    grid = {"sampler": "grid", "search": {"allocation.sft.rank": {"choices": [4, 16]}}}
    assert plan(study=grid).study.objective.pruner == "none"
    assert plan(study={**grid, "objective": {"pruner": "dominated"}}).study.objective.pruner == "dominated"


def test_defaults_search_the_shares_of_the_stages_the_plan_runs():
    sp = plan()
    assert sp.study.sampler == "surrogate" and sp.study.objective.kind == "multi" and sp.directions == ["maximize"] * 2
    assert sp.study.objective.pruner == "dominated"  # the default search benchmarks/bench_search.py measures
    assert set(sp.space.params) == {"allocation.shares.cpt", "allocation.shares.sft_of_rest"}
    assert sp.target() == 20 and sp.target(3) == 3


def test_shares_cpt_then_sft_of_the_rest_then_rl():
    sp = plan({"search": {"allocation.shares.cpt": {"low": 0.0, "high": 0.5},
                          "allocation.shares.sft_of_rest": {"low": 0.0, "high": 1.0}}})
    assert sp.space.shares_for({"allocation.shares.cpt": 0.2, "allocation.shares.sft_of_rest": 0.25}) == \
        {"cpt": 0.2, "sft": 0.2, "rl": 0.6}
    # only CPT searched: the rest is split as the plan splits it (0.4 : 0.4)
    only = plan({"search": {"allocation.shares.cpt": [0.0, 0.5]}})
    assert only.space.shares_for({"allocation.shares.cpt": 0.5}) == {"cpt": 0.5, "sft": 0.25, "rl": 0.25}
    cfg = sp.space.config_for({"allocation.shares.cpt": 0.0, "allocation.shares.sft_of_rest": 1.0}, name="x")
    assert cfg.allocation.shares == {"cpt": 0.0, "sft": 1.0, "rl": 0.0} and cfg.name == "x"


def test_sampled_fields_override_the_plan_and_the_rest_stays_fixed():
    sp = plan({"search": {"allocation.sft.rank": {"choices": [16, 64, 256]},
                          "allocation.sft.lr": {"low": "1e-4", "high": 3e-3, "log": True},
                          "allocation.rl.start": ["warm", "cold"]}})
    cfg = sp.space.config_for({"allocation.sft.rank": 64, "allocation.sft.lr": 1e-3, "allocation.rl.start": "cold"})
    assert (cfg.allocation.sft.rank, cfg.allocation.sft.lr, cfg.allocation.rl.start) == (64, 1e-3, "cold")
    assert cfg.allocation.shares == MICRO["allocation"]["shares"] and cfg.allocation.cpt.lr == 3e-3
    assert sp.space.params["allocation.sft.lr"].low == 1e-4  # YAML's "1e-4" string read as a number


def test_nested_search_from_set_overrides_is_the_same_as_dotted_keys():
    data = copy.deepcopy(MICRO)
    sp = StudyPlan.from_mapping(data, ["study.search.allocation.sft.rank.choices=[16, 64]"])
    assert sp.space.to_dict() == {"allocation.sft.rank": {"choices": [16, 64]}}


@pytest.mark.parametrize("study, field, words", [
    ({"samplr": "tpe"}, "study.samplr", "not a known field"),
    ({"sampler": "cmaes"}, "study.sampler", "tpe, gp, nsga2, random, grid"),
    ({"search": {"allocation.sft.rnak": [1]}}, "study.search.allocation.sft.rnak", "not a field"),
    ({"search": {"allocation.shares.cpt": {"low": 0.2, "high": 1.4}}}, "study.search.allocation.shares.cpt",
     "outside [0, 1]"),
    ({"search": {"allocation.shares.sft_of_rest": [0.5, -0.1]}}, "study.search.allocation.shares.sft_of_rest",
     "outside [0, 1]"),
    ({"search": {"allocation.shares.sft": [0.5]}}, "study.search.allocation.shares.sft", "simplex"),
    ({"search": {"allocation.sft.rank": {"choices": [16, 48]}}}, "study.search.allocation.sft.rank",
     "choice 48 is not allowed"),
    ({"search": {"allocation.sft.rank": {"low": 4, "high": 64}}}, "study.search.allocation.sft.rank", "choices"),
    ({"search": {"allocation.sft.lr": {"low": 0.0, "high": 0.01, "log": True}}}, "study.search.allocation.sft.lr",
     "log"),
    ({"search": {"allocation.rl.beta": {"low": 0.0, "high": 0.1}}, "sampler": "grid"},
     "study.search.allocation.rl.beta", "grid"),
    ({"search": {"allocation.rl.start": ["warm", "lukewarm"]}}, "study.search.allocation.rl.start", "lukewarm"),
    ({"objective": {"kind": "weighted", "ood_weight": 2}}, "study.objective.ood_weight", "[0, 1]"),
    ({"objective": {"pruner": "patience"}}, "study.objective.pruner", "median"),
    ({"storage": "redis://localhost"}, "study.storage", "sqlite:///"),
    ({"heartbeat": {"interval": 10, "grace": 5}}, "study.heartbeat.grace", "above"),
    ({"trials": -1}, "study.trials", ">= 0"),
])
def test_bad_study_fields_name_the_field_and_value(study, field, words):
    with pytest.raises(ConfigError) as err:
        plan(study)
    assert f"`{field}`" in str(err.value) and words in str(err.value), str(err.value)


def test_bad_fixed_share_is_refused_by_the_trial_config():
    with pytest.raises(ConfigError, match=r"`allocation.shares.sft`"):
        StudyPlan.from_mapping(copy.deepcopy(MICRO), ["allocation.shares.sft=1.4"])


@pytest.mark.parametrize("preset, cells", sorted(GRIDS.items()))
def test_grid_presets_hold_exactly_their_cells_and_pay_whole_slices(preset, cells):
    data, source = load_plan(preset)
    sp = StudyPlan.from_mapping(data, [], source)
    assert sp.grid and sp.space.n_cells() == cells == sp.target() == len(sp.space.cells())
    keys = {tuple(sorted(c.items())) for c in sp.space.cells()}
    assert len(keys) == cells
    for cell in sp.space.cells():
        cfg = sp.space.config_for(cell)
        if cfg.budget.unit in ("epochs", "examples"):  # a slice a hair above a whole step would cost an extra step
            for stage, share in cfg.allocation.shares.items():
                s = cfg.budget.total * share
                assert s == round(s), (preset, cell, stage, s)


def test_epoch_split_cells_are_sft_e_rl_8_minus_e_after_two_cpt_epochs():
    data, source = load_plan("paper-epoch-split")
    sp = StudyPlan.from_mapping(data, [], source)
    splits = sorted((sp.space.config_for(c).budget.total * sp.space.config_for(c).allocation.shares["sft"],
                     sp.space.config_for(c).budget.total * sp.space.config_for(c).allocation.shares["rl"])
                    for c in sp.space.cells())
    assert splits == [(float(e), float(8 - e)) for e in range(9)]
    assert {sp.space.config_for(c).budget.total * sp.space.config_for(c).allocation.shares["cpt"]
            for c in sp.space.cells()} == {2.0}


@pytest.mark.parametrize("preset", ["quick", "smoke"])
def test_searched_presets_resolve(preset):
    data, source = load_plan(preset)
    sp = StudyPlan.from_mapping(data, [], source)
    assert not sp.grid and sp.space.params


def test_identity_covers_search_budget_and_fixed_config_but_not_where_or_how_many():
    from ptplan.stages import describe_diff

    base = plan({"search": {"allocation.sft.rank": [16, 64]}})
    same = plan({"search": {"allocation.sft.rank": [16, 64]}, "trials": 7, "dir": "/elsewhere", "sampler": "random",
                 "heartbeat": {"interval": 2, "grace": 5}}, device="auto")
    assert base.fingerprint() == same.fingerprint()
    for changed in (plan({"search": {"allocation.sft.rank": [16, 64, 256]}}),
                    plan({"search": {"allocation.sft.rank": [16, 64]}}, budget={"total": 12, "unit": "epochs"}),
                    plan({"search": {"allocation.sft.rank": [16, 64]}, "objective": {"kind": "weighted"}})):
        assert changed.fingerprint() != base.fingerprint()
        assert describe_diff(base.identity(), changed.identity())
