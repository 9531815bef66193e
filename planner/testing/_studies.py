"""A synthetic study FOR TESTS AND BENCHMARK TIMING ONLY: trials written straight into storage
with the user attrs a real trial records, so `status`, `export`, `recommend` and `report` can be
exercised and timed on 1,000 trials without training anything."""

from __future__ import annotations

import random

# Micro trial sizes as `--set` overrides: shrink any plan (e.g. paper-epoch-split) to real trials of a
# few seconds on a CPU (tests/studies and benchmarks/bench_studies.py).
MICRO_SETS = [
    "data.sizes={cpt: 16, sft: 16, rl: 4, id_test: 8, ood_test: 8}",
    "allocation.cpt.batch_size=16", "allocation.cpt.warmup_steps=0",
    "allocation.sft.batch_size=16", "allocation.sft.warmup_steps=0",
    "allocation.rl.batch_size=4", "allocation.rl.generations=2", "allocation.rl.max_completion_length=8",
    "allocation.rl.warmup_steps=0", "allocation.rl.rank=4",
    "eval={points: {cpt: 1, sft: 1, rl: 1}, batch_size: 16}", "device=cpu",
]


def synthetic_study(plan_path, n: int, failed_every: int = 10):
    """SYNTHETIC storage load: `n` finished trials carrying ptplan's user attrs (every
    `failed_every`-th FAIL, reason diverged); nothing is trained. Returns (plan, session)."""
    import optuna

    from ptplan.studies import Plan, open_session

    sp = Plan.load(plan_path)
    session = open_session(sp)
    rng = random.Random(0)
    dists = {p: optuna.distributions.FloatDistribution(0.0, 1.0) for p in sp.space.params}
    trials = []
    total, unit = sp.trial.budget.total, sp.trial.budget.unit  # the plan's budget, as real trials record it
    for i in range(n):
        params = {p: rng.uniform(0.1, 0.9) for p in sp.space.params}
        shares = sp.space.shares_for(params)
        spent = {"flops": 2e11, "tokens": 5e4, "examples": 900.0, "epochs": 3.0, "seconds": 30.0, "steps": 60,
                 unit: total}
        ledger = {"total": total, "unit": unit, "spent": spent, "eval": spent,
                  "stages": {s: {"slice": total * shares[s], "reused": s == "cpt" and i % 3 == 0,
                                 "spent": {k: v * shares[s] for k, v in spent.items()}, "eval": spent}
                             for s in ("cpt", "sft", "rl")}}
        alloc = {"shares": shares, **{s: {"rank": 16, "lr": 1e-3, "batch_size": 32, "warmup_steps": 5,
                                          "max_length": 192} for s in ("cpt", "sft", "rl")}}
        failed = bool(failed_every) and i % failed_every == failed_every - 1
        attrs = {"allocation": alloc, "ledger": ledger,
                 "final": None if failed else {"id": shares["sft"], "ood": shares["rl"],
                                               "id_tasks": {"gc": 0.5, "revcomp": 0.2},
                                               "ood_tasks": {"gc_long": 0.1}},
                 "ood_peak": {"compute": 1e10, "fraction": 0.4, "value": 0.1, "censored": False},
                 "curves": f"/synthetic/{i}/curves.parquet", "artifacts": f"/synthetic/{i}", "worker": "host:1",
                 "compute_saved": {"unit": unit, "value": total * shares["cpt"] if i % 3 == 0 else 0.0,
                                   "flops": 0.0, "stages": ["cpt"] if i % 3 == 0 else []},
                 "timings": {"total": 30.0, "sft": 10.0}, "wall_seconds": 31.0,
                 "failure": {"reason": "diverged", "message": "loss became nan"} if failed else None}
        trials.append(optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE,
            values=None if failed else [shares["sft"], shares["rl"]], params=params, distributions=dists,
            user_attrs=attrs))
    session.admin.add_trials(trials)
    return sp, session
