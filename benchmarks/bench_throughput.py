"""Trial throughput before and after issue 17 (evaluation tax, per-trial overhead), interleaved in one run.

The `quick` study's first trials (the allocations its sampler draws from the plan's seed) run in two
long-lived worker processes, the way `ptplan run` runs them (Optuna study, `studies.work`, enqueued
allocations, no pruner so both sides do the same work): one with the code before (commit 353666f by
default) and one with this checkout. Trials alternate between the two (A B B A ...), one at a time.

The code before is a real install of that commit, not a flag in today's code: `git archive` of the
commit, built into a wheel and installed into its own venv under --before-dir, whose only link to this
venv is a .pth line for the third-party packages (same torch/transformers/TRL on both sides). So
"before" is exactly what that commit ran, and nothing of the old path has to stay in the product.

Per trial: worker wall time (Optuna ask/tell included), training-loop seconds (the stages' charged
training, `spent.seconds`), evaluation seconds (every curve point), and the final and curve scores of
both sides, which must agree: final evaluation identical; intermediate points within their standard
error. `--profile` runs one trial per side under cProfile and prints where the time went instead.

Usage: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_throughput.py [--trials 4] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE = "353666f"


# -- worker (runs under either side's interpreter; only API both commits share) -------------------
def _stats_breakdown(stats) -> dict[str, float]:
    """Seconds per activity from cProfile stats of one trial (cumulative times; callers split shared
    functions such as the tokenizer between evaluation and training set-up)."""
    raw = stats.stats

    def cum(file_part: str, name: str) -> float:
        return sum(v[3] for (f, _, n), v in raw.items() if file_part in f and n == name)

    def from_callers(file_part: str, name: str, caller_file: str) -> float:
        total = 0.0
        for (f, _, n), v in raw.items():
            if file_part in f and n == name:
                total += sum(c[3] for (cf, _, _), c in v[4].items() if caller_file in cf)
        return total

    out = {
        "trial (run_trial)": cum("stages/_trial.py", "run"),
        "training loop (Trainer.train, incl. intermediate evaluation)": cum("transformers/trainer.py", "train"),
        "  of which intermediate evaluation (eval hook)": cum("stages/_trial.py", "hook"),
        "  activation-checkpoint recompute (in backward)": cum("torch/utils/checkpoint.py", "recompute_fn"),
        "  RL generation (GRPO rollouts, charged)": cum("trl/trainer/grpo_trainer.py", "_generate_and_score_completions"),
        "evaluation, all points": cum("stages/_eval.py", "evaluate"),
        "  generation (generate_greedy: pad, decode loop, detokenize)": cum("stages/_eval.py", "generate_greedy"),
        "  eval tokenization (prompts)": from_callers("tokenization_utils_base.py", "__call__", "stages/_eval.py"),
        "  stop-rule checks (settled rows)": cum("stages/_eval.py", "__call__") + cum("_scoring.py", "score_settled"),
        "  scoring": from_callers("_tasks/_base.py", "score", "stages/_eval.py"),
        "trainer construction (incl. dataset tokenization)": cum("stages/_stages.py", "build_trainer"),
        "budget checks (step costs, tokenizes train sets)": cum("stages/_stages.py", "step_costs"),
        "LoRA merges": cum("peft/tuners/tuners_utils.py", "merge_and_unload"),
        "checkpoint saves": cum("stages/_backbones.py", "save_checkpoint"),
        "model loads (backbone, reused checkpoints)": cum("stages/_backbones.py", "load_backbone")
        + cum("stages/_backbones.py", "load_checkpoint"),
        "data (suite build)": cum("stages/_trial.py", "load_task_data"),
        "imports (first trial of a process)": cum("<frozen importlib._bootstrap>", "_find_and_load"),
        "Optuna and study layer (ask, tell, records; outside run_trial)":
            cum("optuna/study/_optimize.py", "_run_trial") - cum("stages/_trial.py", "run"),
    }
    return {k: round(v, 2) for k, v in out.items()}


def worker(run_dir: str, allocations: list[dict], profile: bool) -> None:
    started = time.perf_counter()
    from ptplan._plan import load_plan
    from ptplan.studies import StudyPlan
    from ptplan.studies._worker import open_session, work

    data, source = load_plan("quick")
    plan = StudyPlan.from_mapping(data, [f"study.dir={run_dir}", "study.objective.pruner=none"], source)
    session = open_session(plan, jobs=1, index=0)
    for params in allocations:
        session.admin.enqueue_trial(params)
    print(json.dumps({"ready": time.perf_counter() - started}), flush=True)
    for line in sys.stdin:
        k = int(line)
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        t = time.perf_counter()
        work(session, k + 1, echo=lambda _line: None)
        wall = time.perf_counter() - t
        if prof is not None:
            prof.disable()
        trial = session.admin.get_trials(deepcopy=False)[k]
        ua = trial.user_attrs
        ledger, timings = ua.get("ledger") or {}, ua.get("timings") or {}
        trained = [st for st in ledger.get("stages", {}).values() if not st["reused"]]
        import pyarrow.parquet as pq

        curve = pq.read_table(ua["curves"]).to_pylist() if ua.get("curves") else []
        rec = {"k": k, "state": trial.state.name, "params": trial.params, "wall": wall,
               "train": sum(st["spent"]["seconds"] for st in trained),
               "eval": timings.get("eval_start", 0.0) + sum(st["eval"]["seconds"] for st in trained),
               "eval_by_stage": {"start": timings.get("eval_start", 0.0),
                                 **{s: st["eval"]["seconds"] for s, st in ledger.get("stages", {}).items()}},
               "final": ua.get("final"),
               "curve": [{key: p.get(key) for key in ("stage", "step", "id", "ood", "id_n", "ood_n", "id_se", "ood_se")}
                         for p in curve]}
        if prof is not None:
            import pstats

            rec["profile"] = _stats_breakdown(pstats.Stats(prof))
        print(json.dumps(rec, default=str), flush=True)


# -- the code before: its own venv ------------------------------------------------------------------
def before_python(commit: str, base: Path) -> Path:
    """Interpreter of a venv holding `commit`'s ptplan (built once); third-party packages from this venv."""
    import site

    folder = base / commit
    py = folder / "venv" / "bin" / "python"
    if py.exists():
        return py
    src, wheels = folder / "src", folder / "wheel"
    src.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")], check=True)
    target = next((folder / "venv" / "lib").glob("python*/site-packages"))
    (target / "_ptplan_third_party.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(src)], check=True)
    wheel = next(wheels.glob("ptplan-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)],
                   check=True)
    return py


# -- orchestration ----------------------------------------------------------------------------------
def quick_allocations(n: int) -> list[dict]:
    """The first `n` allocations the quick study's sampler proposes (worker 0's seed); every one is a
    random start-up draw, so they do not depend on the scores."""
    import optuna

    from ptplan._plan import load_plan
    from ptplan.studies import SAMPLERS, StudyPlan
    from ptplan.studies._study import sampler_seed

    data, source = load_plan("quick")
    plan = StudyPlan.from_mapping(data, [], source)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=plan.directions,
                                sampler=SAMPLERS[plan.study.sampler](plan, sampler_seed(plan, 0)))
    out = []
    for _ in range(n):
        trial = study.ask()
        plan.space.suggest(trial)
        out.append(dict(trial.params))
    return out


class Side:
    def __init__(self, name: str, python: Path, run_dir: Path, allocations: list[dict], profile: bool):
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        env.pop("PYTHONPATH", None)
        self.name = name
        t = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(python), __file__, "--worker", str(run_dir), "--allocations", json.dumps(allocations)]
            + (["--profile"] if profile else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=run_dir.parent)
        ready = json.loads(self._line())
        self.start = time.perf_counter() - t
        self.imports = ready["ready"]
        self.trials: list[dict] = []

    def _line(self) -> str:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} worker ended (exit {self.proc.wait()})")
            if line.startswith("{"):
                return line

    def run(self, k: int) -> dict:
        self.proc.stdin.write(f"{k}\n")
        self.proc.stdin.flush()
        rec = json.loads(self._line())
        self.trials.append(rec)
        return rec

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def compare_curves(before: dict, after: dict) -> dict:
    """Points on every item equal (`full_equal`); subsampled points of `after` within 1 / 2 of their
    standard errors of `before`'s full-set score at the same step."""
    old = {(p["stage"], p["step"]): p for p in before["curve"]}
    full = {key: max((p.get(f"{key}_n") or 0) for p in after["curve"]) for key in ("id", "ood")}
    n = within1 = within2 = exact = full_points = full_equal = 0
    worst = 0.0
    for p in after["curve"]:
        q = old.get((p["stage"], p["step"]))
        if q is None:
            continue
        for key in ("id", "ood"):
            if p.get(f"{key}_se") is None:
                continue
            if p[f"{key}_n"] == full[key]:
                full_points += 1
                full_equal += p[key] == q[key]
                continue
            n += 1
            diff = abs(p[key] - q[key])
            exact += diff == 0
            se = p[f"{key}_se"]
            within1 += diff <= se + 1e-12
            within2 += diff <= 2 * se + 1e-12
            worst = max(worst, diff)
    same_points = [(p["stage"], p["step"]) for p in before["curve"]] == [(p["stage"], p["step"]) for p in after["curve"]]
    return {"final_identical": before["final"] == after["final"], "same_points": same_points,
            "full_points": full_points, "full_equal": full_equal, "compared": n,
            "exact": exact, "within_1se": within1, "within_2se": within2, "max_abs_diff": worst}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=4, help="trials per side (the quick study runs 4)")
    ap.add_argument("--before", default=BEFORE, help="commit of the code before")
    ap.add_argument("--before-dir", type=Path, default=Path(tempfile.gettempdir()) / "ptplan-before")
    ap.add_argument("--profile", action="store_true", help="cProfile one trial per side; print the breakdown")
    ap.add_argument("--out", type=Path, help="write every per-trial record as JSON here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--allocations", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, json.loads(args.allocations), args.profile)

    sys.path.insert(0, str(Path(__file__).parent))
    from _common import print_machine

    print_machine()
    old_py = before_python(args.before, args.before_dir)
    n = 1 if args.profile else args.trials
    allocations = quick_allocations(n)
    print(f"before: {args.before} ({old_py}); after: {REPO} ({sys.executable})")
    with tempfile.TemporaryDirectory(prefix="ptplan-throughput-") as tmp:
        sides = {"before": Side("before", old_py, Path(tmp) / "before", allocations, args.profile),
                 "after": Side("after", Path(sys.executable), Path(tmp) / "after", allocations, args.profile)}
        for s in sides.values():
            print(f"{s.name}: worker ready in {s.start:.1f} s")
        for k in range(n):
            order = ("before", "after") if k % 2 == 0 else ("after", "before")  # A B B A: drift cancels
            for name in order:
                rec = sides[name].run(k)
                print(f"trial {k} {name:<6} {rec['state']}: wall {rec['wall']:6.1f} s  training {rec['train']:5.1f} s  "
                      f"evaluation {rec['eval']:5.1f} s  final {rec['final']}", flush=True)
        for s in sides.values():
            s.close()
    if args.out:
        args.out.write_text(json.dumps({k: {"start": s.start, "trials": s.trials} for k, s in sides.items()}, indent=1))
    if args.profile:
        for name, s in sides.items():
            print(f"\n{name}: cProfile of trial 0 (seconds; cProfile inflates Python-heavy parts); worker start "
                  f"{s.start:.1f} s (interpreter, ptplan, Optuna study)")
            for key, value in s.trials[0]["profile"].items():
                print(f"  {key:<66} {value:8.2f}")
        return
    print("\nper side (means over trials; trials/hour counts the worker's start once)")
    summary = {}
    for name, s in sides.items():
        walls = [t["wall"] for t in s.trials]
        train = [t["train"] for t in s.trials]
        ev = [t["eval"] for t in s.trials]
        summary[name] = {"trials_per_hour": 3600 * len(walls) / (sum(walls) + s.start),
                         "steady_trials_per_hour": 3600 * len(walls) / sum(walls),
                         "wall": sum(walls) / len(walls), "train": sum(train) / len(train), "eval": sum(ev) / len(ev),
                         "eval_per_train": sum(ev) / sum(train), "wall_per_train": sum(walls) / sum(train),
                         "train_share": sum(train) / sum(walls)}
        m = summary[name]
        print(f"  {name:<6} trials/hour {m['trials_per_hour']:5.1f} (steady {m['steady_trials_per_hour']:5.1f})  "
              f"wall {m['wall']:5.1f} s  training {m['train']:5.1f} s  evaluation {m['eval']:5.1f} s  "
              f"eval/training {m['eval_per_train']:.1%}  wall/training {m['wall_per_train']:.2f}x  "
              f"training share of wall {m['train_share']:.0%}")
    b, a = summary["before"], summary["after"]
    print(f"\ntrials/hour after/before: {a['trials_per_hour'] / b['trials_per_hour']:.2f}x "
          f"(steady {a['steady_trials_per_hour'] / b['steady_trials_per_hour']:.2f}x); "
          f"targets: eval/training <= 10% ({a['eval_per_train']:.1%}), wall <= 1.2x training "
          f"({a['wall_per_train']:.2f}x), trials/hour >= 1.4x")
    print("per trial: training share of wall before -> after; agreement of scores")
    for tb, ta in zip(sides["before"].trials, sides["after"].trials):
        c = compare_curves(tb, ta)
        print(f"  trial {tb['k']}: {tb['train'] / tb['wall']:.0%} -> {ta['train'] / ta['wall']:.0%}; final identical "
              f"{c['final_identical']}; same points {c['same_points']}; every-item scores equal "
              f"{c['full_equal']}/{c['full_points']}; subsampled scores: {c['compared']}, {c['exact']} equal, "
              f"{c['within_1se']} within 1 SE, {c['within_2se']} within 2 SE, max |diff| {c['max_abs_diff']:.3f}")


if __name__ == "__main__":
    main()
