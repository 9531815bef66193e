"""Throughput of ptplan's SFT and GRPO stages against a plain TRL script, same process.

Same model (built-in llama-0.5m, same init), same data (genomics suite), same batch and steps;
the plain script uses TRL's trainers with the same config but none of ptplan's callbacks. The two
run alternately, `--repeats` times each; we report the median ratio of tokens per CPU-second of
the process (target >= 0.95): CPU time, not wall time, because these machines are shared.
Also measures the peak RSS of a `ptplan trial smoke` subprocess (target <= 2 GiB).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_stages.py [--steps 60] [--repeats 5]

(one OpenMP thread: with two threads on a shared 2-core machine, spin-waiting under load made the
per-run ratios swing 0.2-2.0; with one they stay within a few percent).
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from ptplan.stages import SuiteSizes, build_suite, load_backbone
from ptplan.stages._config import RLConfig, StageConfig
from ptplan.stages._stages import STAGE_TYPES, StageContext, _common_args, _lora_config


def _clock() -> float:
    """Process CPU time (all threads): less sensitive than wall time to other work on a shared machine."""
    return time.process_time()


def _ctx(stage, cfg, data, n, steps):
    slice_ = steps * cfg.batch_size  # examples budget: exactly `steps` optimizer steps
    return StageContext(name=stage, config=cfg, slice=slice_, unit="examples", data=data, n_params=n,
                        eval_points=1, evaluate=lambda m, s: None, seed=0)


def ptplan_rate(stage, cfg, data, steps):
    """ptplan's stage: trainer construction + training + adapter merge, timed end to end."""
    model, tok = load_backbone("llama-0.5m", seed=0)
    n = sum(p.numel() for p in model.parameters())
    t0 = _clock()
    _, state = STAGE_TYPES[stage]().run(model, tok, _ctx(stage, cfg, data, n, steps))
    return state.spent.tokens / (_clock() - t0)


def plain_rate(stage, cfg, data, steps):
    """The plain TRL script: dataset, config, trainer, train; nothing of ptplan's. Timed end to end."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

    model, tok = load_backbone("llama-0.5m", seed=0)
    t0 = _clock()
    common = _common_args(_ctx(stage, cfg, data, 1, steps), tempfile.mkdtemp(), steps)
    if stage == "sft":
        ds = Dataset.from_dict({"prompt": [e.prompt for e in data.sft_train],
                                "completion": [e.answer for e in data.sft_train]})
        args = SFTConfig(**common, per_device_train_batch_size=cfg.batch_size, max_length=cfg.max_length,
                         include_num_input_tokens_seen="non_padding")
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                             peft_config=_lora_config(cfg.rank))
    else:
        ds = Dataset.from_dict({"prompt": [e.prompt for e in data.rl_train], "answer": [e.answer for e in data.rl_train],
                                "task": [e.task for e in data.rl_train]})
        args = GRPOConfig(**common, per_device_train_batch_size=cfg.batch_size * cfg.generations,
                          num_generations=cfg.generations, max_completion_length=cfg.max_completion_length,
                          beta=cfg.beta, temperature=cfg.temperature, steps_per_generation=1)
        trainer = GRPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                              reward_funcs=[data.reward_fn()], peft_config=_lora_config(cfg.rank))
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    trainer.train()
    return trainer.state.num_input_tokens_seen / (_clock() - t0)


def smoke_peak_rss_gib() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ptplan._cli", "trial", "smoke", "--out", out], check=True,
                       capture_output=True)
        wall = time.perf_counter() - t0
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, wall


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    from ptplan.stages._trial import _quiet_libraries

    _quiet_libraries()
    data = build_suite("genomics", 0, SuiteSizes(cpt=10, sft=2000, rl=512, id_test=8, ood_test=8))
    configs = {"sft": StageConfig(lr=1e-3, batch_size=32), "rl": RLConfig(rank=4, batch_size=8, generations=4)}
    steps = {"sft": a.steps, "rl": max(a.steps // 3, 5)}
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    for stage, cfg in configs.items():
        ours, plain = [], []
        ptplan_rate(stage, cfg, data, 3)  # warm-up (imports, allocator)
        for _ in range(a.repeats):
            plain.append(plain_rate(stage, cfg, data, steps[stage]))
            ours.append(ptplan_rate(stage, cfg, data, steps[stage]))
        ratios = [o / q for o, q in zip(ours, plain)]
        print(f"{stage.upper():4s} steps={steps[stage]} plain TRL {statistics.median(plain):8.0f} tok/cpu-s  "
              f"ptplan {statistics.median(ours):8.0f} tok/cpu-s  ratio median {statistics.median(ratios):.3f} "
              f"(runs {', '.join(f'{r:.3f}' for r in ratios)})")
    rss, wall = smoke_peak_rss_gib()
    print(f"smoke trial: peak RSS {rss:.2f} GiB, wall {wall:.1f} s")


if __name__ == "__main__":
    main()
