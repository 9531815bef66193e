"""Workers: the loop that runs trials until the study has N COMPLETE, dead-worker recovery, and
`run`, which starts K local worker processes.

Grid studies enqueue every cell once, when the study is created; workers only pop queued cells,
so no cell is run twice. A trial whose worker died is failed and its allocation re-enqueued
(Optuna's `RetryHeartbeatStaleTrialCallback`, bounded by `study.retries`): on RDB storages by
Optuna's heartbeat, on the journal by ptplan's lease. An interrupted trial is retried by the next
`ptplan run`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ptplan.stages.errors import StudyError
from ._objective import FAILURE_ATTR, HOST, LEASE_ATTR, TrialObjective
from ._storage import StorageSpec, default_storage, mask, open_storage
from ._study import open_study

if TYPE_CHECKING:
    from ._config import StudyPlan

RETRYABLE = ("interrupted", "lost")
SOFT_FAILURES = RETRYABLE + ("pruned",)
GRID_READY_ATTR = "ptplan_grid_cells"
POLL_S = 1.0


def failure_reason(trial) -> str | None:
    """Why a trial did not complete; `lost` is a FAIL with no ptplan record (its worker died)."""
    from optuna.trial import TrialState

    if trial.state == TrialState.PRUNED:
        return "pruned"
    if trial.state != TrialState.FAIL:
        return None
    failure = trial.user_attrs.get(FAILURE_ATTR)
    return failure.get("reason", "error") if isinstance(failure, dict) else "lost"


def retry_history(trial) -> list[int]:
    return list(trial.system_attrs.get("retry_history", []))


def _retried(trials) -> set[int]:
    out: set[int] = set()
    for t in trials:
        out.update(retry_history(t))
    return out


def _retry(admin, trial, retries: int) -> bool:
    """Re-enqueue a failed trial's allocation (bounded); True if a retry was queued."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    if len(retry_history(trial)) >= retries:
        return False
    RetryHeartbeatStaleTrialCallback(max_retry=retries)(admin, trial)
    return True


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def reap_lost(admin, trials, grace: float, retries: int, echo: Callable[[str], None]) -> int:
    """Journal storage: fail RUNNING trials whose lease went stale and retry their allocation.

    Failing is the claim: of several workers that see the same stale trial, only the one whose
    FAIL lands first re-enqueues it (the others get UpdateFinishedTrialError / ValueError).
    """
    import optuna
    from optuna.trial import TrialState

    now, reaped = time.time(), 0
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        lease = t.user_attrs.get(LEASE_ATTR)
        own = isinstance(lease, dict) and lease.get("trial") == t.number
        last = lease["time"] if own else (t.datetime_start.timestamp() if t.datetime_start else now)
        dead = own and lease.get("host") == HOST and lease.get("pid") != os.getpid() and not _pid_alive(lease.get("pid"))
        if not (dead or now - last > grace):
            continue
        try:
            admin.tell(t.number, state=TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # finished meanwhile, or another worker claimed it
        queued = _retry(admin, t, retries)
        why = "its process is gone" if dead else f"no lease renewal for {now - last:.0f} s"
        echo(f"trial {t.number} lost ({why}); " + ("its allocation is queued again" if queued else
                                                   f"not retried: {retries} retries used"))
        reaped += 1
    return reaped


def recover(admin, retries: int, echo: Callable[[str], None]) -> int:
    """Queue again the allocations of interrupted or lost trials that no trial has retried yet."""
    trials = admin.get_trials(deepcopy=False)
    done = _retried(trials)
    n = 0
    for t in trials:
        if failure_reason(t) in RETRYABLE and t.number not in done and _retry(admin, t, retries):
            echo(f"trial {t.number} was {failure_reason(t)}; its allocation is queued again")
            n += 1
    return n


def retry_failed(admin, echo: Callable[[str], None]) -> int:
    """`--retry-failed`: queue again every failed allocation (grid cells included) that no trial has
    retried yet and no COMPLETE trial holds; unbounded by `study.retries` (the user asked)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    trials = admin.get_trials(deepcopy=False)
    done = _retried(trials)
    held = {_cell_key(t.params) for t in trials if t.state in (TrialState.COMPLETE, TrialState.WAITING,
                                                                TrialState.RUNNING)}
    n = 0
    for t in trials:
        if t.state == TrialState.FAIL and t.number not in done and _cell_key(t.params) not in held:
            RetryHeartbeatStaleTrialCallback(max_retry=None)(admin, t)
            held.add(_cell_key(t.params))
            n += 1
    echo(f"--retry-failed: {n} failed allocation(s) queued again" if n else "--retry-failed: no failed allocation "
         "to retry")
    return n


def repeated_failure(trials, since: float) -> tuple[str, str] | None:
    """(reason, message) of a hard failure that ended two trials since `since` (a deterministic one)."""
    seen: set[tuple[str, str]] = set()
    for t in sorted(trials, key=lambda t: t.number):
        reason = failure_reason(t)
        if reason in (None, *SOFT_FAILURES) or not t.datetime_complete or t.datetime_complete.timestamp() < since:
            continue
        failure = t.user_attrs.get(FAILURE_ATTR) or {}
        key = (reason, str(failure.get("message", "")))
        if key in seen:
            return key
        seen.add(key)
    return None


def shortfall(trials, target: int) -> str:
    """Why a study is short of its target: counts and the most recent failure of each reason."""
    counts = _counts(trials)
    last: dict[str, str] = {}
    for t in sorted(trials, key=lambda t: t.number):
        reason = failure_reason(t)
        if reason:
            last[reason] = str((t.user_attrs.get(FAILURE_ATTR) or {}).get("message", ""))[:300]
    why = "; ".join(f"{sum(1 for t in trials if failure_reason(t) == r)} {r} (last: {m or 'no message'})"
                    for r, m in sorted(last.items()))
    return (f"target not reached: {counts['COMPLETE']} of {target} trials complete"
            + (f"; failures: {why}" if why else "") + "; fix the cause and run again with --retry-failed")


def _cell_key(params: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def ensure_grid_cells(study, plan: "StudyPlan") -> int:
    """Enqueue every grid cell that no trial holds yet; mark the grid as fully queued."""
    trials = study.get_trials(deepcopy=False)
    have = {_cell_key(t.system_attrs.get("fixed_params", t.params)) for t in trials}
    cells = [c for c in plan.space.cells() if _cell_key(c) not in have]
    for cell in cells:
        study.enqueue_trial(cell)
    if study.user_attrs.get(GRID_READY_ATTR) != plan.space.n_cells():
        study.set_user_attr(GRID_READY_ATTR, plan.space.n_cells())
    return len(cells)


@dataclass
class Session:
    """An opened study for one process: the plan, its storage URL and Optuna handles."""

    plan: "StudyPlan"
    url: str
    storage: object
    study: object
    admin: object
    created: bool = False
    queued: int = 0
    moved_aside: Path | None = None  # old trial folders set aside by --new-study

    @property
    def kind(self) -> str:
        return StorageSpec(self.url).kind


def _trial_folders(run_dir: Path) -> list[Path]:
    folder = run_dir / "trials"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def open_session(plan: "StudyPlan", jobs: int = 1, index: int | None = 0, create: bool = True,
                 must_exist: bool = False, check: bool = True, new_study: bool = False) -> Session:
    """Resolve the storage URL, open it and the plan's study (checking its identity).

    A study that is missing next to existing trial folders (its storage deleted or moved) is refused
    unless `new_study`, which moves the old folders aside first.
    """
    url = plan.study.storage or default_storage(plan.run_dir, jobs, must_exist=must_exist)
    path = StorageSpec(url).path
    if not create and path is not None and not path.exists():  # never create an empty storage to read it
        raise StudyError(f"no study storage at {path}; start the study with `ptplan run`")
    hb = plan.study.heartbeat
    storage = open_storage(url, hb.interval, hb.grace, plan.study.retries)
    import optuna

    try:
        optuna.load_study(study_name=plan.name, storage=storage, sampler=optuna.samplers.RandomSampler())
        existed = True
    except KeyError:
        existed = False
    created, moved = False, None
    if not existed and create and _trial_folders(plan.run_dir):
        found = _trial_folders(plan.run_dir)
        if not new_study:
            raise StudyError(
                f"{plan.run_dir / 'trials'} holds {len(found)} trial folder(s) but {mask(url)} has no study "
                f"{plan.name!r} (its storage was deleted or moved); restore it (or set `study.storage` to where it "
                "lives) to continue that study, or pass --new-study to start a new one (the old trial folders "
                "are moved aside, not deleted)")
        moved = plan.run_dir / f"trials.old-{time.strftime('%Y%m%d-%H%M%S')}"
        (plan.run_dir / "trials").rename(moved)
    if not existed and create:
        try:
            optuna.create_study(storage=storage, study_name=plan.name, directions=plan.directions,
                                sampler=optuna.samplers.RandomSampler())
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            pass
    admin = open_study(plan, storage, url, create=False, check=check, admin=True)
    queued = ensure_grid_cells(admin, plan) if created and plan.grid else 0
    study = open_study(plan, storage, url, index=index, create=False, check=False)
    return Session(plan, url, storage, study, admin, created, queued, moved)


@dataclass
class WorkResult:
    ran: int = 0
    stopped: str = ""
    counts: dict = field(default_factory=dict)
    reached: bool = False  # the target count of COMPLETE trials was reached (a grid: every cell complete)
    repeated: tuple[str, str] | None = None  # (reason, message) of a failure that recurred: the study stopped


def _counts(trials) -> Counter:
    return Counter(t.state.name for t in trials)


def work(session: Session, target: int, echo: Callable[[str], None] = print, objective=None,
         poll: float = POLL_S) -> WorkResult:
    """Run trials until the study has `target` COMPLETE (or its grid is done, or too many fail)."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from ptplan.stages import TrialFailed

    plan, admin = session.plan, session.admin
    journal = session.kind == "journal"
    # Optuna logs every failed trial with its traceback; the objective prints one line instead.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    hb = plan.study.heartbeat
    objective = objective or TrialObjective(plan, hb.interval if journal else None, echo)
    # A pruned trial ran as far as it deserved: it counts toward the target like a complete one.
    done_states = (TrialState.COMPLETE, TrialState.PRUNED) if plan.study.objective.kind == "weighted" \
        else (TrialState.COMPLETE,)
    callbacks = [MaxTrialsCallback(target, states=done_states)]
    max_failures = plan.max_failures(target)
    out = WorkResult()
    started = time.time()
    grid_wait_until = time.time() + 60
    while True:
        trials = admin.get_trials(deepcopy=False)
        if journal and reap_lost(admin, trials, hb.grace, plan.study.retries, echo):
            continue
        counts = _counts(trials)
        out.counts = dict(counts)
        finished = sum(counts[s.name] for s in done_states)
        if finished >= target:
            out.stopped = f"{counts['COMPLETE']} trials complete" + (
                f", {counts['PRUNED']} pruned" if counts["PRUNED"] else "") + f" (target {target})"
            out.reached = True
            return out
        retried = _retried(trials)
        hard = sum(1 for t in trials if failure_reason(t) not in (None, *SOFT_FAILURES) and t.number not in retried)
        if hard >= max_failures:
            out.stopped = f"stopped: {hard} trials failed (limit `study.max_failures` = {max_failures})"
            return out
        repeated = repeated_failure(trials, started)
        if repeated is not None:
            out.stopped = (f"stopped: the same failure ended two trials ({repeated[0]}: {repeated[1][:500]}); it "
                           "will recur, so the study stops here; fix the cause and run again with --retry-failed")
            out.repeated = repeated
            return out
        idle = counts["WAITING"] == 0 and (plan.grid or finished + counts["RUNNING"] >= target)
        if idle:
            grid_ready = not plan.grid or admin.user_attrs.get(GRID_READY_ATTR) is not None
            if counts["RUNNING"] == 0 and grid_ready:
                out.stopped = (f"grid done: {counts['COMPLETE']} of {plan.space.n_cells()} cells complete"
                               if plan.grid else "nothing left to run")
                out.reached = plan.grid and counts["COMPLETE"] >= min(target, plan.space.n_cells())
                return out
            if not grid_ready and time.time() > grid_wait_until:
                raise StudyError("the grid study was created but its cells were never queued; run `ptplan run` "
                                 "once to queue them")
            if not journal:
                optuna.storages.fail_stale_trials(admin)
            time.sleep(poll)
            continue
        try:
            session.study.optimize(objective, n_trials=1, catch=(TrialFailed,), callbacks=callbacks,
                                   gc_after_trial=True)
            out.ran += 1
        except optuna.exceptions.UpdateFinishedTrialError as err:
            echo(f"a trial of this worker was declared lost by another worker while running ({err}); going on")
        except ValueError as err:
            if "Cannot tell" not in str(err):
                raise
            echo(f"a trial of this worker was declared lost by another worker while running ({err}); going on")


# -- processes ---------------------------------------------------------------------------------
_QUIET_ENV = {"HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
              "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}


def quiet_libraries() -> None:
    """Keep worker output to one line per trial event (trial.log keeps the details)."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)


class interrupt_once:
    """SIGINT/SIGTERM (and `extra` signals, e.g. SLURM's USR1 warning) raise KeyboardInterrupt once;
    later signals are ignored so the bookkeeping of the interrupted trial (its record, its FAIL
    state) is not itself interrupted."""

    def __init__(self, extra: tuple = ()):
        self.extra = tuple(extra)

    def __enter__(self):
        # A SIGINT ignored from the start (a background job of a script) stays ignored.
        self._old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, *self.extra)
                     if signal.getsignal(s) is not signal.SIG_IGN or s in self.extra}
        for s in self._old:
            signal.signal(s, self._handler)
        return self

    def _handler(self, signum, frame):
        for s in self._old:
            signal.signal(s, signal.SIG_IGN)
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def write_resolved_plan(plan: "StudyPlan", url: str) -> Path:
    import yaml

    path = plan.run_dir / "plan.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# resolved plan of this study (written by `ptplan run`; workers read it)\n"
                    + yaml.safe_dump(plan.resolved(url), sort_keys=False))
    return path


def supervise(argvs: list[list[str]], echo: Callable[[str], None], jobs: int) -> list[int]:
    """Start worker processes and wait for all; Ctrl-C is passed on so each marks its trial."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              bufsize=1) for argv in argvs]
    # Worker output goes through `echo`, so a live view in this process stays intact.
    pumps = [threading.Thread(target=_pump, args=(p.stdout, echo), daemon=True) for p in procs]
    for pump in pumps:
        pump.start()
    echo(f"started {len(procs)} workers (pids {', '.join(str(p.pid) for p in procs)})")
    try:
        with interrupt_once():
            while any(p.poll() is None for p in procs):
                time.sleep(0.3)  # polling also reaps a killed worker at once, so others see it dead
    except KeyboardInterrupt:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.time() + 120
        for p in procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    for pump in pumps:
        pump.join(timeout=5)
    return [p.returncode for p in procs]


def _pump(stream, echo: Callable[[str], None]) -> None:
    for line in stream:
        echo(line.rstrip("\n"))


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def run_study(plan: "StudyPlan", trials: int | None, jobs: int, echo: Callable[[str], None],
              worker_argv: Callable[[Path, int, int], list[str]], new_study: bool = False,
              retry: bool = False, check: bool = True) -> tuple[Session, WorkResult, list[int]]:
    """`ptplan run`: create or resume, recover interrupted trials, run K workers to N COMPLETE."""
    if jobs < 1:
        raise StudyError(f"--jobs must be >= 1, got {jobs}")
    target = plan.target(trials)
    session = open_session(plan, jobs=jobs, index=0, new_study=new_study)
    if session.moved_aside is not None:
        echo(f"--new-study: the old trial folders are now in {session.moved_aside}")
    spec = StorageSpec(session.url)
    if jobs > 1 and spec.kind == "sqlite":
        echo("warning: SQLite serves one worker at a time; with several workers use a journal:// or "
             "postgresql:// storage")
    echo(f"study {plan.name!r} in {mask(session.url)} ({'created' if session.created else 'resumed'}); "
         f"run folder {plan.run_dir}")
    if plan.grid and not session.created:
        deadline = time.time() + 10  # another process may be queueing the cells right now
        while session.admin.user_attrs.get(GRID_READY_ATTR) is None and time.time() < deadline:
            time.sleep(0.5)
        session.queued += ensure_grid_cells(session.admin, plan)  # cells a crashed creator never queued
    if plan.grid:
        echo(f"grid of {plan.space.n_cells()} cells" + (f", {session.queued} queued" if session.queued else ""))
    if check:  # before this run's first trial; one real optimizer step per stage until a trial completes
        from ._preflight import preflight

        complete = any(t.state.name == "COMPLETE" for t in session.admin.get_trials(deepcopy=False))
        checks = preflight(plan, train_steps=not complete)
        echo(f"preflight passed ({', '.join(c.name for c in checks)}) in {sum(c.seconds for c in checks):.1f} s")
    recover(session.admin, plan.study.retries, echo)
    if retry:
        retry_failed(session.admin, echo)
    plan_file = write_resolved_plan(plan, session.url)
    codes: list[int] = []
    started = time.time()
    if jobs == 1:
        quiet_libraries()
        with interrupt_once():
            result = work(session, target, echo)
    else:
        codes = supervise([worker_argv(plan_file, target, i) for i in range(jobs)], echo, jobs)
        for i, code in enumerate(codes):
            if code != 0:
                echo(f"worker {i} ended with {describe_exit(code)}")
        trials = session.admin.get_trials(deepcopy=False)
        result = WorkResult(counts=dict(_counts(trials)))
        done = result.counts.get("COMPLETE", 0) + (result.counts.get("PRUNED", 0)
                                                   if plan.study.objective.kind == "weighted" else 0)
        result.reached = done >= (min(target, plan.space.n_cells()) if plan.grid else target)
        result.repeated = repeated_failure(trials, started)
        result.stopped = f"{done} trials complete (target {target})"
    if not result.reached:
        result.stopped += "\n" + shortfall(session.admin.get_trials(deepcopy=False), target)
    return session, result, codes


def run_worker(plan: "StudyPlan", trials: int | None, index: int | None, echo: Callable[[str], None],
               retry_interrupted: bool = False):
    """`ptplan worker`: join the plan's study (from any machine that reaches its storage).

    `retry_interrupted` (SLURM array tasks): SIGUSR1 interrupts too, and a trial this worker
    interrupted has its allocation queued again at once, so another worker retries it."""
    session = open_session(plan, jobs=1, index=index, must_exist=plan.study.storage is None)
    quiet_libraries()
    try:
        with interrupt_once(extra=(signal.SIGUSR1,) if retry_interrupted else ()):
            return session, work(session, plan.target(trials), echo)
    except KeyboardInterrupt:
        if retry_interrupted:
            requeue_own_interrupted(session.admin, plan.study.retries, echo)
        raise


def requeue_own_interrupted(admin, retries: int, echo: Callable[[str], None]) -> int:
    """Queue again the allocations of this process's interrupted trials (none was retried yet)."""
    from ._objective import worker_name

    me = worker_name()
    trials = admin.get_trials(deepcopy=False)
    done = _retried(trials)
    n = 0
    for t in trials:
        if t.user_attrs.get("worker") == me and failure_reason(t) == "interrupted" and t.number not in done:
            if _retry(admin, t, retries):
                echo(f"trial {t.number} interrupted; its allocation is queued again for another worker")
                n += 1
    return n


def worker_argv(plan_file: Path, target: int, index: int) -> list[str]:
    return [sys.executable, "-m", "ptplan._cli", "worker", str(plan_file), "--trials", str(target),
            "--index", str(index)]
