"""SLURM execution: `ptplan submit` writes one sbatch job array whose tasks each run `ptplan worker`
on the plan's study; `ptplan status` lists the array's tasks; `ptplan cancel` cancels them.

Optuna's storage coordinates (PostgreSQL, or a journal file on a file system every node mounts);
SLURM only executes. Tasks are requeueable and get a warning signal (USR1) before their time limit:
the worker marks its trial interrupted, queues the allocation again for another worker (finished
stages stay in the content-addressed stage store, so the retry reuses them), exits, and the task
requeues itself. A task killed without warning is found by the lease / heartbeat as before.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ._config import StudyError
from ._storage import StorageSpec, default_storage, mask

if TYPE_CHECKING:
    from ._config import StudyPlan

SLURM_DIR = "slurm"  # inside the run folder: scripts, task logs, jobs.json
JOBS_FILE = "jobs.json"
# File systems that compute nodes share; anything else must be named with --shared-dir.
NETWORK_FS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "ceph", "fuse.ceph", "glusterfs",
              "fuse.glusterfs", "panfs", "wekafs", "fuse.sshfs", "orangefs", "pvfs2", "afs")
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$")
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "REQUEUE_HOLD",
          "REQUEUE_FED", "SIGNALING", "STAGE_OUT")


@dataclass
class SubmitOptions:
    """What `ptplan submit --slurm` asks of SLURM; validated here, errors name the option."""

    workers: int = 2
    parallel: int | None = None
    gpus_per_trial: int | None = None  # None: the plan's `resources.gpus_per_trial`
    cpus_per_task: int = 1
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    sbatch_args: list[str] = field(default_factory=list)
    shared_dirs: list[str] = field(default_factory=list)
    warn_seconds: int = 120

    def __post_init__(self):
        def need(ok: bool, option: str, what: str, value) -> None:
            if not ok:
                raise StudyError(f"{option} {what}, got {value!r}")

        need(isinstance(self.workers, int) and self.workers >= 1, "--workers", "must be an integer >= 1",
             self.workers)
        need(self.parallel is None or (isinstance(self.parallel, int) and self.parallel >= 1), "--parallel",
             "must be an integer >= 1", self.parallel)
        need(self.gpus_per_trial is None or (isinstance(self.gpus_per_trial, int) and self.gpus_per_trial >= 0),
             "--gpus-per-trial", "must be an integer >= 0", self.gpus_per_trial)
        need(self.gpus_per_trial is None or self.gpus_per_trial <= 1, "--gpus-per-trial", "must be 0 or 1: a trial "
             "runs in one process on one device (multi-GPU trials under `accelerate launch` are not built yet)",
             self.gpus_per_trial)
        need(isinstance(self.cpus_per_task, int) and self.cpus_per_task >= 1, "--cpus-per-task",
             "must be an integer >= 1", self.cpus_per_task)
        need(self.time is None or bool(_TIME.match(self.time)), "--time",
             "must be a SLURM time limit (MM, HH:MM:SS, D-HH, D-HH:MM:SS)", self.time)
        need(isinstance(self.warn_seconds, int) and self.warn_seconds >= 1, "--warn", "must be an integer >= 1 "
             "(seconds before the time limit)", self.warn_seconds)
        for name in ("partition", "account"):
            value = getattr(self, name)
            need(value is None or re.fullmatch(r"[\w.,+-]+", value) is not None, f"--{name}",
                 "must be a SLURM name (letters, digits, _ . , + -)", value)
        for arg in self.sbatch_args:
            need(arg.startswith("-") and "\n" not in arg, "--sbatch-arg",
                 "must be one sbatch option such as --qos=high or --mem=16G", arg)
            need(not arg.split("=", 1)[0] in ("--array", "-a", "--output", "-o", "--error", "-e"), "--sbatch-arg",
                 "cannot override --array/--output/--error (ptplan sets them: --workers, --parallel)", arg)


@dataclass
class Submission:
    """One submitted (or dry-run) array: what `jobs.json` records."""

    job_id: str | None
    script: str
    command: list[str]
    workers: int
    parallel: int
    trials: int
    submitted: float
    storage: str


# -- shared storage -----------------------------------------------------------------------------
def _mounts() -> list[tuple[Path, str]]:
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:
            out.append((Path(parts[1].replace("\\040", " ")), parts[2]))
    return out


def _fs_type(path: Path) -> str | None:
    """File system type of the mount holding `path` (longest mount-point prefix)."""
    best: tuple[int, str] | None = None
    for point, fstype in _mounts():
        if path == point or point in path.parents:
            if best is None or len(point.parts) > best[0]:
                best = (len(point.parts), fstype)
    return best[1] if best else None


def shared_reason(path: Path, shared_dirs: list[str]) -> str | None:
    """Why `path` is reachable from every compute node (None: it is not known to be)."""
    path = path.expanduser().resolve()
    for d in shared_dirs:
        root = Path(d).expanduser().resolve()
        if path == root or root in path.parents:
            return f"under --shared-dir {root}"
    fstype = _fs_type(path)
    if fstype in NETWORK_FS:
        return f"on a {fstype} file system"
    return None


def check_cluster_storage(plan: "StudyPlan", shared_dirs: list[str]) -> str:
    """The study's storage URL if every compute node can reach it and the run folder; else StudyError."""
    url = plan.study.storage or default_storage(plan.run_dir, jobs=2)
    spec = StorageSpec(url)
    hint = ("set `study.storage` to postgresql://USER:PASSWORD@HOST/DB (any number of nodes), or to "
            "journal:///PATH/journal.log on a file system every compute node mounts and name that folder with "
            "--shared-dir PATH")
    if spec.kind == "sqlite":
        raise StudyError(f"the study lives in SQLite ({mask(url)}), which serves one process on one machine; a SLURM "
                         f"array runs workers on many nodes at once: {hint} (copy an existing study with "
                         "`optuna copy-study`)")
    if spec.kind == "journal" and shared_reason(spec.path, shared_dirs) is None:
        raise StudyError(f"the journal storage {spec.path} is not on a file system known to be shared with the "
                         f"compute nodes (none of --shared-dir {shared_dirs or '(none given)'} holds it, and it is "
                         f"on a file system of type {_fs_type(spec.path) or 'unknown'}): {hint}")
    if shared_reason(plan.run_dir, shared_dirs) is None:
        raise StudyError(f"the run folder {plan.run_dir} (trial records, stage checkpoints, the plan workers read) is "
                         "not known to be shared with the compute nodes; put it on a shared file system "
                         "(`study.dir`) and name that folder with --shared-dir PATH")
    return url


