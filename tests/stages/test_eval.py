"""Faster evaluation gives the old evaluation's scores: per-row stop rules, prompts tokenized once, subsamples."""

import random

import pytest

from ptplan.stages._eval import EvalSet, evaluate, generate_greedy, mean_and_se
from ptplan.stages._scoring import RewardScorer, exact, numeric, score_settled, set_f1
from ptplan.stages._tasks import Example


@pytest.mark.parametrize("text,answer,settled", [
    ("NK c", "NK cell", False),       # still a prefix of the answer
    ("NK  ", "NK cell", False),       # trailing space: the next word may follow
    ("NKc", "NK cell", True),         # left the answer: scores 0 whatever follows
    ("NK cell\nmore", "NK cell", True),
    ("NK cell", "NK cell", False),    # a longer line may still follow
    ("", "NK cell", False),
    ("\n \n", "NK cell", False),      # blank lines: the first line has not started
    ("AUG\ufffd", "AUGC", False),     # half a multi-byte character: not judged
])
def test_exact_settles_when_the_first_line_ends_or_leaves_the_answer(text, answer, settled):
    assert score_settled(exact, text, answer) is settled


def test_other_scorers_settle_only_on_a_finished_first_line():
    assert not score_settled(numeric(0.1), "3.1", "3.0") and score_settled(numeric(0.1), "3.1\n", "3.0")
    assert score_settled(set_f1, "GO:1, GO:2\nx", "GO:1, GO:2")
    assert not score_settled(set_f1, "GO:1\nGO:2", "GO:1\nGO:2")  # multi-line answers read every line
    reward = RewardScorer(lambda completions, answer, **kw: [1.0] * len(completions), "m:f")
    assert not score_settled(reward, "anything\n", "x")


@pytest.mark.parametrize("scorer", [exact, numeric(0.5), set_f1])
def test_a_settled_prefix_keeps_its_score_whatever_follows(scorer):
    rng = random.Random(0)
    alphabet = ["1", "2", ".", "a", "b", " ", "\n", ","]
    answers = ["12", "1.2", "a b", "ab, b", "2"]
    for _ in range(3000):
        answer = rng.choice(answers)
        full = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        for cut in range(len(full) + 1):
            if score_settled(scorer, full[:cut], answer):
                assert scorer(full[:cut], answer) == scorer(full, answer), (full, cut, answer)


def _old_generate_greedy(model, tokenizer, prompts, max_new_tokens, batch_size):
    """ptplan's evaluation before issue 17 (commit 353666f), verbatim: the reference."""
    import torch

    model.eval()
    texts = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start: start + batch_size], return_tensors="pt", padding=True,
                              padding_side="left", add_special_tokens=False)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            texts.extend(tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True))
    return texts


@pytest.fixture(scope="module")
def tiny_model():
    from ptplan.stages import load_backbone

    return load_backbone("llama-0.5m", seed=3)


