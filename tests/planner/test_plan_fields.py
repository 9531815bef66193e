"""One config definition drives validation, `ptplan init`'s comments and the README's field list."""

import typing
from pathlib import Path

import pytest

from ptplan.stages import SUITES, ConfigError, TrialConfig
from ptplan.stages._config import Suite
from ptplan.studies import Plan, annotate_plan, fields_markdown, plan_fields, preset_names, preset_text
from ptplan.studies._config import PrunerName, SamplerName
from ptplan.studies._study import PRUNERS, SAMPLERS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_literal_choices_match_the_registries():
    assert set(typing.get_args(SamplerName)) == set(SAMPLERS)
    assert set(typing.get_args(PrunerName)) == set(PRUNERS)
    assert set(typing.get_args(Suite)) == set(SUITES)


def test_every_field_has_help():
    missing = [f["path"] for f in plan_fields() if not f["help"]]
    assert not missing, missing


def test_the_readme_field_list_is_generated_from_the_code():
    text = README.read_text()
    listed = text.split("<!-- fields:start -->\n", 1)[1].split("<!-- fields:end -->", 1)[0]
    assert listed == fields_markdown(), "README's field list is stale: paste `ptplan init --fields` into it"


@pytest.mark.parametrize("path, value, choices", [
    ("budget.unit", "joules", "flops, tokens, examples, epochs, seconds"),
    ("allocation.rl.start", "lukewarm", "warm, cold"),
    ("allocation.rl.handover", "early", "fixed, predicted-peak"),
    ("data.suite", "virology", "genomics, transcriptomics, proteins"),
    ("study.sampler", "annealing", "surrogate, tpe, gp, nsga2, random, grid"),
    ("study.objective.pruner", "patient", "dominated, median, hyperband, successive_halving, none"),
])
def test_a_value_outside_the_choices_names_the_field_and_the_choices(path, value, choices):
    with pytest.raises(ConfigError) as err:
        Plan.load("smoke", overrides={path: value})
    assert err.value.path == path and f"must be one of {choices}, got {value!r}" in str(err.value)


@pytest.mark.parametrize("preset", preset_names())
def test_init_comments_every_preset_and_it_still_loads(preset):
    import yaml

    text = annotate_plan(preset_text(preset))
    assert yaml.safe_load(text) == yaml.safe_load(preset_text(preset))  # comments only
    assert "# the fixed compute budget of one trial" in text
    TrialConfig.from_dict({k: v for k, v in yaml.safe_load(text).items() if k != "study"})