# -- preflight ------------------------------------------------------------------------------------
def submit_preflight(plan: "StudyPlan", echo: Callable[[str], None]) -> None:
    """The preflight (`ptplan preflight`) in the submitting process, without the optimizer step: data
    against the schema, scorer and reward on one example, the backbone, the budget at every corner of
    the search space, one generated item. A problem refuses the submission (nothing is queued). A
    preflight that needs the GPU (the one-step check) as a job ahead of the array is not built yet."""
    from ._preflight import preflight

    preflight(plan, train_steps=False, echo=echo)


def gpus_per_trial(plan: "StudyPlan", opts: SubmitOptions) -> int:
    return plan.resources.gpus_per_trial if opts.gpus_per_trial is None else opts.gpus_per_trial


def render_script(plan: "StudyPlan", plan_file: Path, target: int, opts: SubmitOptions,
                  python: str = sys.executable) -> str:
    """The sbatch array script: each task runs `ptplan worker` and forwards the warning signal."""
    logs = plan.run_dir / SLURM_DIR
    parallel = min(opts.parallel or opts.workers, opts.workers)
    gpus = gpus_per_trial(plan, opts)
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name=ptplan-{re.sub(r'[^A-Za-z0-9_.-]', '_', plan.name)}",
             f"#SBATCH --array=0-{opts.workers - 1}%{parallel}",
             f"#SBATCH --output={logs}/%A_%a.out",
             "#SBATCH --open-mode=append",
             "#SBATCH --requeue",
             f"#SBATCH --signal=B:USR1@{opts.warn_seconds}",
             "#SBATCH --ntasks=1",
             f"#SBATCH --cpus-per-task={opts.cpus_per_task}"]
    if gpus:
        lines.append(f"#SBATCH --gpus-per-task={gpus}")
    for name in ("partition", "time", "account"):
        if getattr(opts, name):
            lines.append(f"#SBATCH --{name}={getattr(opts, name)}")
    lines += [f"#SBATCH {arg}" for arg in opts.sbatch_args]
    worker = [python, "-m", "ptplan._cli", "worker", str(plan_file), "--trials", str(target), "--retry-interrupted"]
    lines += [
        "",
        f"# written by `ptplan submit` for study {plan.name!r}; each array task is one `ptplan worker`.",
        "# USR1 arrives --warn seconds before the time limit: the worker stops its trial (marked interrupted,",
        "# its allocation queued again for another worker), and this task requeues itself to keep working.",
        f"cd {shlex.quote(str(Path.cwd()))}",
        f"export OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-{opts.cpus_per_task}}} PTPLAN_SLURM_TASK="
        "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}",
        "# a fresh sampler stream for each task and each restart of it",
        "index=$(( SLURM_ARRAY_TASK_ID + SLURM_ARRAY_TASK_COUNT * ${SLURM_RESTART_COUNT:-0} ))",
        'echo "ptplan: task ${PTPLAN_SLURM_TASK} (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname) at $(date -u +%FT%TZ)"',
        " ".join(shlex.quote(a) for a in worker) + ' --index "$index" &',
        "pid=$!",
        "warned=0",
        "trap 'warned=1; echo \"ptplan: time-limit warning (USR1): stopping the running trial\"; kill -USR1 $pid' USR1",
        "trap 'kill -TERM $pid 2>/dev/null' TERM",
        "code=0",
        "while kill -0 $pid 2>/dev/null; do wait $pid; code=$?; done  # a trapped signal ends `wait` early",
        'if [ "$warned" = 1 ]; then',
        '  echo "ptplan: requeueing task ${PTPLAN_SLURM_TASK}"',
        '  scontrol requeue "${PTPLAN_SLURM_TASK}"',
        "fi",
        'exit "$code"',
        ""]
    return "\n".join(lines)


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        raise StudyError(f"`{tool}` is not on PATH: run `ptplan submit --slurm` on a SLURM login node "
                         "(or use --dry-run to see the script)")


