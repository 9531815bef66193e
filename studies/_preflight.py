"""Preflight: what would make every trial of a study fail, found in seconds before the first one.

`ptplan preflight PLAN` runs it, `ptplan run` runs it before its first trial, and a cluster
submitter can call `preflight(plan)` before it queues anything. Checks, in order: every data split
read against one schema (columns, types, UTF-8), the scorer and the RL reward called on one
example, the backbone loads, every corner of the search space pays for one optimizer step per
stage, one real optimizer step of each stage at the heaviest searched setting, and evaluation
generates for one ID and one OOD item. The first problem raises `PreflightError` naming the file,
column or plan field.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ._config import StudyError

if TYPE_CHECKING:
    from ._config import StudyPlan

MAX_CORNERS = 256  # search-space corners checked for the one-step budget rule


class PreflightError(StudyError):
    """A preflight check failed; `check` names it, the message names the file, column or field."""

    def __init__(self, check: str, message: str):
        self.check = check
        super().__init__(f"preflight ({check}): {message}")


@dataclass
class PreflightCheck:
    name: str
    detail: str
    seconds: float


def _corners(plan: "StudyPlan") -> list[dict]:
    """Every combination of each searched field's extremes (its choices, or both ends of its range)."""
    params = list(plan.space.params.values())
    probes = [p.probes() for p in params]
    combos = itertools.islice(itertools.product(*probes), MAX_CORNERS)
    return [dict(zip([p.path for p in params], combo)) for combo in combos]


def _heaviest(plan: "StudyPlan") -> dict:
    """The searched values that need the most memory per step: full fine-tuning (rank 0) if searched,
    else the largest rank; the largest batch, generations and lengths."""
    out = {}
    for path, p in plan.space.params.items():
        values = p.probes()
        numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if path.endswith(".rank") and numeric:
            out[path] = 0 if 0 in numeric else max(numeric)
        elif numeric and path.rsplit(".", 1)[-1] in ("batch_size", "generations", "max_completion_length",
                                                     "max_length"):
            out[path] = max(numeric)
    return out


def preflight(plan: "StudyPlan", *, train_steps: bool = True,
              echo: Callable[[str], None] | None = None) -> list[PreflightCheck]:
    """Check a study plan before any trial runs; returns the checks passed, raises PreflightError.

    Args:
        plan: the resolved study plan (`StudyPlan.from_mapping`).
        train_steps: also run one real optimizer step of each stage (seconds on the built-in
            backbones); False checks data, scorer, backbone, budget and evaluation only.
        echo: called with one line per passed check.
    """
    from ptplan.stages._config import ConfigError

    checks: list[PreflightCheck] = []

    def passed(name: str, detail: str, t0: float) -> None:
        checks.append(PreflightCheck(name, detail, time.perf_counter() - t0))
        if echo:
            echo(f"preflight {name}: {detail}")

    config = plan.trial
    t0 = time.perf_counter()
    data = _check_data(config)
    passed("data", f"{data.name}: " + ", ".join(f"{k} {n}" for k, n in _sizes(data).items()), t0)

    t0 = time.perf_counter()
    _check_scoring(config, data)
    passed("scorer", f"`{config.data.scorer if config.data.files else 'built-in'}` scored one ID and one OOD "
           "example, the RL reward one completion", t0)

    t0 = time.perf_counter()
    model, tokenizer = _check_backbone(config)
    passed("backbone", f"{config.backbone.path or config.backbone.name} loaded "
           f"({sum(p.numel() for p in model.parameters()):,} parameters)", t0)

    t0 = time.perf_counter()
    corners = _corners(plan)
    for values in corners:
        try:
            trial = plan.space.config_for(values)
        except (ConfigError, ValueError) as err:
            raise PreflightError("budget", f"the search-space corner {plan.space.describe(values)} is not a valid "
                                 f"trial: {err}") from None
        _check_budget(trial, data, tokenizer, model, plan.space.describe(values) if values else "the plan")
    passed("budget", f"{len(corners)} corner(s) of the search space pay for one optimizer step per stage", t0)

    t0 = time.perf_counter()
    _check_eval(config, data, model, tokenizer)
    passed("evaluation", "generated for one ID and one OOD item", t0)

    if train_steps:
        t0 = time.perf_counter()
        heavy = plan.space.config_for(_heaviest(plan))
        stages = _one_step_each(heavy, data, plan, corners)
        passed("one step", f"one optimizer step of {', '.join(stages) or 'no stage'} at the heaviest searched "
               "setting", t0)
    return checks


def _sizes(data) -> dict[str, int]:
    return {"cpt": len(data.cpt_corpus), "sft": len(data.sft_train), "rl": len(data.rl_train),
            "id": len(data.id_test), "ood": len(data.ood_test)}


def _check_data(config):
    from ptplan.stages._trial import load_task_data

    try:
        return load_task_data(config)
    except ValueError as err:  # DataError names split, file, row, column and value
        raise PreflightError("data", str(err)) from None


