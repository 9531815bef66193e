"""CPT, SFT and RL stages: one protocol on top of TRL's trainers.

Every stage: prepare a dataset and a TRL config, train until its budget slice is spent (a
TrainerCallback reads the ledger after each optimizer step), evaluate at evenly spaced points of
the slice, merge its LoRA adapter (if any) and hand the model to the next stage.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ._config import RLConfig, StageConfig
from ._ledger import BudgetError, Spend, rl_flops_per_token, train_flops_per_token
from ._scoring import RewardError
from ptplan.stages.errors import DivergedError




@dataclass
class StageContext:
    """What a stage needs from the trial: its slice, data, eval hook and settings."""

    name: str
    config: StageConfig
    slice: float
    unit: str
    data: Any  # TaskData
    n_params: int
    eval_points: int
    evaluate: Callable[[Any, "StageState"], None]  # records one curve point (not charged)
    seed: int = 0
    use_cuda: bool = False
    on_progress: Callable[[str, float, float], None] | None = None
    # After each intermediate evaluation: a reason to end the stage early (the SFT -> RL hand-over), or None.
    handover: Callable[["StageState"], str | None] | None = None
    chat: Any = None  # a `ChatFormat` when prompts are conversations (`data.chat`), else None
    accel: Any = None  # the plan's `accel` (GPU options); None: defaults
    tracking: str = "none"  # `tracking`: a TRL `report_to` target
    run_name: str | None = None  # the tracker run: <study>/<trial>/<stage>
    log_dir: str | None = None  # the trainer's output folder when tracked (tensorboard writes its runs/ there)

    def prompt_text(self, tokenizer, prompt: str) -> str:
        """A prompt as the model sees it: templated when the trial uses a chat template."""
        return prompt if self.chat is None else self.chat.prompt_text(tokenizer, prompt)


@dataclass
class StageState:
    """Live view of a stage in progress, shared with the evaluation hook."""

    spent: Spend = field(default_factory=Spend)
    loss: float | None = None
    reward: float | None = None
    eval_seconds: float = 0.0
    handover: str | None = None
    adapter: Any = None  # a LoRA stage's (peft config, adapter weights on the CPU), taken before the merge


def _mean_tokens(tokenizer, texts: list[str]) -> tuple[float, int]:
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return sum(lengths) / len(lengths), min(lengths)


class _BudgetCallback(TrainerCallback):
    """Updates the stage's spend after each optimizer step, evaluates at thresholds, stops at the slice."""

    def __init__(self, ctx: StageContext, state: StageState, flops_per_token: float, examples_per_step: int,
                 n_train: int):
        self.ctx, self.state = ctx, state
        self.flops_per_token = flops_per_token
        self.examples_per_step = examples_per_step
        self.n_train = n_train
        # Intermediate eval thresholds; the final point is taken after the checkpoint is saved.
        self.thresholds = [ctx.slice * i / ctx.eval_points for i in range(1, ctx.eval_points)]
        self.t0 = 0.0

    def on_train_begin(self, args, state, control, **kw):
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, **kw):
        spent = self.state.spent
        spent.steps = state.global_step
        spent.tokens = float(state.num_input_tokens_seen)
        spent.flops = spent.tokens * self.flops_per_token
        spent.examples = float(state.global_step * self.examples_per_step)
        spent.epochs = spent.examples / self.n_train
        spent.seconds = time.perf_counter() - self.t0 - self.state.eval_seconds
        value = spent.get(self.ctx.unit)
        if value >= self.ctx.slice * (1 - 1e-9):  # tolerance: a slice of 2.0000000001 epochs is 2 epochs
            control.should_training_stop = True
        elif self.thresholds and value >= self.thresholds[0]:
            while self.thresholds and value >= self.thresholds[0]:
                self.thresholds.pop(0)
            t = time.perf_counter()
            self.ctx.evaluate(model, self.state)
            reason = self.ctx.handover(self.state) if self.ctx.handover else None
            self.state.eval_seconds += time.perf_counter() - t
            if reason:
                self.state.handover = reason
                control.should_training_stop = True
        if self.ctx.on_progress:
            self.ctx.on_progress(self.ctx.name, min(value, self.ctx.slice), self.ctx.slice)
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "loss" in logs:
            loss = float(logs["loss"])
            if not math.isfinite(loss):
                raise DivergedError(f"stage {self.ctx.name}: training loss became {loss} at step {state.global_step}")
            self.state.loss = loss
        for key in ("reward", "rewards/mean"):
            if key in logs:
                self.state.reward = float(logs[key])
                break


def _lora_config(rank: int):
    if rank == 0:
        return None
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")