def _run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    _require(argv[0])
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def jobs_path(plan: "StudyPlan") -> Path:
    return plan.run_dir / SLURM_DIR / JOBS_FILE


def read_jobs(plan: "StudyPlan") -> list[dict]:
    path = jobs_path(plan)
    if not path.exists():
        return []
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise StudyError(f"cannot read the SLURM job record {path}: {err}") from None


def _record(plan: "StudyPlan", sub: Submission) -> None:
    path = jobs_path(plan)
    jobs = read_jobs(plan) + [asdict(sub)]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(jobs, indent=1))
    os.replace(tmp, path)


def submit(plan: "StudyPlan", trials: int | None, opts: SubmitOptions, echo: Callable[[str], None],
           dry_run: bool = False) -> Submission | None:
    """`ptplan submit --slurm`: check storage, preflight, create the study, write and sbatch the array."""
    from ._worker import open_session, recover, write_resolved_plan

    url = check_cluster_storage(plan, opts.shared_dirs)
    target = plan.target(trials)
    logs = plan.run_dir / SLURM_DIR
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if dry_run:
        plan_file = plan.run_dir / "plan.yaml"
        script_path = logs / f"submit-{stamp}.sh"
        script = render_script(plan, plan_file, target, opts)
        command = ["sbatch", "--parsable", str(script_path)]
        echo(script)
        echo("would run: " + " ".join(shlex.quote(a) for a in command) + " (dry run: nothing written or submitted)")
        return Submission(None, str(script_path), command, opts.workers, min(opts.parallel or opts.workers,
                                                                           opts.workers), target, time.time(), url)
    _require("sbatch")
    submit_preflight(plan, echo)
    session = open_session(plan, jobs=2, index=0)
    echo(f"study {plan.name!r} in {mask(url)} ({'created' if session.created else 'resumed'}); run folder "
         f"{plan.run_dir}")
    recover(session.admin, plan.study.retries, echo)
    done = sum(1 for t in session.admin.get_trials(deepcopy=False) if t.state.name == "COMPLETE")
    if done >= target and not plan.grid:
        echo(f"the study already has {done} COMPLETE trials (target {target}): nothing submitted; ask for more "
             "with --trials")
        return None
    plan_file = write_resolved_plan(plan, url)
    logs.mkdir(parents=True, exist_ok=True)
    script_path = logs / f"submit-{stamp}.sh"
    script_path.write_text(render_script(plan, plan_file, target, opts))
    command = ["sbatch", "--parsable", str(script_path)]
    proc = _run(command)
    if proc.returncode != 0:
        raise StudyError(f"sbatch refused the array (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
                         f"; the script is {script_path}")
    job_id = proc.stdout.strip().split(";", 1)[0]
    sub = Submission(job_id, str(script_path), command, opts.workers, min(opts.parallel or opts.workers,
                                                                         opts.workers), target, time.time(), url)
    _record(plan, sub)
    echo(f"submitted job array {job_id}: {opts.workers} `ptplan worker` tasks ({sub.parallel} at a time) to reach "
         f"{target} COMPLETE trials; script {script_path}, task logs {logs}/{job_id}_<task>.out")
    return sub