def _check_scoring(config, data) -> None:
    where = "data.scorer" if config.data.files else "the built-in scorer"
    for split, examples in (("id", data.id_test), ("ood", data.ood_test)):
        example = examples[0]
        try:
            value = float(data.score(example.answer, example))
        except Exception as err:  # noqa: BLE001 - whatever the user's scorer raises
            raise PreflightError("scorer", f"{where} raised {type(err).__name__} on the first `{split}` example "
                                 f"(task {example.task!r}): {err}") from None
        if not 0.0 <= value <= 1.0:
            raise PreflightError("scorer", f"{where} returned {value!r} for the first `{split}` example; scores must "
                                 "lie in [0, 1]")
    if config.allocation.shares["rl"] > 0 or data.rl_train:
        train = data.rl_train or data.id_test
        example = train[0]
        try:
            values = data.reward_fn()([example.answer], answer=[example.answer], task=[example.task],
                                      prompts=[example.prompt])
        except Exception as err:  # noqa: BLE001
            raise PreflightError("scorer", f"the RL reward ({where}) raised {type(err).__name__} on the first `rl` "
                                 f"example: {err}") from None
        if len(values) != 1:
            raise PreflightError("scorer", f"the RL reward ({where}) returned {len(values)} values for 1 completion")


def _check_backbone(config):
    from ptplan.stages._backbones import load_backbone

    b = config.backbone
    try:
        return load_backbone(b.name, b.path, trust_remote_code=b.trust_remote_code, seed=config.seed)
    except FileNotFoundError as err:  # names the field and folder itself
        raise PreflightError("backbone", str(err)) from None
    except Exception as err:  # noqa: BLE001 - bad hub id, bad config: one line
        field = "backbone.path" if b.path else "backbone.name"
        raise PreflightError("backbone", f"`{field}` {b.path or b.name!r} does not load: "
                             f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None


def _contexts(trial, data, tokenizer, n_params):
    from ptplan.stages._ledger import Ledger
    from ptplan.stages._stages import StageContext

    ledger = Ledger.split(trial.budget.total, trial.budget.unit, trial.allocation.shares)
    return {name: StageContext(name=name, config=trial.allocation.stage(name), slice=ledger.stages[name].slice,
                               unit=trial.budget.unit, data=data, n_params=n_params,
                               eval_points=trial.eval.points[name], evaluate=None, seed=trial.seed)
            for name in ("cpt", "sft", "rl") if trial.allocation.shares[name] > 0}


def _check_budget(trial, data, tokenizer, model, where: str) -> None:
    from ptplan.stages._ledger import BudgetError
    from ptplan.stages._stages import STAGE_TYPES

    n_params = sum(p.numel() for p in model.parameters())
    for name, ctx in _contexts(trial, data, tokenizer, n_params).items():
        try:
            STAGE_TYPES[name]().check(ctx, tokenizer)
        except BudgetError as err:
            raise PreflightError("budget", f"at {where}: {err}") from None


def _check_eval(config, data, model, tokenizer) -> None:
    from ptplan.stages._eval import EvalError, evaluate

    answers = [e.answer for e in data.id_test[:1] + data.ood_test[:1]]
    lengths = [len(i) for i in tokenizer(answers, add_special_tokens=False)["input_ids"]]
    max_new = config.eval.max_new_tokens or max(lengths) + 2
    try:
        for examples in (data.id_test[:1], data.ood_test[:1]):
            evaluate(model, tokenizer, examples, data.score, max_new, 1)
    except EvalError as err:
        raise PreflightError("evaluation", str(err)) from None
    except Exception as err:  # noqa: BLE001 - e.g. the scorer fails on a real completion
        raise PreflightError("evaluation",
                             f"scoring a generated completion raised {type(err).__name__}: {err}") from None


def _one_step_each(trial, data, plan: "StudyPlan", corners: list[dict]) -> list[str]:
    """One optimizer step of each stage that some point of the space runs, each from the backbone
    saved to a temporary folder and loaded back, as a trial hands stages over."""
    import tempfile

    import torch

    from ptplan.stages._backbones import load_backbone, load_checkpoint, save_checkpoint
    from ptplan.stages._stages import STAGE_TYPES, StageContext
    from ptplan.stages._trial import _quiet_libraries
    from ptplan.stages.errors import reason_of

    _quiet_libraries()
    enabled = [s for s in ("cpt", "sft", "rl")
               if trial.allocation.shares[s] > 0 or any(plan.space.shares_for(c)[s] > 0 for c in corners)]
    use_cuda = trial.device.startswith("cuda") or (trial.device == "auto" and torch.cuda.is_available())
    b = trial.backbone
    with tempfile.TemporaryDirectory(prefix="ptplan-preflight-") as folder:
        model, tokenizer = load_backbone(b.name, b.path, trust_remote_code=b.trust_remote_code, seed=trial.seed)
        n_params = sum(p.numel() for p in model.parameters())
        save_checkpoint(model, tokenizer, folder)
        del model
        for name in enabled:
            model, tokenizer = load_checkpoint(folder)
            model = model.to("cuda") if use_cuda else model
            stage_cfg = trial.allocation.stage(name)
            ctx = StageContext(name=name, config=stage_cfg, slice=float(stage_cfg.batch_size), unit="examples",
                               data=data, n_params=n_params, eval_points=1, evaluate=lambda m, st: None,
                               seed=trial.seed, use_cuda=use_cuda)
            try:
                model.train()
                STAGE_TYPES[name]().run(model, tokenizer, ctx)
            except Exception as err:  # noqa: BLE001 - OOM at launch, a reward that raises, a TRL data error
                first = str(err).splitlines()[0] if str(err) else ""
                raise PreflightError("one step", f"stage `{name}` ({_describe(stage_cfg)}) failed its first optimizer "
                                     f"step ({reason_of(err)}): {type(err).__name__}: {first}") from None
            del model
    return enabled


def _describe(stage_cfg) -> str:
    shown = ("rank", "batch_size", "lr", "generations")
    return ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(stage_cfg).items() if k in shown)
