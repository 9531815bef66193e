"""Scorers: exact, numeric, set-F1, and reward callables resolved by import path."""

from __future__ import annotations

import importlib
import math
import sys
import textwrap

import pytest

from ptplan.stages._scoring import SCORERS, RewardError, RewardScorer, exact, numeric, resolve_scorer, set_f1
from ptplan.stages._tasks import Example, TaskData

GARBAGE = ["", " ", "\n\n", "\x00\x01", "\u2603 snow \U0001f9ec", "\ud800", "A" * 100_000, "1e999", "nan", "-inf",
           None, 42, b"\xff\xfe", [{"role": "assistant", "content": "ACGT"}], ["not", "dicts"], {"x": 1}]


@pytest.mark.parametrize("name", list(SCORERS))
@pytest.mark.parametrize("completion", GARBAGE, ids=range(len(GARBAGE)))
def test_scorers_never_raise_on_garbage(name, completion):
    scorer = resolve_scorer(name, tolerance=0.5)
    for answer in ("ACGT", "3", "GO:0005634, GO:0003677", "T cell"):
        value = scorer(completion, answer)
        assert isinstance(value, float) and 0.0 <= value <= 1.0


def test_exact_normalizes_whitespace_and_lines_only():
    assert exact("  ACGT \n junk", "ACGT") == 1.0
    assert exact("\n\nACGT", "ACGT") == 1.0
    assert exact("T  cell", "T cell") == 1.0
    assert exact("acgt", "ACGT") == 0.0
    assert exact("ACGTA", "ACGT") == 0.0
    assert exact([{"role": "assistant", "content": "ACGT"}], "ACGT") == 1.0


def test_numeric_tolerance_edges():
    assert numeric(0)("3", "3") == 1.0
    assert numeric(0)("3.0", "3") == 1.0 and numeric(0)("+3", "3") == 1.0
    assert numeric(0)("3.0001", "3") == 0.0
    assert numeric(0.5)("2.5", "2") == 1.0 and numeric(0.5)("1.5", "2") == 1.0
    assert numeric(0.49)("2.5", "2") == 0.0
    assert numeric(0.1)("0.3", "0.2") == 1.0  # float rounding does not flip the boundary
    assert numeric(0)("-4", "-4") == 1.0 and numeric(0)("4", "-4") == 0.0
    assert numeric(0)("1,000", "1000") == 0.0  # no thousands separators: "1,5" is ambiguous
    assert numeric(1e9)("nan", "3") == 0.0 and numeric(1e9)("inf", "3") == 0.0
    assert numeric(0)("3 cells", "3") == 0.0 and numeric(0)("three", "3") == 0.0
    assert numeric(0)("3\nmore", "3") == 1.0
    assert numeric(0)("yes", "yes") == 1.0 and numeric(0)("no", "yes") == 0.0  # non-numeric answer: exact
    for bad in (-1, math.nan, "1", True):
        with pytest.raises(ValueError, match="tolerance"):
            numeric(bad)


def test_set_f1_edge_cases():
    assert set_f1("GO:1, GO:2, GO:3", "GO:3,GO:1,GO:2") == 1.0
    assert set_f1("GO:1;GO:2", "GO:1|GO:2") == 1.0
    assert set_f1("GO:1 GO:2", "GO:1,GO:2") == 1.0  # whitespace separates single-word labels
    assert set_f1("GO:1, GO:2", "GO:1, GO:2, GO:3") == pytest.approx(0.8)
    assert set_f1("GO:1, GO:9", "GO:1, GO:2") == pytest.approx(0.5)
    assert set_f1("GO:1, GO:1, GO:1", "GO:1, GO:2") == pytest.approx(2 / 3)  # duplicates count once
    assert set_f1("GO:7", "GO:1") == 0.0
    assert set_f1("", "GO:1") == 0.0 and set_f1("GO:1", "") == 0.0 and set_f1("", "") == 1.0
    assert set_f1("B cell, T cell", "T cell, B cell") == 1.0  # multi-word labels stay whole
    assert set_f1("T cell", "T cell, B cell") == pytest.approx(2 / 3)
    assert set_f1("GO:1\nGO:2", "GO:1, GO:2") == pytest.approx(2 / 3)  # only the first line counts
    assert set_f1("GO:1\nGO:2", "GO:1\nGO:2") == 1.0  # unless the answer spans lines


