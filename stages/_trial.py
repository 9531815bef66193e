"""One staged trial: CPT -> SFT -> RL under a budget ledger, with curves and a trial record.

Stage outputs are content-addressed (hash of everything that determines them), so a resumed or
sibling trial reuses a finished stage instead of retraining it. A stage's checkpoint is saved
before its final evaluation, so an evaluation crash never loses the training.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ._config import STAGES, ConfigError, TrialConfig
from ._ledger import BudgetError, Ledger, Spend

CODE_VERSION = "1"  # bump when a change makes old stage checkpoints invalid
FAILURE_REASONS = ("diverged", "oom", "reward_error", "data_error", "eval_error", "budget", "interrupted", "pruned",
                   "error")
log = logging.getLogger("ptplan.trial")


class TrialFailed(RuntimeError):
    """A trial ended with status `failed`; everything recorded so far is on disk."""

    def __init__(self, reason: str, message: str, result: dict | None = None):
        self.reason, self.message, self.result = reason, message, result
        super().__init__(f"trial failed ({reason}): {message}")


class ConfigMismatch(ValueError):
    """An existing trial folder holds a different configuration."""


@dataclass
class CurvePoint:
    stage: str
    step: int
    compute: float  # cumulative, in the budget unit, across stages
    flops: float
    tokens: float
    id: float
    ood: float
    loss: float | None
    reward: float | None
    id_tasks: dict[str, float] = field(default_factory=dict)
    ood_tasks: dict[str, float] = field(default_factory=dict)
    # Items scored and the score's standard error (intermediate points may use a subsample).
    id_n: int | None = None
    ood_n: int | None = None
    id_se: float | None = None
    ood_se: float | None = None


def classify_failure(err: BaseException) -> str:
    """Map an exception to a failure reason class."""
    from ._eval import EvalError
    from ._stages import DivergedError, RewardError

    name = type(err).__name__
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    if name == "TrialPruned":  # raised by a study's pruner from an evaluation hook (no optuna import here)
        return "pruned"
    if isinstance(err, DivergedError):
        return "diverged"
    if isinstance(err, RewardError) or isinstance(err.__cause__, RewardError):
        return "reward_error"
    if isinstance(err, MemoryError) or name == "OutOfMemoryError" or "out of memory" in str(err).lower():
        return "oom"
    if name == "DataError":
        return "data_error"
    if isinstance(err, EvalError):
        return "eval_error"
    if isinstance(err, BudgetError):
        return "budget"
    return "error"


def load_task_data(config: TrialConfig):
    """Materialize the trial's data (built-in suite or validated user files)."""
    d = config.data
    if d.files is not None:
        from ._userdata import load_user_data

        return load_user_data(d.files, scorer=d.scorer, tolerance=d.tolerance)
    from ._tasks import SuiteSizes, build_suite

    return build_suite(d.suite, seed=d.seed, sizes=SuiteSizes(**dataclasses.asdict(d.sizes)))


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stage_key(config: TrialConfig, stage: str, slice_: float, prev_key: str) -> str:
    """Content address of a stage output: everything that determines it, and its input model."""
    data = dataclasses.asdict(config.data)
    if config.data.files:
        data["digests"] = {k: _file_digest(v) for k, v in sorted(config.data.files.items())}
    payload = {
        "v": CODE_VERSION, "stage": stage, "prev": prev_key, "backbone": dataclasses.asdict(config.backbone),
        "data": data, "seed": config.seed, "unit": config.budget.unit, "slice": slice_,
        "config": dataclasses.asdict(config.allocation.stage(stage)), "eval": dataclasses.asdict(config.eval),
    }
    rl = config.allocation.rl
    if stage == "sft" and rl.handover != "fixed" and config.allocation.shares["rl"] > 0:
        payload["handover"] = [rl.handover, rl.handover_confidence]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def base_key(config: TrialConfig) -> str:
    payload = {"v": CODE_VERSION, "backbone": dataclasses.asdict(config.backbone), "seed": config.seed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def ood_peak(points: list[CurvePoint], ledger: Ledger) -> dict | None:
    """OOD peak of the SFT stage: compute into SFT, fraction of its slice, value, censored flag."""
    sft = [p for p in points if p.stage == "sft"]
    if not sft:
        return None
    offset = ledger.spent_before("sft")
    before = [p for p in points if p.stage in ("start", "cpt")]
    series = ([before[-1]] if before else []) + sft
    best = max(range(len(series)), key=lambda i: (series[i].ood, -i))
    peak = series[best]
    rel = max(peak.compute - offset, 0.0)
    spent = ledger.stages["sft"].spent.get(ledger.unit)
    return {"compute": rel, "fraction": min(rel / spent, 1.0) if spent else 0.0, "value": peak.ood,
            "censored": best == len(series) - 1 and len(series) > 1 and series[-1].ood > series[-2].ood}


def describe_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Field-by-field difference of two nested config mappings."""
    lines = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}.{key}" if prefix else str(key)
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            lines += describe_diff(a, b, path)
        elif a != b:
            lines.append(f"{path}: {a!r} -> {b!r}")
    return lines


def _write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (temp file + rename) so a reader never sees half a record."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=float))
    os.replace(tmp, path)


@contextlib.contextmanager
def _stage_lock(folder: Path):
    """Hold an exclusive lock on a stage's content address: a sibling trial that needs the same
    stage at the same time waits, then reuses the checkpoint instead of training it twice."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _quiet_libraries() -> None:
    """ptplan shows its own progress; silence library progress bars and deprecation chatter."""
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)\.")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(trl|peft)\.")