def _common_args(ctx: StageContext, out_dir: str, max_steps: int) -> dict:
    from ._accel import trainer_args
    from ._config import AccelConfig

    cfg = ctx.config
    tracked = ctx.tracking != "none"
    return dict(
        output_dir=ctx.log_dir if tracked and ctx.log_dir else out_dir, learning_rate=cfg.lr, max_steps=max_steps,
        lr_scheduler_type="constant_with_warmup", warmup_steps=cfg.warmup_steps, logging_steps=1, save_strategy="no",
        report_to=ctx.tracking if tracked else "none", run_name=ctx.run_name if tracked else None,
        use_cpu=not ctx.use_cuda, seed=ctx.seed,
        data_seed=ctx.seed, dataloader_drop_last=True, disable_tqdm=True, max_grad_norm=1.0,
        logging_nan_inf_filter=False, **trainer_args(ctx.accel or AccelConfig(), ctx.use_cuda, ctx.name),
    )


def _max_steps(ctx: StageContext, min_step_cost: float, examples_per_step: int, n_train: int) -> int:
    """An upper bound on the steps the slice can pay for; the callback stops at the slice itself."""
    unit = ctx.unit
    if unit == "seconds":
        return 10**7
    if unit == "examples":
        return math.ceil(ctx.slice / examples_per_step) + 1
    if unit == "epochs":
        return math.ceil(ctx.slice * n_train / examples_per_step) + 1
    return math.ceil(ctx.slice / max(min_step_cost, 1e-12)) + 1


def _check_one_step(ctx: StageContext, step_cost: dict[str, float]) -> None:
    cost = step_cost.get(ctx.unit)
    if cost is not None and ctx.slice < cost:
        raise BudgetError(
            f"stage `{ctx.name}` gets {ctx.slice:.4g} {ctx.unit} but one optimizer step costs about {cost:.4g} "
            f"{ctx.unit}; raise `budget.total` so this stage's share pays at least that, or set its share to 0")


class _TrainerStage:
    """Shared body of the three stages: build trainer, train to the slice, merge the adapter."""

    name = "stage"

    def step_costs(self, ctx: StageContext, tokenizer) -> tuple[dict[str, float], float, int, int]:
        raise NotImplementedError

    def build_trainer(self, model, tokenizer, ctx: StageContext, out_dir: str, max_steps: int, callback):
        raise NotImplementedError

    def check(self, ctx: StageContext, tokenizer) -> None:
        """Refuse, before any training, a slice that cannot pay for one optimizer step."""
        costs, *_ = self.step_costs(ctx, tokenizer)
        _check_one_step(ctx, costs)

    def run(self, model, tokenizer, ctx: StageContext) -> tuple[Any, StageState]:
        costs, min_tokens_per_step, examples_per_step, n_train = self.step_costs(ctx, tokenizer)
        _check_one_step(ctx, costs)
        fpt = costs["flops"] / costs["tokens"]
        min_cost = {"tokens": min_tokens_per_step, "flops": min_tokens_per_step * fpt}.get(ctx.unit, 1.0)
        max_steps = _max_steps(ctx, min_cost, examples_per_step, n_train)
        state = StageState()
        callback = _BudgetCallback(ctx, state, fpt, examples_per_step, n_train)
        with tempfile.TemporaryDirectory(prefix=f"ptplan-{ctx.name}-") as out_dir:
            trainer = self.build_trainer(model, tokenizer, ctx, out_dir, max_steps, callback)
            for quiet in (PrinterCallback, ProgressCallback):  # ptplan reports progress itself
                trainer.remove_callback(quiet)
            trainer.train()
            trained = trainer.model
        if hasattr(trained, "merge_and_unload"):  # a LoRA stage: keep its adapter (MB) for the checkpoint
            from peft import get_peft_model_state_dict

            weights = {k: v.detach().to("cpu").clone() for k, v in get_peft_model_state_dict(trained).items()}
            state.adapter = (trained.peft_config["default"], weights)
            trained = trained.merge_and_unload()
        return trained, state


class CPTStage(_TrainerStage):
    """Continued pre-training: causal LM loss on every token of the corpus (SFTTrainer on text)."""

    name = "cpt"

    def texts(self, ctx, tokenizer=None):
        return list(ctx.data.cpt_corpus)

    def dataset(self, ctx):
        from datasets import Dataset

        return Dataset.from_dict({"text": self.texts(ctx)})

    def step_costs(self, ctx, tokenizer):
        texts = self.texts(ctx, tokenizer)
        if not texts:
            raise BudgetError(f"stage `{ctx.name}` has a share but its training set is empty")
        mean, least = _mean_tokens(tokenizer, texts)
        bs = ctx.config.batch_size
        fpt = train_flops_per_token(ctx.n_params, ctx.config.rank)
        tokens = bs * (mean + 1)  # + EOS
        return ({"tokens": tokens, "flops": tokens * fpt, "examples": bs, "epochs": bs / len(texts)},
                bs * (least + 1), bs, len(texts))

    def build_trainer(self, model, tokenizer, ctx, out_dir, max_steps, callback):
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**_common_args(ctx, out_dir, max_steps), per_device_train_batch_size=ctx.config.batch_size,
                         max_length=ctx.config.max_length, include_num_input_tokens_seen="non_padding",
                         dataset_num_proc=None, **self.extra_args())
        return SFTTrainer(model=model, args=args, train_dataset=self.dataset(ctx), processing_class=tokenizer,
                          peft_config=_lora_config(ctx.config.rank), callbacks=[callback])

    def extra_args(self) -> dict:
        return {"completion_only_loss": False}


