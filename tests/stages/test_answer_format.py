"""Reasoning outputs: the scorer sees the answer, not the thinking (`data.answer`), and an optional
format reward for RL."""

import pytest

from ptplan.stages import ConfigError, TrialConfig
from ptplan.stages._scoring import answer_extractor
from ptplan.stages._tasks import Example
from ptplan.stages._userdata import load_user_data


@pytest.fixture
def data(tmp_path):
    rows = '{"prompt": "Which GO term?", "answer": "DNA binding"}\n'
    for split in ("id", "ood"):
        (tmp_path / f"{split}.jsonl").write_text(rows)
    return load_user_data({s: str(tmp_path / f"{s}.jsonl") for s in ("id", "ood")}, scorer="exact")


def test_a_thinking_block_and_an_answer_tag_score_on_the_answer_only(data):
    example = Example("Which GO term?", "DNA binding", "*")
    thought = "<think>It binds DNA... the answer is RNA binding? No.</think>\n<answer>DNA binding</answer>"
    assert data.score(thought, example) == 0.0  # the whole text is not the answer
    data.extract = answer_extractor("tag")
    assert data.score(thought, example) == 1.0
    assert data.score("<think><answer>DNA binding</answer></think><answer>RNA binding</answer>", example) == 0.0
    assert data.score("DNA binding", example) == 0.0  # no answer in the asked form scores 0
    assert data.rewards([thought, "<answer>RNA binding</answer>"], [example, example]) == [1.0, 0.0]


@pytest.mark.parametrize("spec, text, want", [
    ("last-line", "<think>long\nthoughts</think>\nsome words\nDNA binding\n", "DNA binding"),
    ("Answer: (?P<answer>[^\\n]+)", "<think>Answer: no</think> Answer: first\nAnswer: DNA binding", "DNA binding"),
    ("tag", "no tags here", None),
])
def test_extractors(spec, text, want):
    assert answer_extractor(spec)(text) == want


@pytest.mark.parametrize("answer, problem", [("Answer: (.+)", "group named `answer`"), ("(?P<answer>", "compile")])
def test_a_bad_extractor_is_refused_at_validation(answer, problem):
    with pytest.raises(ConfigError, match=problem) as err:
        TrialConfig.from_dict({"data": {"answer": answer}})
    assert err.value.path == "data.answer"


def test_a_format_reward_needs_an_answer_form():
    with pytest.raises(ConfigError, match="data.answer") as err:
        TrialConfig.from_dict({"allocation": {"rl": {"format_reward": 0.2}}})
    assert err.value.path == "allocation.rl.format_reward"
    cfg = TrialConfig.from_dict({"allocation": {"rl": {"format_reward": 0.2}}, "data": {"answer": "tag"}})
    from ptplan.stages._stages import _format_reward

    reward = _format_reward(answer_extractor(cfg.data.answer), cfg.allocation.rl.format_reward)
    assert reward(["<answer>x</answer>", [{"role": "assistant", "content": "plain"}]]) == [0.2, 0.0]