def test_faster_evaluation_scores_every_item_as_the_old_one(tiny_model):
    """Answers are cut from the model's own greedy text, so rows stay on the answer for many tokens, end
    exactly on it, or leave it: every path of the stop rule, checked against the old code item by item."""
    model, tok = tiny_model
    rng = random.Random(1)
    prompts = ["".join(rng.choice("ACGT") for _ in range(rng.randint(3, 20))) + "=" for _ in range(40)]
    reference = _old_generate_greedy(model, tok, prompts, 24, 16)
    examples = []
    for i, (p, text) in enumerate(zip(prompts, reference)):
        line = text.splitlines()[0] if text.strip() else "x"
        answer = [line, line[: max(1, len(line) // 2)], line + "Z", "nope"][i % 4]
        examples.append(Example(p, answer, f"t{i % 3}"))
    score = lambda completion, example: exact(completion, example.answer)  # noqa: E731
    settled = lambda completion, example: score_settled(exact, completion, example.answer)  # noqa: E731
    new = evaluate(model, tok, EvalSet.prepare(examples, tok), score, 24, 16, settled=settled)
    old_scores = [score(c, e) for c, e in zip(reference, examples)]
    assert [score(c, e) for c, e in zip(new.completions, examples)] == old_scores
    assert sum(old_scores) >= 10 and sum(old_scores) < 40  # both outcomes occur
    assert all(r.startswith(c) for r, c in zip(reference, new.completions))  # same tokens, stopped earlier
    assert sum(map(len, new.completions)) < sum(map(len, reference))
    assert new.n == 40 and new.se == pytest.approx(mean_and_se(old_scores)[1])
    # without a stop rule the new path is the old one, token for token
    assert generate_greedy(model, tok, prompts, 24, 16)[0] == reference
    # dropping settled rows from the batch (intermediate points): same scores here, not guaranteed bit for bit
    compact = evaluate(model, tok, EvalSet.prepare(examples, tok), score, 24, 16, settled=settled, compact=True)
    assert [score(c, e) for c, e in zip(compact.completions, examples)] == old_scores
    assert all(r.startswith(c) for r, c in zip(reference, compact.completions))


def test_subsample_is_fixed_stratified_and_scores_its_items_as_the_full_set(tiny_model):
    model, tok = tiny_model
    rng = random.Random(2)
    prompts = ["".join(rng.choice("ACGU") for _ in range(rng.randint(3, 20))) + "=" for _ in range(60)]
    reference = _old_generate_greedy(model, tok, prompts, 12, 64)
    examples = [Example(p, (t.splitlines() or ["x"])[0][: 12 - i % 2], ["a", "b", "c"][i % 3] if i < 45 else "d")
                for i, (p, t) in enumerate(zip(prompts, reference))]
    full = EvalSet.prepare(examples, tok)
    part = full.sample(20, seed=0)
    assert part.examples == full.sample(20, seed=0).examples  # fixed for a seed
    assert {e.task for e in part.examples} == {"a", "b", "c", "d"} and len(part.examples) == 20
    assert full.sample(100, seed=0) is full
    score = lambda completion, example: exact(completion, example.answer)  # noqa: E731
    settled = lambda completion, example: score_settled(exact, completion, example.answer)  # noqa: E731
    sub = evaluate(model, tok, part, score, 12, 64, settled=settled)
    old = dict(zip(examples, reference))
    old_scores = [score(old[e], e) for e in part.examples]
    assert [score(c, e) for c, e in zip(sub.completions, part.examples)] == old_scores
    assert 0 < sum(old_scores) < len(old_scores)


@pytest.mark.integration
def test_intermediate_subsample_keeps_training_and_final_points_and_records_n_se_and_times(tiny_config, tmp_path):
    import pyarrow.parquet as pq

    from ptplan.stages import run_trial

    over = dict(allocation={"shares": {"cpt": 0.4, "sft": 0.4, "rl": 0.2}}, budget={"total": 1e11},
                eval={"points": {"cpt": 2, "sft": 3, "rl": 2}})
    full = run_trial(tiny_config(**over), tmp_path / "full")
    part = run_trial(tiny_config(**{**over, "eval": {**over["eval"], "intermediate_items": 6}}), tmp_path / "part")
    a = pq.read_table(tmp_path / "full" / "curves.parquet").to_pylist()
    b = pq.read_table(tmp_path / "part" / "curves.parquet").to_pylist()
    assert [(p["stage"], p["step"], p["loss"]) for p in a] == [(p["stage"], p["step"], p["loss"]) for p in b]
    ends = {0, 2, 5, len(b) - 1}  # start, CPT's, SFT's and RL's ends: every item
    assert [p["stage"] for p in b] == ["start", "cpt", "cpt", "sft", "sft", "sft", "rl", "rl"]
    for i, (p, q) in enumerate(zip(a, b)):
        assert p["id_n"] == p["ood_n"] == 16 and p["id_se"] is not None
        assert q["id_n"] == q["ood_n"] == (16 if i in ends else 6)
        if i in ends:
            assert (p["id"], p["ood"], p["id_tasks"]) == (q["id"], q["ood"], q["id_tasks"])
    assert full["final"] == part["final"]
    t = part["timings"]
    assert t["train"] > 0 and t["eval"] > 0 and t["other"] >= 0
    assert t["train"] + t["eval"] + t["other"] == pytest.approx(t["total"])
    for stage in ("cpt", "sft", "rl"):  # RL's intermediate point runs on the LoRA (PEFT) model
        assert part["ledger"]["stages"][stage]["eval"]["tokens"] < full["ledger"]["stages"][stage]["eval"]["tokens"]


@pytest.mark.integration
def test_no_activation_checkpointing_on_the_cpu_trains_the_same_weights(tiny_config, monkeypatch):
    import torch

    from ptplan.stages import _stages, load_backbone
    from ptplan.stages._trial import load_task_data

    cfg = tiny_config(allocation={"sft": {"rank": 4}})
    data = load_task_data(cfg)
    real = _stages._common_args
    weights = {}
    for checkpointing in (True, False):
        monkeypatch.setattr(_stages, "_common_args", lambda ctx, out, steps, on=checkpointing: {
            **real(ctx, out, steps), "gradient_checkpointing": on})
        assert real(_stages.StageContext("sft", cfg.allocation.sft, 1.0, "examples", data, 1, 1, None), "x", 1)[
            "gradient_checkpointing"] is False
        model, tok = load_backbone("llama-0.5m", seed=0)
        ctx = _stages.StageContext("sft", cfg.allocation.sft, 160.0, "examples", data, 500_000, 1, lambda m, s: None)
        trained, state = _stages.SFTStage().run(model, tok, ctx)
        assert state.spent.steps == 10
        weights[checkpointing] = {k: v.clone() for k, v in trained.state_dict().items()}
    assert all(torch.equal(weights[True][k], weights[False][k]) for k in weights[True])
    base = load_backbone("llama-0.5m", seed=0)[0].state_dict()
    assert any(not torch.equal(weights[False][k], base[k]) for k in base)  # it did train