class SFTStage(CPTStage):
    """Supervised fine-tuning on prompt -> answer with loss on the completion only."""

    name = "sft"

    def texts(self, ctx, tokenizer=None):
        if ctx.chat is not None and tokenizer is not None:  # what the template makes of each example
            return [ctx.prompt_text(tokenizer, e.prompt) + e.answer for e in ctx.data.sft_train]
        return [e.prompt + e.answer for e in ctx.data.sft_train]

    def dataset(self, ctx):
        from datasets import Dataset

        train = ctx.data.sft_train
        if ctx.chat is not None:  # TRL's conversational prompt-completion: loss on the assistant turn only
            return Dataset.from_list([ctx.chat.sft_row(e.prompt, e.answer) for e in train])
        return Dataset.from_dict({"prompt": [e.prompt for e in train], "completion": [e.answer for e in train]})

    def extra_args(self) -> dict:
        return {"completion_only_loss": True}


class RLStage(_TrainerStage):
    """GRPO with the task's verifiable reward (TRL GRPOTrainer)."""

    name = "rl"

    def step_costs(self, ctx, tokenizer):
        cfg: RLConfig = ctx.config
        train = ctx.data.rl_train
        if not train:
            raise BudgetError(f"stage `{ctx.name}` has a share but its training set is empty")
        mean_prompt, least_prompt = _mean_tokens(tokenizer, [ctx.prompt_text(tokenizer, e.prompt) for e in train])
        mean_answer, _ = _mean_tokens(tokenizer, [e.answer for e in train])
        completions = cfg.batch_size * cfg.generations
        fpt = rl_flops_per_token(ctx.n_params, cfg.rank, cfg.beta)
        tokens = completions * (mean_prompt + min(mean_answer + 1, cfg.max_completion_length))
        return ({"tokens": tokens, "flops": tokens * fpt, "examples": cfg.batch_size,
                 "epochs": cfg.batch_size / len(train)},
                completions * (least_prompt + 1), cfg.batch_size, len(train))

    def build_trainer(self, model, tokenizer, ctx, out_dir, max_steps, callback):
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        cfg: RLConfig = ctx.config
        train = ctx.data.rl_train
        prompts = [e.prompt if ctx.chat is None else ctx.chat.messages(e.prompt) for e in train]
        dataset = Dataset.from_dict({"prompt": prompts, "answer": [e.answer for e in train],
                                     "task": [e.task for e in train]})
        args = GRPOConfig(**_common_args(ctx, out_dir, max_steps),
                          per_device_train_batch_size=cfg.batch_size * cfg.generations,
                          num_generations=cfg.generations, max_completion_length=cfg.max_completion_length,
                          beta=cfg.beta, temperature=cfg.temperature, steps_per_generation=1,
                          include_num_input_tokens_seen="no",
                          chat_template_kwargs=dict(ctx.chat.kwargs) if ctx.chat is not None else None)
        rewards = [_guarded_reward(ctx.data.reward_fn(partial=cfg.reward == "partial"))]
        if cfg.format_reward > 0:
            rewards.append(_format_reward(ctx.data.extract, cfg.format_reward))
        return GRPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                           reward_funcs=rewards, peft_config=_lora_config(cfg.rank), callbacks=[callback])


def _format_reward(extract, weight: float):
    """`allocation.rl.format_reward`: `weight` for a completion that holds an answer where `data.answer`
    looks, 0 otherwise (added to the task reward)."""
    from ._scoring import as_text

    def format_reward(completions, **kwargs):
        return [weight if extract(as_text(c)) is not None else 0.0 for c in completions]

    return format_reward


def _guarded_reward(reward):
    """Turn any exception of the task's reward into a RewardError (a failure class, not a crash)."""

    def task_reward(completions, **kwargs):
        try:
            values = reward(completions, **kwargs)
        except RewardError:
            raise
        except Exception as err:
            raise RewardError(f"reward function raised {type(err).__name__}: {err}") from err
        if len(values) != len(completions):
            raise RewardError(f"reward function returned {len(values)} values for {len(completions)} completions")
        return [float(v) for v in values]

    return task_reward


STAGE_TYPES: dict[str, type[_TrainerStage]] = {"cpt": CPTStage, "sft": SFTStage, "rl": RLStage}
