"""GPU throughput of ptplan's stages with its GPU options against plain TRL defaults (issue 15).

Ready to run on a CUDA machine; `--smoke` runs every section once on the CPU with tiny sizes, to
check the script itself (its figures mean nothing). Sections:
1. SFT and GRPO tokens/s: ptplan's stage with the plan's `accel` options (bf16, padding-free SFT,
   Liger when installed, vLLM colocated generation for GRPO when installed) against TRL's config
   defaults, same process, same model and data, alternating `--repeats` times (median ratio).
   Models: a Qwen3-0.6B-shaped model built from a config (random init) and built-in llama sizes.
   Targets: GRPO >= 1.5x plain TRL with vLLM generation.
2. Evaluation: transformers `generate` (ptplan's evaluation) against vLLM on the same prompts
   (target >= 5x), when vLLM is installed.
3. Trials per hour: K = 1, 4, 8 concurrent `ptplan trial` processes of a llama-8m plan on one
   device (target >= 5x at K = 8).

    python benchmarks/bench_gpu.py [--repeats 3] [--steps 30] [--smoke]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_machine

from ptplan.stages import TrialConfig, build_suite
from ptplan.stages._accel import trainer_args
from ptplan.stages._config import AccelConfig, RLConfig, StageConfig, SuiteSizes
from ptplan.stages._stages import STAGE_TYPES, StageContext

QWEN3_06B = dict(vocab_size=151_936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=4096,
                 tie_word_embeddings=True)
SMOKE_QWEN = dict(QWEN3_06B, vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16)


def qwen3_model(shape: dict, tokenizer, device: str):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(**{**shape, "vocab_size": max(shape["vocab_size"], len(tokenizer))},
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return Qwen3ForCausalLM(config).to(device)


def builtin_model(name: str, device: str):
    from ptplan.stages import load_backbone

    model, tok = load_backbone(name, seed=0)
    return model.to(device), tok


def stage_rate(stage: str, model, tok, data, steps: int, accel: AccelConfig | None, cuda: bool) -> float:
    """Tokens per second of one stage run of `steps` optimizer steps (accel None: TRL's defaults)."""
    cfg = StageConfig(batch_size=8, warmup_steps=0) if stage == "sft" else \
        RLConfig(rank=16, batch_size=4, generations=4, max_completion_length=32, warmup_steps=0)
    n = sum(p.numel() for p in model.parameters())
    ctx = StageContext(name=stage, config=cfg, slice=steps * cfg.batch_size, unit="examples", data=data, n_params=n,
                       eval_points=1, evaluate=lambda m, s: None, use_cuda=cuda, accel=accel)
    if accel is None:  # plain TRL: its own config defaults (bf16 and gradient checkpointing as TRL sets them)
        import ptplan.stages._stages as stages_mod

        original = stages_mod._common_args

        def plain(c, out_dir, max_steps):
            args = original(c, out_dir, max_steps)
            for key in trainer_args(AccelConfig(), cuda, stage):
                args.pop(key, None)
            return args

        stages_mod._common_args = plain
        try:
            t0 = time.perf_counter()
            _, state = STAGE_TYPES[stage]().run(model, tok, ctx)
        finally:
            stages_mod._common_args = original
    else:
        t0 = time.perf_counter()
        _, state = STAGE_TYPES[stage]().run(model, tok, ctx)
    return state.spent.tokens / (time.perf_counter() - t0)


def section_throughput(args, cuda: bool, device: str) -> None:
    data = build_suite("genomics", 0, SuiteSizes(cpt=64, sft=256, rl=64, id_test=16, ood_test=16))
    accel = AccelConfig(bf16="auto", padding_free=False, liger=cuda and importlib.util.find_spec("liger_kernel")
                        is not None, rl_generation="vllm" if cuda and importlib.util.find_spec("vllm") else "hf")
    print(f"\n## 1. stage throughput (tokens/s), ptplan accel {accel} vs plain TRL defaults")
    print("| model | stage | ptplan | plain TRL | ratio |\n| --- | --- | --- | --- | --- |")
    models = ["llama-0.5m"] + ([] if args.smoke else ["llama-8m", "llama-30m", "qwen3-0.6b-shape"])
    for name in models:
        for stage in ("sft", "rl"):
            ours, plain = [], []
            for _ in range(args.repeats):
                for which, out in ((accel, ours), (None, plain)):
                    if name.startswith("qwen3"):
                        _, tok = builtin_model("llama-0.5m", device)
                        model = qwen3_model(SMOKE_QWEN if args.smoke else QWEN3_06B, tok, device)
                    else:
                        model, tok = builtin_model(name, device)
                    out.append(stage_rate(stage, model, tok, data, args.steps, which, cuda))
            o, p = statistics.median(ours), statistics.median(plain)
            print(f"| {name} | {stage} | {o:,.0f} | {p:,.0f} | {o / p:.2f} |")


def section_eval(args, cuda: bool, device: str) -> None:
    print("\n## 2. evaluation: transformers generate vs vLLM (prompts/s)")
    if not cuda or importlib.util.find_spec("vllm") is None:
        print("skipped: needs a CUDA device and vLLM")
        return
    from vllm import LLM, SamplingParams

    from ptplan.stages._eval import evaluate

    data = build_suite("genomics", 0, SuiteSizes(cpt=16, sft=16, rl=16, id_test=256, ood_test=16))
    model, tok = builtin_model("llama-8m", device)
    t0 = time.perf_counter()
    evaluate(model, tok, data.id_test, data.score, 24, 256)
    hf = len(data.id_test) / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        llm = LLM(folder, gpu_memory_utilization=0.3)
        t0 = time.perf_counter()
        llm.generate([e.prompt for e in data.id_test], SamplingParams(temperature=0, max_tokens=24))
        vl = len(data.id_test) / (time.perf_counter() - t0)
    print(f"| engine | prompts/s |\n| --- | --- |\n| transformers | {hf:,.1f} |\n| vLLM | {vl:,.1f} ({vl / hf:.1f}x) |")


def section_concurrency(args, cuda: bool) -> None:
    print("\n## 3. concurrent trials on one device (trials/hour)")
    plan = {"backbone": "llama-0.5m" if args.smoke else "llama-8m", "budget": 2e10 if args.smoke else 2e12}
    counts = (1, 2) if args.smoke else (1, 4, 8)
    base = None
    print("| K | wall s | trials/hour | vs K=1 |\n| --- | --- | --- | --- |")
    for k in counts:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            procs = [subprocess.Popen([sys.executable, "-m", "ptplan._cli", "trial", "smoke", "--out",
                                       str(Path(tmp) / f"t{i}"), "--set", f"backbone.name={plan['backbone']}",
                                       "--set", f"budget.total={plan['budget']}", "--set", f"seed={i}",
                                       "--set", f"device={'cuda' if cuda else 'cpu'}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(k)]
            codes = [p.wait() for p in procs]
            wall = time.perf_counter() - t0
        rate = k * 3600 / wall
        base = base or rate
        print(f"| {k} | {wall:.0f} | {rate:.0f} | {rate / base:.2f}x | " + ("" if not any(codes) else f"exit {codes}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: checks the script on a CPU")
    args = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    if args.smoke:
        args.repeats, args.steps = 1, 2
    elif not cuda:
        sys.exit("bench_gpu.py needs a CUDA device (use --smoke to check the script on a CPU)")
    print_machine()
    print(f"device: {torch.cuda.get_device_name(0) if cuda else 'cpu'}")
    TrialConfig()  # the plan schema imports cleanly
    device = "cuda" if cuda else "cpu"
    section_throughput(args, cuda, device)
    section_eval(args, cuda, device)
    section_concurrency(args, cuda)


if __name__ == "__main__":
    main()
