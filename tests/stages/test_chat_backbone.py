"""A real chat model end to end: a tiny Qwen2-architecture model with a locally trained BPE tokenizer
and a chat template (ptplan.testing.tiny_chat_model, no download) through CPT -> SFT -> RL."""

import pytest
from tokenizers import Tokenizer

from ptplan.stages import TrialConfig
from ptplan.stages._backbones import PROBES, load_backbone, load_checkpoint
from ptplan.stages._chat import ChatFormat, chat_format
from ptplan.testing import tiny_chat_model

SPECIAL_PROBES = ("<|im_start|>user\nGC content?<|im_end|>\n", "<think>maybe</think><answer>ACGT</answer>")


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    return tiny_chat_model(tmp_path_factory.mktemp("tiny-qwen2"))


def _config(path, **data):
    return TrialConfig.from_dict({
        "name": "chat", "backbone": {"path": str(path)},
        "data": {"suite": "genomics", "sizes": {"cpt": 32, "sft": 32, "rl": 8, "id_test": 8, "ood_test": 8}, **data},
        "budget": {"total": 3.0e10, "unit": "flops"},
        "allocation": {"shares": {"cpt": 0.3, "sft": 0.4, "rl": 0.3},
                       "cpt": {"batch_size": 8, "warmup_steps": 0}, "sft": {"batch_size": 8, "warmup_steps": 0},
                       "rl": {"rank": 4, "batch_size": 2, "generations": 2, "max_completion_length": 8,
                              "warmup_steps": 0}},
        "eval": {"points": {"cpt": 1, "sft": 1, "rl": 1}, "batch_size": 16}, "device": "cpu"})


def _ctx(name, cfg, tokenizer, model):
    from ptplan.stages._stages import StageContext
    from ptplan.stages._trial import load_task_data

    return StageContext(name=name, config=cfg.allocation.stage(name), slice=1e12, unit="flops",
                        data=load_task_data(cfg), n_params=sum(p.numel() for p in model.parameters()), eval_points=1,
                        evaluate=None, chat=chat_format(tokenizer, cfg.data))


def test_sft_trains_on_the_template_with_loss_on_the_assistant_turn_only(chat_model, tmp_path):
    from transformers import TrainerCallback

    from ptplan.stages._stages import SFTStage

    cfg = _config(chat_model, system_prompt="You are a careful biologist.")
    model, tok = load_backbone(path=str(chat_model))
    ctx = _ctx("sft", cfg, tok, model)
    assert ctx.chat == ChatFormat(system="You are a careful biologist.")
    trainer = SFTStage().build_trainer(model, tok, ctx, str(tmp_path), 1, TrainerCallback())
    row = trainer.train_dataset[0]
    ids, mask = row["input_ids"], [label != -100 for label in row["labels"]]  # TRL masks the prompt with -100
    start, end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
    assert ids.count(start) == 3  # system, user, assistant turns
    header = len(tok(tok.apply_chat_template(ctx.chat.messages(ctx.data.sft_train[0].prompt), tokenize=False,
                                             add_generation_prompt=True), add_special_tokens=False)["input_ids"])
    assert not any(mask[:header]) and all(mask[header:])  # the prompt and the assistant header carry no loss
    answer = tok.decode([i for i, m in zip(ids, mask) if m])
    assert answer.startswith(ctx.data.sft_train[0].answer) and answer.rstrip().endswith("<|im_end|>")
    assert ids[-1] == end or tok.decode(ids[-2:]).strip().endswith("<|im_end|>")


def test_grpo_samples_from_templated_prompts(chat_model, tmp_path):
    from transformers import TrainerCallback
    from trl.data_utils import maybe_apply_chat_template

    from ptplan.stages._stages import RLStage

    cfg = _config(chat_model, template_kwargs={"enable_thinking": False})
    model, tok = load_backbone(path=str(chat_model))
    ctx = _ctx("rl", cfg, tok, model)
    trainer = RLStage().build_trainer(model, tok, ctx, str(tmp_path), 1, TrainerCallback())
    prompt = trainer.train_dataset[0]["prompt"]
    assert prompt == [{"role": "user", "content": ctx.data.rl_train[0].prompt}]
    assert trainer.chat_template_kwargs == {"enable_thinking": False}
    text = maybe_apply_chat_template({"prompt": prompt}, tok)["prompt"]
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")


@pytest.mark.integration
def test_a_chat_model_trains_end_to_end_and_keeps_its_tokenizer(chat_model, tmp_path):
    from ptplan.stages import TrialRunner

    runner = TrialRunner(_config(chat_model), tmp_path)
    res = runner.run()
    assert res["status"] == "complete" and set(res["stages"]) == {"cpt", "sft", "rl"}
    _, tok = load_backbone(path=str(chat_model))
    id_set, _ = runner._prepared["full"]  # evaluation generated from the templated prompts
    first = tok.decode(id_set.encodings["input_ids"][0])
    assert first == ChatFormat().prompt_text(tok, id_set.examples[0].prompt)
    assert first.startswith("<|im_start|>user\n") and first.endswith("<|im_start|>assistant\n")
    user = Tokenizer.from_file(str(chat_model / "tokenizer.json"))
    probes = list(PROBES) + list(SPECIAL_PROBES)
    want = [user.encode(p, add_special_tokens=False).ids for p in probes]
    assert len(want[probes.index("0003677")]) == 1  # digits not split (Qwen2Tokenizer would give 7)
    for stage, info in res["stages"].items():
        saved = Tokenizer.from_file(str(tmp_path / "stages" / f"{stage}-{info['key']}" / "model" / "tokenizer.json"))
        assert [saved.encode(p, add_special_tokens=False).ids for p in probes] == want, stage
        _, reloaded = load_checkpoint(info["checkpoint"])
        assert [reloaded(p, add_special_tokens=False)["input_ids"] for p in probes] == want, stage
        assert reloaded.chat_template and "<|im_start|>" in reloaded.chat_template