class TrialRunner:
    """Runs (or resumes) one trial into `out_dir`; stage checkpoints live in `store_dir`."""

    def __init__(self, config: TrialConfig, out_dir: str | Path, store_dir: str | Path | None = None,
                 on_progress: Callable[[str, float, float], None] | None = None,
                 on_point: Callable[[CurvePoint], None] | None = None):
        self.config = config
        self.out = Path(out_dir)
        self.store = Path(store_dir) if store_dir else self.out / "stages"
        self.on_progress, self.on_point = on_progress, on_point
        self.points: list[CurvePoint] = []
        self.ledger = Ledger.split(config.budget.total, config.budget.unit, config.allocation.shares)
        self.timings: dict[str, float] = {}
        self.stage_info: dict[str, dict] = {}
        self.stage_records: dict[str, dict] = {}
        self.handover: dict = {}
        self.handle: logging.Handler | None = None

    # -- files -------------------------------------------------------------------------------
    def _write_config(self) -> None:
        import yaml

        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "config.yaml"
        new = self.config.to_dict()
        if path.exists():
            old = yaml.safe_load(path.read_text()) or {}
            diff = describe_diff(old, new)
            if diff:
                raise ConfigMismatch(f"{path} holds a different trial; refusing to mix them:\n  " + "\n  ".join(diff))
        path.write_text(yaml.safe_dump(new, sort_keys=False))

    def _write_outputs(self, status: str, failure: dict | None, started: float) -> dict:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [dataclasses.asdict(p) for p in self.points]
        for r in rows:
            r["id_tasks"], r["ood_tasks"] = json.dumps(r["id_tasks"]), json.dumps(r["ood_tasks"])
        schema = pa.schema([("stage", pa.string()), ("step", pa.int64()), ("compute", pa.float64()),
                            ("flops", pa.float64()), ("tokens", pa.float64()), ("id", pa.float64()),
                            ("ood", pa.float64()), ("loss", pa.float64()), ("reward", pa.float64()),
                            ("id_tasks", pa.string()), ("ood_tasks", pa.string()), ("id_n", pa.int64()),
                            ("ood_n", pa.int64()), ("id_se", pa.float64()), ("ood_se", pa.float64())])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), self.out / "curves.parquet")
        final = self.points[-1] if self.points else None
        self.timings["total"] = time.perf_counter() - started
        # Breakdown: training-loop seconds of the stages trained here, all evaluation, and the rest.
        trained = [st for st in self.ledger.stages.values() if not st.reused]
        self.timings["train"] = sum(st.spent.seconds for st in trained)
        self.timings["eval"] = self.timings.get("eval_start", 0.0) + sum(st.eval.seconds for st in trained)
        self.timings["other"] = self.timings["total"] - self.timings["train"] - self.timings["eval"]
        result = {
            "name": self.config.name, "seed": self.config.seed, "status": status, "failure": failure,
            "allocation": dataclasses.asdict(self.config.allocation),
            "budget": dataclasses.asdict(self.config.budget), "ledger": self.ledger.to_dict(),
            "final": None if final is None or status != "complete" else {
                "id": final.id, "ood": final.ood, "id_tasks": final.id_tasks, "ood_tasks": final.ood_tasks},
            "last_point": None if final is None else {"stage": final.stage, "id": final.id, "ood": final.ood},
            "ood_peak": ood_peak(self.points, self.ledger), "stages": self.stage_info,
            "handover": self.handover or None,
            "timings": self.timings, "parameters": getattr(self, "n_params", None),
            "curves": "curves.parquet",
        }
        _write_json(self.out / "result.json", result)
        return result

    # -- evaluation ---------------------------------------------------------------------------
    def _eval_sets(self, tokenizer, full: bool):
        """The ID and OOD sets, tokenized once per trial; intermediate points may take a fixed subsample."""
        from ._eval import EvalSet

        if not hasattr(self, "_prepared"):
            self._prepared = {"full": (EvalSet.prepare(self.data.id_test, tokenizer),
                                       EvalSet.prepare(self.data.ood_test, tokenizer))}
            n = self.config.eval.intermediate_items
            self._prepared["part"] = self._prepared["full"] if n is None else tuple(
                s.sample(n, self.config.data.seed) for s in self._prepared["full"])
        return self._prepared["full" if full else "part"]

    def _settled(self, completion: str, example) -> bool:
        from ._scoring import score_settled

        return score_settled(self.data.scorer(example.task), completion, example.answer)

    def _evaluate(self, stage: str, model, tokenizer, step: int, spent: Spend, loss=None, reward=None,
                  full: bool = True) -> CurvePoint:
        from ._eval import evaluate

        ev = self.config.eval
        id_set, ood_set = self._eval_sets(tokenizer, full)
        settled = self._settled if hasattr(self.data, "scorer") else None
        kw = {"settled": settled, "compact": not full}  # intermediate points: settled rows leave the batch
        ids = evaluate(model, tokenizer, id_set, self.data.score, self.max_new_tokens, ev.batch_size, **kw)
        ood = evaluate(model, tokenizer, ood_set, self.data.score, self.max_new_tokens, ev.batch_size, **kw)
        if stage in self.ledger.stages:
            rec = self.ledger.stages[stage].eval
            rec.tokens += ids.tokens + ood.tokens
            rec.flops += 2.0 * self.n_params * (ids.tokens + ood.tokens)
            rec.seconds += ids.seconds + ood.seconds
        offset = self.ledger.spent_before(stage) if stage in STAGES else 0.0
        point = CurvePoint(stage, step, offset + spent.get(self.config.budget.unit), self._flops_before(stage) + spent.flops,
                           self._tokens_before(stage) + spent.tokens, ids.score, ood.score, loss, reward,
                           ids.by_task, ood.by_task, ids.n, ood.n, ids.se, ood.se)
        self.points.append(point)
        log.info("eval %s step %d: id=%.3f ood=%.3f loss=%s", stage, step, ids.score, ood.score, loss)
        if self.on_point:
            self.on_point(point)
        return point

    def _flops_before(self, stage):
        return sum(self.ledger.stages[s].spent.flops for s in STAGES[: STAGES.index(stage)]) if stage in STAGES else 0.0

    def _tokens_before(self, stage):
        return sum(self.ledger.stages[s].spent.tokens for s in STAGES[: STAGES.index(stage)]) if stage in STAGES else 0.0

    # -- the trial ----------------------------------------------------------------------------
    def run(self) -> dict:
        started = time.perf_counter()
        _quiet_libraries()
        self._write_config()
        self.handle = logging.FileHandler(self.out / "trial.log")
        self.handle.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        for name in ("ptplan", "transformers", "trl"):
            logging.getLogger(name).addHandler(self.handle)
        logging.getLogger("ptplan").setLevel(logging.INFO)
        try:
            self._run()
        except BaseException as err:
            reason = classify_failure(err)
            message = f"{type(err).__name__}: {err}"
            log.exception("trial failed (%s)", reason)
            result = self._write_outputs("failed", {"reason": reason, "message": message}, started)
            if isinstance(err, KeyboardInterrupt):
                raise
            raise TrialFailed(reason, message, result) from err
        finally:
            for name in ("ptplan", "transformers", "trl"):
                logging.getLogger(name).removeHandler(self.handle)
            self.handle.close()
        return self._write_outputs("complete", None, started)

    def _run(self) -> None:
        import torch

        from ._backbones import count_parameters, load_backbone
        from ._stages import STAGE_TYPES, StageContext

        cfg = self.config
        use_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
        t = time.perf_counter()
        self.data = load_task_data(cfg)
        self.timings["data"] = time.perf_counter() - t
        model, tokenizer = load_backbone(cfg.backbone.name, cfg.backbone.path,
                                         trust_remote_code=cfg.backbone.trust_remote_code, seed=cfg.seed)
        self.n_params = count_parameters(model)
        answers = [e.answer for e in self.data.id_test + self.data.ood_test]
        self.max_new_tokens = cfg.eval.max_new_tokens or (
            max(len(ids) for ids in tokenizer(answers, add_special_tokens=False)["input_ids"]) + 2)
        enabled = [s for s in STAGES if cfg.allocation.shares[s] > 0]
        contexts = {}
        for name in enabled:  # refuse an unpayable allocation before any training
            contexts[name] = StageContext(
                name=name, config=cfg.allocation.stage(name), slice=self.ledger.stages[name].slice,
                unit=cfg.budget.unit, data=self.data, n_params=self.n_params, eval_points=cfg.eval.points[name],
                evaluate=None, seed=cfg.seed, use_cuda=use_cuda, on_progress=self.on_progress)
            STAGE_TYPES[name]().check(contexts[name], tokenizer)
        if use_cuda:
            model = model.to("cuda")

        t = time.perf_counter()
        self._evaluate("start", model, tokenizer, 0, Spend())
        self.timings["eval_start"] = time.perf_counter() - t
        key = base_key(cfg)
        pre_sft = None
        for name in enabled:
            ctx = contexts[name]
            if name == "sft" and cfg.allocation.shares["rl"] > 0 and cfg.allocation.rl.start == "cold":
                pre_sft = (copy.deepcopy(model).cpu(), key)
            if name == "sft" and "rl" in contexts and cfg.allocation.rl.handover == "predicted-peak":
                ctx.handover = self._peak_policy(ctx)
            if name == "rl" and self.handover.get("switched"):  # the rest of SFT's slice goes to RL
                ctx.slice += self.handover["moved_to_rl"]
                self.ledger.stages["rl"].slice = ctx.slice
            if name == "rl" and cfg.allocation.rl.start == "cold" and pre_sft is not None:
                model, key = pre_sft[0].to(next(model.parameters()).device), pre_sft[1]
            key = stage_key(cfg, name, ctx.slice, key)
            folder = self.store / f"{name}-{key}"
            with _stage_lock(folder):
                model, tokenizer = self._stage(name, ctx, folder, model, tokenizer, use_cuda)
            if name == "sft" and ctx.handover is not None:
                self._record_handover(ctx)
            self.stage_info[name] = {"key": key, "checkpoint": str(folder / "model"),
                                     "reused": self.ledger.stages[name].reused}

    def _peak_policy(self, ctx):
        """`handover: predicted-peak`: after each SFT evaluation, ask the OOD-peak curve model whether
        the peak has passed (or falls within the next evaluation interval); if so, end SFT."""
        import numpy as np

        from ptplan.surrogates import OODPeakModel  # numpy/scikit-learn only; imported when asked for

        model = OODPeakModel(level=0.8).fit(None)  # one trial: no prior curves, wide intervals
        confidence = self.config.allocation.rl.handover_confidence
        grid = [i / ctx.eval_points for i in range(ctx.eval_points + 1)]

        def decide(state) -> str | None:
            offset = self.ledger.spent_before("sft")
            before = [p for p in self.points if p.stage in ("start", "cpt")][-1:]
            pts = before + [p for p in self.points if p.stage == "sft"]
            curve = np.array([[(p.compute - offset) / ctx.slice, p.ood, p.id,
                               np.nan if p.loss is None else p.loss] for p in pts])
            pred = model.predict_peak([curve], grid=grid).row(0)
            seen = float(curve[-1, 0])
            if pred["behind"] >= confidence:
                why = f"OOD peak passed with probability {pred['behind']:.2f}"
            elif pred["location_high"] <= seen + 1.0 / ctx.eval_points:
                why = f"OOD peak predicted within the next evaluation interval (<= {pred['location_high']:.0%})"
            else:
                return None
            return (f"{why} at {seen:.0%} of SFT; predicted peak at {pred['location']:.0%} "
                    f"(OOD {pred['value']:.3f})")

        return decide

    def _record_handover(self, ctx) -> None:
        sft = self.ledger.stages["sft"]
        reason = self.stage_records["sft"].get("handover")
        spent = sft.spent.get(self.config.budget.unit)
        self.handover = {"mode": "predicted-peak", "switched": reason is not None, "reason": reason,
                         "at_fraction": min(spent / ctx.slice, 1.0), "at_compute": self.ledger.spent_before("sft") + spent,
                         "moved_to_rl": max(ctx.slice - spent, 0.0) if reason else 0.0}
        if reason:
            log.info("hand-over SFT -> RL: %s", reason)

    def _stage(self, name, ctx, folder: Path, model, tokenizer, use_cuda: bool):
        """Reuse the stage at `folder` if recorded, else train it; then take its final point."""
        from ._backbones import load_checkpoint, save_checkpoint
        from ._stages import STAGE_TYPES

        record_path = folder / "record.json"
        record = json.loads(record_path.read_text()) if record_path.exists() else None
        t = time.perf_counter()
        if record is not None:
            model, tokenizer = load_checkpoint(folder / "model")
            if use_cuda:
                model = model.to("cuda")
            self.ledger.stages[name].spent = Spend(**record["spent"])
            self.ledger.stages[name].reused = True
            reused = [CurvePoint(**p) for p in record["points"]]
            self.points += reused
            for point in reused:  # callers see the same curve whether a stage was trained or reused
                if self.on_point:
                    self.on_point(point)
            log.info("stage %s: reusing checkpoint %s (%s)", name, folder, record["status"])
        else:
            stage_points_from = len(self.points)

            def hook(m, st, _name=name):
                self.ledger.stages[_name].spent = copy.copy(st.spent)
                self._evaluate(_name, m, tokenizer, st.spent.steps, st.spent, st.loss, st.reward, full=False)

            ctx.evaluate = hook
            model.train()
            model, state = STAGE_TYPES[name]().run(model, tokenizer, ctx)
            self.ledger.stages[name].spent = state.spent
            save_checkpoint(model, tokenizer, folder / "model")
            record = {"status": "trained", "spent": dataclasses.asdict(state.spent), "loss": state.loss,
                      "reward": state.reward, "handover": state.handover,
                      "points": [dataclasses.asdict(p) for p in self.points[stage_points_from:]]}
            _write_json(record_path, record)
            self.timings[name] = time.perf_counter() - t - state.eval_seconds
        if record["status"] == "trained":  # final point, taken after the checkpoint is safe
            spent = self.ledger.stages[name].spent
            if not (record["points"] and record["points"][-1]["step"] == spent.steps):  # e.g. a hand-over
                point = self._evaluate(name, model, tokenizer, spent.steps, spent, record.get("loss"),
                                       record.get("reward"))
                record["points"].append(dataclasses.asdict(point))
            record["status"] = "done"
            _write_json(record_path, record)
        self.stage_records[name] = record
        return model, tokenizer


def run_trial(config: TrialConfig, out_dir: str | Path, store_dir: str | Path | None = None, **hooks: Any) -> dict:
    """Run one trial; returns the result record (raises TrialFailed after recording a failure)."""
    return TrialRunner(config, out_dir, store_dir, **hooks).run()


def load_trial_config(out_dir: str | Path) -> TrialConfig:
    """Read the resolved config of an existing trial folder (for `ptplan trial --resume`)."""
    import yaml

    path = Path(out_dir) / "config.yaml"
    if not path.exists():
        raise ConfigError("--resume", f"needs a trial folder with config.yaml; {path} does not exist")
    return TrialConfig.from_dict(yaml.safe_load(path.read_text()))