# -- status and cancel ----------------------------------------------------------------------------
@dataclass
class ArrayTask:
    job: str  # array job id
    task: str  # task index, or a range of pending ones ("2-3")
    state: str
    reason: str = ""
    node: str = ""
    elapsed: str = ""
    exit_code: str = ""
    restarts: int = 0


def _parse_scontrol(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = {}
        for m in re.finditer(r"(\w+)=(\S*)", line):
            fields.setdefault(m.group(1), m.group(2))
        out.append(fields)
    return out


def array_tasks(job_ids: list[str]) -> tuple[list[ArrayTask], str | None]:
    """Tasks of recorded arrays from `scontrol show job` (pending, running, and finished ones that
    SLURM still remembers), else `sacct`; returns (tasks, note when SLURM could not say)."""
    tasks: list[ArrayTask] = []
    notes = []
    for job in job_ids:
        if shutil.which("scontrol") is None:
            return tasks, "scontrol is not on PATH: array tasks are not shown"
        proc = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=30)
        if proc.returncode == 0 and proc.stdout.strip():
            for f in _parse_scontrol(proc.stdout):
                if f.get("ArrayJobId", f.get("JobId")) != job:
                    continue
                tasks.append(ArrayTask(job, f.get("ArrayTaskId", ""), f.get("JobState", "?"),
                                       "" if f.get("Reason") in (None, "None") else f.get("Reason", ""),
                                       "" if f.get("NodeList") in (None, "(null)") else f.get("NodeList", ""),
                                       f.get("RunTime", ""), f.get("ExitCode", ""), int(f.get("Restarts", 0) or 0)))
            continue
        sacct = _sacct(job) if shutil.which("sacct") else None
        if sacct:
            tasks += sacct
        else:
            notes.append(f"job {job}: SLURM no longer remembers it")
    return tasks, "; ".join(notes) or None


def _sacct(job: str) -> list[ArrayTask] | None:
    proc = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job, "--format=JobID,State,NodeList,Elapsed,ExitCode"],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    out = []
    for line in proc.stdout.strip().splitlines():
        jid, state, node, elapsed, code = (line.split("|") + [""] * 5)[:5]
        task = jid.split("_", 1)[1] if "_" in jid else ""
        out.append(ArrayTask(job, task.strip("[]"), state.split()[0] if state else "?", "", node, elapsed, code))
    return out


def cancel(plan: "StudyPlan", echo: Callable[[str], None]) -> list[str]:
    """`ptplan cancel`: scancel the plan's recorded arrays that still have tasks queued or running.

    Each running worker gets SIGTERM: its trial is marked interrupted and its allocation queued
    again, so the next `ptplan run` or `ptplan submit` continues the study."""
    jobs = [j["job_id"] for j in read_jobs(plan) if j.get("job_id")]
    if not jobs:
        raise StudyError(f"no SLURM arrays recorded for study {plan.name!r} ({jobs_path(plan)} is missing or empty); "
                         "submit one with `ptplan submit PLAN --slurm`")
    tasks, _ = array_tasks(jobs)
    active = sorted({t.job for t in tasks if t.state in ACTIVE})
    if not active:
        echo(f"nothing to cancel: no task of array{'s' if len(jobs) > 1 else ''} {', '.join(jobs)} is pending or running")
        return []
    proc = _run(["scancel", *active])
    if proc.returncode != 0:
        raise StudyError(f"scancel failed (exit {proc.returncode}): {proc.stderr.strip()}")
    echo(f"cancelled job array{'s' if len(active) > 1 else ''} {', '.join(active)}")
    return active
