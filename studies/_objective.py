"""The Optuna objective: sampled point -> TrialConfig -> one real staged trial -> (ID, OOD).

Every trial's record goes into Optuna user attrs (so the `optuna` CLI and optuna-dashboard read
it) and its artifact folder `<run>/trials/<number>/`; stage checkpoints go to one shared store
`<run>/stages/`, so trials sharing a CPT (or CPT+SFT) prefix reuse it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ptplan.stages.errors import Pruned
from ptplan.stages.record import REPORT_STEPS, weighted_score


if TYPE_CHECKING:
    from ._config import StudyPlan

HOST = socket.gethostname()
LEASE_ATTR = "lease"
FAILURE_ATTR = "failure"
RECORD_ATTRS = ("allocation", "ledger", "final", "ood_peak", "curves", "compute_saved", "timings", "wall_seconds",
                "checkpoints", "resources")


def worker_name() -> str:
    return f"{HOST}:{os.getpid()}"


class Lease:
    """ptplan's heartbeat for storages without Optuna's (the journal): a timestamp in a user attr.

    A thread renews it every `interval` seconds while the trial runs; a worker that finds it older
    than the grace period (or owned by a dead process on its own host) fails and retries the trial.
    """

    def __init__(self, trial, interval: float):
        self.trial, self.interval = trial, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"ptplan-lease-{trial.number}", daemon=True)

    def _renew(self) -> None:
        self.trial.set_user_attr(LEASE_ATTR, {"trial": self.trial.number, "host": HOST, "pid": os.getpid(),
                                              "time": time.time()})

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._renew()
            except Exception:  # noqa: BLE001 - the trial finished or was declared lost: stop renewing
                return

    def __enter__(self) -> "Lease":
        self._renew()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _NoLease:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


PROGRESS_FILE = "progress.json"


def progress_writer(out: Path, config, every: float = 1.0) -> Callable[[str, float, float], None]:
    """Stage progress of a running trial, written to <trial>/progress.json for `ptplan run`'s live view."""
    import json

    last = [0.0]
    shares = dict(config.allocation.shares)

    def on_progress(stage: str, spent: float, slice_: float) -> None:
        now = time.time()
        if now - last[0] < every and spent < slice_:
            return
        last[0] = now
        tmp = out / f".{PROGRESS_FILE}.tmp"
        tmp.write_text(json.dumps({"stage": stage, "spent": spent, "slice": slice_, "shares": shares,
                                   "unit": config.budget.unit, "total": config.budget.total, "time": now}))
        os.replace(tmp, out / PROGRESS_FILE)

    return on_progress


def compute_saved(ledger: dict) -> dict:
    """Spend of the stages this trial reused instead of training (budget unit and FLOPs)."""
    unit = ledger["unit"]
    reused = [s for s, st in ledger["stages"].items() if st.get("reused")]
    return {"unit": unit, "value": sum(ledger["stages"][s]["spent"][unit] for s in reused),
            "flops": sum(ledger["stages"][s]["spent"]["flops"] for s in reused), "stages": reused}


