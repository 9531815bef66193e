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
from pathlib import Path
from typing import Any, Callable

from ._config import TrialConfig
from .errors import ConfigError, ConfigMismatch, TrialFailed, reason_of
from ._ledger import Ledger, Spend
from .record import (CONFIG_FILE, CURVES_FILE, LOG_FILE, RESULT_FILE, STAGES, CurvePoint, TrialResult,
                     ood_peak, write_curves)

CODE_VERSION = "1"  # bump when a change makes old stage checkpoints invalid
log = logging.getLogger("ptplan.trial")
HandoverPolicy = Callable[[list[tuple[float, float, float, float]], int], "str | None"]


def load_task_data(config: TrialConfig):
    """Materialize the trial's data (built-in suite or validated user files), with `data.answer`'s
    extractor applied before every score."""
    from ._scoring import answer_extractor

    d = config.data
    if d.files is not None:
        from ._userdata import load_user_data

        data = load_user_data(d.files, scorer=d.scorer, tolerance=d.tolerance)
    else:
        from ._tasks import build_suite

        data = build_suite(d.suite, seed=d.seed, sizes=d.sizes, ood=d.ood)
    data.extract = answer_extractor(d.answer)
    return data


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stage_key(config: TrialConfig, stage: str, slice_: float, prev_key: str) -> str:
    """Content address of a stage output: everything that determines it, and its input model."""
    data = _without_new_defaults(dataclasses.asdict(config.data), "data")
    if config.data.files:
        data["digests"] = {k: _file_digest(v) for k, v in sorted(config.data.files.items())}
    payload = {
        "v": CODE_VERSION, "stage": stage, "prev": prev_key, "backbone": dataclasses.asdict(config.backbone),
        "data": data, "seed": config.seed, "unit": config.budget.unit, "slice": slice_,
        "config": _without_new_defaults(dataclasses.asdict(config.allocation.stage(stage)), stage), "eval": dataclasses.asdict(config.eval),
    }
    rl = config.allocation.rl
    if stage == "sft" and rl.handover != "fixed" and config.allocation.shares["rl"] > 0:
        payload["handover"] = [rl.handover, rl.handover_confidence]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


# Fields added after stage keys were first written, at the value that reproduces the earlier behaviour:
# left out of the key at that value, so checkpoints made before they existed stay valid.
_NEW_DEFAULTS = {"data": {"ood": "recall"}, "rl": {"reward": "exact"}}


def _without_new_defaults(fields: dict, section: str) -> dict:
    return {k: v for k, v in fields.items() if _NEW_DEFAULTS.get(section, {}).get(k, object()) != v}