def test_registry_and_unknown_names():
    assert resolve_scorer("exact") is exact and resolve_scorer("set_f1") is set_f1
    assert resolve_scorer("numeric", tolerance=1)("4", "3") == 1.0
    assert resolve_scorer("numeric")("4", "3") == 0.0
    with pytest.raises(ValueError, match="'fuzzy'"):
        resolve_scorer("fuzzy")
    with pytest.raises(ValueError, match="''"):
        resolve_scorer("")
    with pytest.raises(ValueError, match="no_such_module_xyz"):
        resolve_scorer("no_such_module_xyz:reward")
    with pytest.raises(ValueError, match="'math:no_such_fn'"):
        resolve_scorer("math:no_such_fn")
    with pytest.raises(ValueError, match="'math:pi' is not callable"):
        resolve_scorer("math:pi")
    with pytest.raises(ValueError, match="'math:'"):
        resolve_scorer("math:")


@pytest.fixture
def reward_module(tmp_path, monkeypatch):
    """A user module with TRL-style reward functions, importable by path."""
    (tmp_path / "my_rewards_mod.py").write_text(
        textwrap.dedent(
            """
            CALLS = []

            def prefix(completions, answer, **kw):
                CALLS.append(len(completions))
                return [len(c) and float(a.startswith(c.strip())) * len(c.strip()) / len(a) for c, a in zip(completions, answer)]

            def shifted(completions, answer, **kw):
                return [2.0 if c == a else -1.0 for c, a in zip(completions, answer)]

            def boom(completions, answer, **kw):
                raise KeyError("secret column")

            def short(completions, answer, **kw):
                return [1.0]

            def nans(completions, answer, **kw):
                return [float("nan")] * len(completions)

            class Holder:
                @staticmethod
                def reward(completions, answer, **kw):
                    return [None] * len(completions)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("my_rewards_mod")
    yield module
    sys.modules.pop("my_rewards_mod", None)


def test_import_path_scorer(reward_module):
    scorer = resolve_scorer("my_rewards_mod:prefix")
    assert isinstance(scorer, RewardScorer)
    assert scorer("AC", "ACGT") == pytest.approx(0.5)
    assert scorer("ACGT", "ACGT") == 1.0 and scorer("", "ACGT") == 0.0
    clamped = resolve_scorer("my_rewards_mod:shifted")
    assert clamped("x", "x") == 1.0 and clamped("x", "y") == 0.0
    assert resolve_scorer("my_rewards_mod:Holder.reward")("x", "y") == 0.0


def test_import_path_scorer_batches_through_task_data(reward_module):
    data = TaskData("user", [], [], [], [], [], "none", {"*": resolve_scorer("my_rewards_mod:prefix")})
    reward_module.CALLS.clear()
    examples = [Example("p=", "ACGT", "user"), Example("q=", "GG", "other")]
    assert data.rewards(["ACGT", "G"], examples) == [1.0, 0.5]
    assert reward_module.CALLS == [2]
    assert data.reward_fn()(["AC", "GG"], answer=["ACGT", "GG"], prompts=["p=", "q="]) == [0.5, 1.0]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("my_rewards_mod:boom", "raised KeyError"),
        ("my_rewards_mod:short", "returned 1 scores for 2 completions"),
        ("my_rewards_mod:nans", "non-finite"),
    ],
)
def test_bad_reward_callables_raise_reward_error(reward_module, path, message):
    scorer = resolve_scorer(path)
    with pytest.raises(RewardError, match=message) as info:
        scorer.batch(["a", "b"], ["a", "b"])
    assert path in str(info.value)


def test_similarity_is_partial_credit_and_one_only_for_exact():
    from ptplan.stages._scoring import exact, similarity

    assert similarity("T cell#", "T cell#") == 1.0 == exact("T cell#", "T cell#")
    assert similarity("  T cell#\nmore", "T cell#") == 1.0  # first line, whitespace-normalized, like exact
    assert 0.9 < similarity("T cell", "T cell#") < 1.0
    assert similarity("monocyte#", "T cell#") < similarity("T cel#", "T cell#")
    assert similarity("", "ACGU#") == 0.0