class TrialObjective:
    """Callable Optuna objective running one staged trial per call."""

    def __init__(self, plan: "StudyPlan", lease_interval: float | None = None,
                 echo: Callable[[str], None] = print, runner: Callable | None = None):
        self.plan = plan
        self.run_dir = plan.run_dir
        self.lease_interval = lease_interval
        self.echo = echo
        self._runner = runner  # tests inject a fake; default stages.run_trial

    def _run_trial(self):
        if self._runner is not None:
            return self._runner
        from ptplan.stages import run_trial
        from ptplan.surrogates import handover_policy_for

        def run(config, out, store, **hooks):
            return run_trial(config, out, store, handover_policy=handover_policy_for(config), **hooks)

        return run

    def __call__(self, trial):
        import optuna
        from ptplan.stages import TrialFailed

        out: Path | None = None
        started: float | None = None
        try:
            values = self.plan.space.suggest(trial)
            number = trial.number
            out = self.run_dir / "trials" / str(number)
            if trial.user_attrs:  # a retry starts with its original's attrs: clear the old record
                for key in (FAILURE_ATTR, *RECORD_ATTRS):
                    if trial.user_attrs.get(key) is not None:
                        trial.set_user_attr(key, None)
            if out.exists():  # left by an earlier study in this folder: keep it aside, never mix
                out.rename(out.with_name(f"{number}.old-{time.strftime('%Y%m%d-%H%M%S')}"))
            trial.set_user_attr("artifacts", str(out))
            trial.set_user_attr("worker", worker_name())
            try:
                config = self.plan.space.config_for(values, name=f"{self.plan.trial.name}-{number}")
            except ValueError as err:
                raise TrialFailed("error", f"sampled allocation is not a valid trial config: {err}") from None
            lease = Lease(trial, self.lease_interval) if self.lease_interval else _NoLease()
            self.echo(f"trial {number} started: {self.plan.space.describe(values)}")
            started = time.perf_counter()
            reporter = self._reporter(trial, config)
            with lease:
                result = self._run_trial()(config, out, self.run_dir / "stages", on_point=reporter,
                                           on_progress=progress_writer(out, config))
        except TrialFailed as err:
            pruned = err.reason == "pruned"
            reason = err.reason
            self._record(trial, err.result, out)
            self._account(trial, started, (err.result or {}).get("timings"))
            trial.set_user_attr(FAILURE_ATTR, {"reason": reason, "message": err.message[-2000:]})
            self.echo(f"trial {trial.number} {'pruned' if pruned else 'failed'} ({reason}): {err.message[:300]}")
            if pruned:
                raise optuna.TrialPruned(err.message) from None
            raise
        except KeyboardInterrupt:
            self._mark(trial, "interrupted", "stopped by Ctrl-C / SIGINT / SIGTERM / SIGUSR1")
            self._record_from_disk(trial, out)
            self._account(trial, started, self._timings(trial))
            raise
        except (optuna.TrialPruned, optuna.exceptions.UpdateFinishedTrialError):
            raise
        except Exception as err:
            self._mark(trial, "error", f"{type(err).__name__}: {err}")
            raise
        self._record(trial, result, out)
        trial.set_user_attr("checkpoints", reporter.checkpoints)
        final = result["final"]
        wall = time.perf_counter() - started
        trial.set_user_attr("wall_seconds", wall)
        self._account(trial, started, result.get("timings"))
        self.echo(f"trial {number} complete in {wall:.0f} s: ID {final['id']:.3f}  OOD {final['ood']:.3f}"
                  + (f"  (reused {', '.join(self._reused(result))})" if self._reused(result) else ""))
        return self.values(final)

    def values(self, final: dict):
        obj = self.plan.study.objective
        if obj.kind == "multi":
            return final["id"], final["ood"]
        return weighted_score(final["id"], final["ood"], obj.ood_weight)

    @staticmethod
    def _reused(result: dict) -> list[str]:
        return [s for s, st in result["ledger"]["stages"].items() if st.get("reused")]

    @staticmethod
    def _timings(trial) -> dict | None:
        try:
            return trial.user_attrs.get("timings")
        except Exception:  # noqa: BLE001
            return None

    def _account(self, trial, started: float | None, timings: dict | None) -> None:
        """The trial's wall time, devices and device-hours (`resources` user attr), best effort."""
        from ._accounting import RESOURCES_ATTR, resources_record, trial_devices

        if started is None:
            return
        try:
            kind, n = trial_devices(self.plan.trial.device, self.plan.resources.gpus_per_trial)
            trial.set_user_attr(RESOURCES_ATTR, resources_record(time.perf_counter() - started, timings, kind, n))
        except Exception:  # noqa: BLE001 - accounting never fails a trial
            pass

    @staticmethod
    def _mark(trial, reason: str, message: str) -> None:
        try:
            trial.set_user_attr(FAILURE_ATTR, {"reason": reason, "message": message[-2000:]})
        except Exception:  # noqa: BLE001 - the record is best effort while failing
            pass

    def _record_from_disk(self, trial, out: Path | None) -> None:
        """An interrupted trial re-raises without its result: read what it wrote (best effort)."""
        import json

        try:
            if out is not None and (out / "result.json").exists():
                self._record(trial, json.loads((out / "result.json").read_text()), out)
        except Exception:  # noqa: BLE001
            pass

    def _record(self, trial, result: dict | None, out: Path | None) -> None:
        """The trial record as user attrs: allocation, ledger, final, OOD peak, curves path, reuse."""
        if not result or out is None:
            return
        ledger = result["ledger"]
        attrs = {"allocation": result["allocation"], "ledger": ledger, "final": result.get("final"),
                 "ood_peak": result.get("ood_peak"), "curves": str(out / result.get("curves", "curves.parquet")),
                 "compute_saved": compute_saved(ledger), "timings": result.get("timings")}
        for key, value in attrs.items():
            trial.set_user_attr(key, value)

    def _reporter(self, trial, config) -> "_Reporter":
        return _Reporter(self.plan, trial, config)


class _Reporter:
    """The `on_point` callback: (ID, OOD) at each tenth of the budget, kept as the `checkpoints`
    record; a weighted objective reports the running score to Optuna's pruner, a multi-objective
    one with `pruner: dominated` asks `DominatedPruner` against the COMPLETE trials' checkpoints."""

    def __init__(self, plan: "StudyPlan", trial, config):
        obj = plan.study.objective
        self.trial, self.obj, self.total = trial, obj, config.budget.total
        self.checkpoints: dict[str, list[float]] = {}
        self.pruner = None
        if obj.kind == "multi" and obj.pruner == "dominated":
            from ._prune import DominatedPruner

            self.pruner = DominatedPruner()

    def __call__(self, point) -> None:
        import optuna

        if point.stage == "start":
            return
        reached = min(REPORT_STEPS, int(point.compute / self.total * REPORT_STEPS + 1e-9))
        new = [step for step in range(1, reached + 1) if str(step) not in self.checkpoints]
        for step in new:
            self.checkpoints[str(step)] = [point.id, point.ood]
        if self.obj.kind == "weighted":
            value = weighted_score(point.id, point.ood, self.obj.ood_weight)
            for step in new:
                self.trial.report(value, step)
            if self.checkpoints and self.trial.should_prune():
                raise Pruned(f"pruned at {len(self.checkpoints) / REPORT_STEPS:.0%} of the budget "
                             f"(score {value:.3f})")
        elif self.pruner is not None and new and reached < REPORT_STEPS:
            from ._prune import checkpoint_history

            done = self.trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            history, front = checkpoint_history(done)
            prune, reason = self.pruner.should_prune(reached / REPORT_STEPS, (point.id, point.ood), history, front)
            if prune:
                raise Pruned(f"pruned at {reached / REPORT_STEPS:.0%} of the budget: {reason}")