def base_key(config: TrialConfig) -> str:
    payload = {"v": CODE_VERSION, "backbone": dataclasses.asdict(config.backbone), "seed": config.seed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


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


def file_manifest(folder: Path) -> dict[str, dict]:
    """Size and SHA-256 of every file under a saved checkpoint (relative path -> {size, sha256})."""
    return {str(f.relative_to(folder)): {"size": f.stat().st_size, "sha256": _file_digest(str(f))}
            for f in sorted(folder.rglob("*")) if f.is_file()}


def verify_checkpoint(folder: Path, manifest: dict | None) -> str | None:
    """None if every file of `manifest` is there with its size and checksum, else what is wrong."""
    if manifest is None:
        return None  # recorded before checksums: loading it is the check
    for rel, want in sorted(manifest.items()):
        f = folder / rel
        if not f.is_file():
            return f"{rel} is missing"
        size = f.stat().st_size
        if size != want["size"]:
            return f"{rel} has {size} bytes, recorded {want['size']}"
        if _file_digest(str(f)) != want["sha256"]:
            return f"{rel} does not match its recorded SHA-256"
    return None


def quarantine(folder: Path) -> Path:
    """Move a damaged stage's files (not its lock) to `<store>/quarantine/<stage folder>-<time>/`."""
    aside = folder.parent / "quarantine" / f"{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    aside.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        if item.name != ".lock":
            os.replace(item, aside / item.name)
    return aside


def attempt_folder(out: Path) -> Path:
    """Where a run of the trial in `out` writes its result: `out` itself, unless `out` already holds a
    complete result, which is never overwritten; then a new `out/attempts/<k>/`."""
    try:
        done = json.loads((out / "result.json").read_text()).get("status") == "complete"
    except (OSError, ValueError):
        done = False
    if not done:
        return out
    attempts = out / "attempts"
    k = 1 + max((int(p.name) for p in attempts.glob("*") if p.name.isdigit()), default=0)
    (attempts / str(k)).mkdir(parents=True, exist_ok=True)
    return attempts / str(k)


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
    """Runs (or resumes) one trial into `out_dir`; stage checkpoints live in `store_dir`.

    `handover_policy(curve, eval_points)` decides a `predicted-peak` hand-over: it gets the SFT curve
    so far as (fraction of the slice, OOD, ID, loss) tuples and returns a reason to end SFT, or None.
    """

    def __init__(self, config: TrialConfig, out_dir: str | Path, store_dir: str | Path | None = None,
                 on_progress: Callable[[str, float, float], None] | None = None,
                 on_point: Callable[[CurvePoint], None] | None = None,
                 handover_policy: HandoverPolicy | None = None, run_name: str | None = None):
        self.config = config
        self.out = Path(out_dir)
        self.store = Path(store_dir) if store_dir else self.out / "stages"
        self.on_progress, self.on_point = on_progress, on_point
        self.handover_policy = handover_policy
        self.run_name = run_name or config.name  # tracker runs: <run_name>/<stage>
        self.points: list[CurvePoint] = []
        self.ledger = Ledger.split(config.budget.total, config.budget.unit, config.allocation.shares)
        self.timings: dict[str, float] = {}
        self.stage_info: dict[str, dict] = {}
        self.stage_records: dict[str, dict] = {}
        self.handover: dict = {}
        self.handle: logging.Handler | None = None
        self._prepared: dict | None = None  # the test sets, tokenized once (`_eval_sets`)
        self.chat = None  # the trial's ChatFormat when prompts are conversations (set once the tokenizer loads)
        self.dest = self.out  # where result.json and curves.parquet go (an attempt folder if already complete)

    # -- files -------------------------------------------------------------------------------
    def _write_config(self) -> None:
        import yaml

        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / CONFIG_FILE
        new = self.config.to_dict()
        if path.exists():
            old = yaml.safe_load(path.read_text()) or {}
            try:  # written by an earlier ptplan: fields added since take their defaults
                old = TrialConfig.from_dict(old).to_dict()
            except ConfigError:
                pass
            diff = describe_diff(old, new)
            if diff:
                raise ConfigMismatch(f"{path} holds a different trial; refusing to mix them:\n  " + "\n  ".join(diff))
        path.write_text(yaml.safe_dump(new, sort_keys=False))

    def _write_outputs(self, status: str, failure: dict | None, started: float) -> TrialResult:
        write_curves(self.points, self.dest / CURVES_FILE)
        final = self.points[-1] if self.points else None
        self.timings["total"] = time.perf_counter() - started
        # Breakdown: training-loop seconds of the stages trained here, all evaluation, and the rest.
        trained = [st for st in self.ledger.stages.values() if not st.reused]
        self.timings["train"] = sum(st.spent.seconds for st in trained)
        self.timings["eval"] = self.timings.get("eval_start", 0.0) + sum(st.eval.seconds for st in trained)
        self.timings["other"] = self.timings["total"] - self.timings["train"] - self.timings["eval"]
        result: TrialResult = {
            "name": self.config.name, "seed": self.config.seed, "status": status, "failure": failure,
            "allocation": dataclasses.asdict(self.config.allocation),
            "budget": dataclasses.asdict(self.config.budget), "ledger": self.ledger.to_dict(),
            "final": None if final is None or status != "complete" else {
                "id": final.id, "ood": final.ood, "id_tasks": final.id_tasks, "ood_tasks": final.ood_tasks},
            "last_point": None if final is None else {"stage": final.stage, "id": final.id, "ood": final.ood},
            "ood_peak": self._ood_peak(), "stages": self.stage_info,
            "handover": self.handover or None,
            "timings": self.timings, "parameters": getattr(self, "n_params", None),
            "curves": CURVES_FILE,
        }
        _write_json(self.dest / RESULT_FILE, result)
        return result

    def _ood_peak(self) -> dict | None:
        sft = self.ledger.stages.get("sft")
        return ood_peak(self.points, self.ledger.spent_before("sft"), sft.spent.get(self.ledger.unit) if sft else 0.0)

    # -- evaluation ---------------------------------------------------------------------------
    def _eval_sets(self, tokenizer, full: bool):
        """The ID and OOD sets, tokenized once per trial; intermediate points may take a fixed subsample."""
        from ._eval import EvalSet

        if self._prepared is None:
            chat = self.chat  # evaluation generates from the prompts SFT and RL were given
            fmt = None if chat is None else (lambda prompt: chat.prompt_text(tokenizer, prompt))
            self._prepared = {"full": (EvalSet.prepare(self.data.id_test, tokenizer, fmt),
                                       EvalSet.prepare(self.data.ood_test, tokenizer, fmt))}
            n = self.config.eval.intermediate_items
            self._prepared["part"] = self._prepared["full"] if n is None else tuple(
                s.sample(n, self.config.data.seed) for s in self._prepared["full"])
        return self._prepared["full" if full else "part"]

    def _settled(self, completion: str, example) -> bool:
        from ._scoring import score_settled

        if self.data.extract is not None:  # the answer comes after the thinking: generate to the end
            return False
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
    def run(self) -> TrialResult:
        started = time.perf_counter()
        _quiet_libraries()
        self._write_config()
        self.handle = logging.FileHandler(self.out / LOG_FILE)
        self.handle.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        for name in ("ptplan", "transformers", "trl"):
            logging.getLogger(name).addHandler(self.handle)
        logging.getLogger("ptplan").setLevel(logging.INFO)
        self.dest = attempt_folder(self.out)
        if self.dest != self.out:
            log.info("trial already complete: its result.json and curves.parquet stay as they are; this attempt "
                     "writes to %s", self.dest)
        try:
            self._run()
        except BaseException as err:
            reason = reason_of(err)
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

        from ._backbones import BASE_FILE, count_parameters, folder_bytes, load_backbone
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
        from ._accel import check_accel
        from ._chat import chat_format

        chat = self.chat = chat_format(tokenizer, cfg.data)
        check_accel(cfg.accel, use_cuda)
        enabled = [s for s in STAGES if cfg.allocation.shares[s] > 0]
        peak_handover = "rl" in enabled and "sft" in enabled and cfg.allocation.rl.handover == "predicted-peak"
        if peak_handover and self.handover_policy is None:
            raise ConfigError("allocation.rl.handover", "is 'predicted-peak' but no hand-over policy was given "
                              "(ptplan.run_trial supplies the OOD-peak curve model's)")
        contexts = {}
        for name in enabled:  # refuse an unpayable allocation before any training
            contexts[name] = StageContext(
                name=name, config=cfg.allocation.stage(name), slice=self.ledger.stages[name].slice,
                unit=cfg.budget.unit, data=self.data, n_params=self.n_params, eval_points=cfg.eval.points[name],
                evaluate=None, seed=cfg.seed, use_cuda=use_cuda, on_progress=self.on_progress, chat=chat,
                accel=cfg.accel, tracking=cfg.tracking, run_name=f"{self.run_name}/{name}",
                log_dir=str(self.out / "tracking" / name))
            STAGE_TYPES[name]().check(contexts[name], tokenizer)
            if use_cuda:
                self._check_memory(model, contexts[name])
        if use_cuda:
            model = model.to("cuda")

        t = time.perf_counter()
        self._evaluate("start", model, tokenizer, 0, Spend())
        self.timings["eval_start"] = time.perf_counter() - t
        key = base_key(cfg)
        pre_sft = None  # cold-start RL: (checkpoint folder of the stage before SFT or None = backbone, its key)
        previous: Path | None = None
        for name in enabled:
            ctx = contexts[name]
            if name == "sft":
                pre_sft = (previous, key)
            if name == "sft" and peak_handover:
                ctx.handover = self._peak_policy(ctx, self.handover_policy)
            if name == "rl" and self.handover.get("switched"):  # the rest of SFT's slice goes to RL
                ctx.slice += self.handover["moved_to_rl"]
                self.ledger.stages["rl"].slice = ctx.slice
            if name == "rl" and cfg.allocation.rl.start == "cold" and pre_sft is not None:
                # Reloaded from disk, never copied: a trained model's `forward` is bound to that object,
                # so a deepcopy would still run (and train) the SFT model.
                model, tokenizer = self._reload(pre_sft[0], use_cuda)
                key = pre_sft[1]
            key = stage_key(cfg, name, ctx.slice, key)
            folder = self.store / f"{name}-{key}"
            base = pre_sft[0] if name == "rl" and cfg.allocation.rl.start == "cold" and pre_sft else previous
            with _stage_lock(folder):
                model, tokenizer = self._stage(name, ctx, folder, model, tokenizer, use_cuda, base)
            if name == "sft" and ctx.handover is not None:
                self._record_handover(ctx)
            self.stage_info[name] = {"key": key, "checkpoint": str(folder / "model"),
                                     "reused": self.ledger.stages[name].reused,
                                     "adapter": (folder / "model" / BASE_FILE).exists(),
                                     "bytes": folder_bytes(folder / "model")}
            previous = folder / "model"

    def _reload(self, checkpoint: Path | None, use_cuda: bool):
        """A stage's saved checkpoint (or the untouched backbone for None), loaded fresh from disk."""
        from ._backbones import load_backbone, load_checkpoint

        cfg = self.config
        if checkpoint is None:
            model, tokenizer = load_backbone(cfg.backbone.name, cfg.backbone.path,
                                             trust_remote_code=cfg.backbone.trust_remote_code, seed=cfg.seed)
        else:
            model, tokenizer = load_checkpoint(checkpoint)
        return (model.to("cuda") if use_cuda else model), tokenizer

    def _check_memory(self, model, ctx) -> None:
        """Refuse a stage whose estimated memory exceeds the GPU's, before any training."""
        import torch

        from ._accel import ModelShape, check_memory, estimate_memory, use_bf16, use_checkpointing

        c = ctx.config
        rl = ctx.name == "rl"
        estimate = estimate_memory(
            ModelShape.of(model.config, self.n_params), stage=ctx.name, rank=c.rank,
            batch=c.batch_size * (c.generations if rl else 1), seq=c.max_length, bf16=use_bf16(ctx.accel, True),
            gradient_checkpointing=use_checkpointing(ctx.accel, True), completion=c.max_completion_length if rl else 0)
        device = torch.device(self.config.device if self.config.device.startswith("cuda") else "cuda")
        check_memory(estimate, torch.cuda.get_device_properties(device).total_memory, f"allocation.{ctx.name}")

    def _peak_policy(self, ctx, policy: HandoverPolicy):
        """`handover: predicted-peak`: after each SFT evaluation, pass the SFT curve so far (fraction of
        the slice, OOD, ID, loss; from the point SFT started at) to `policy`; a reason ends SFT."""
        nan = float("nan")

        def decide(state) -> str | None:
            offset = self.ledger.spent_before("sft")
            before = [p for p in self.points if p.stage in ("start", "cpt")][-1:]
            pts = before + [p for p in self.points if p.stage == "sft"]
            curve = [((p.compute - offset) / ctx.slice, p.ood, p.id, nan if p.loss is None else p.loss) for p in pts]
            return policy(curve, ctx.eval_points)

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

    def _base_spec(self, base: Path | None) -> dict:
        """What a LoRA stage's adapter applies to: the checkpoint it started from, or the backbone."""
        b = self.config.backbone
        return {"checkpoint": str(base)} if base is not None else {
            "backbone": {"name": b.name, "path": b.path, "trust_remote_code": b.trust_remote_code,
                         "seed": self.config.seed}}

    def _stage(self, name, ctx, folder: Path, model, tokenizer, use_cuda: bool, base: Path | None = None):
        """Reuse the stage at `folder` if recorded, else train it; then take its final point."""
        from ._backbones import save_checkpoint
        from ._stages import STAGE_TYPES

        record_path = folder / "record.json"
        record = json.loads(record_path.read_text()) if record_path.exists() else None
        t = time.perf_counter()
        if record is not None:
            damage = verify_checkpoint(folder / "model", record.get("files"))
            if damage is None:
                try:
                    model, tokenizer = self._reload(folder / "model", use_cuda)
                except Exception as err:  # noqa: BLE001 - an old record without checksums, unreadable weights
                    damage = f"it does not load ({type(err).__name__}: {str(err)[:200]})"
            if damage is not None:
                aside = quarantine(folder)
                log.warning("stage %s: checkpoint %s is damaged (%s); moved to %s, training the stage again",
                            name, folder, damage, aside)
                record = None
        if record is not None:
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
            save_checkpoint(model, tokenizer, folder / "model", adapter=state.adapter, base=self._base_spec(base))
            # Every hand-off goes through disk: the final point and the next stage see exactly the saved
            # checkpoint, not a trainer-wrapped object (whose `forward` and reference model hang on it).
            del model
            model, tokenizer = self._reload(folder / "model", use_cuda)
            record = {"status": "trained", "spent": dataclasses.asdict(state.spent), "loss": state.loss,
                      "reward": state.reward, "handover": state.handover, "files": file_manifest(folder / "model"),
                      "points": [dataclasses.asdict(p) for p in self.points[stage_points_from:]]}
            _write_json(record_path, record)
            self.timings[name] = time.perf_counter() - t - state.eval_seconds
        if record["status"] == "trained":  # final point, taken after the checkpoint is safe
            spent = self.ledger.stages[name].spent
            if record["points"] and record["points"][-1]["step"] == spent.steps:  # e.g. a hand-over: the
                record["points"].pop()  # point was taken on the live model; take it again on the checkpoint
                del self.points[max(i for i, p in enumerate(self.points) if p.stage == name)]
            point = self._evaluate(name, model, tokenizer, spent.steps, spent, record.get("loss"), record.get("reward"))
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
