"""GPU options from a plan (`accel`) and a memory estimate per stage that refuses what cannot fit.

The estimate (bytes) follows the usual accounting for transformer training: weights; gradients and
AdamW's two moments for the trained parameters (fp32; mixed precision keeps fp32 master weights);
activations per layer of about 34 * b * s * h bytes plus 5 * a * b * s^2 for attention scores
(Korthikanti et al. 2022; about 2 * b * s * h with gradient checkpointing); the logits and their
gradient (b * s * vocab, fp32); and for GRPO the generation KV cache (2 * layers * kv_heads * head_dim
per token of every completion). It is an estimate: a config is refused only when the estimate
exceeds the device's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

GIB = 1024**3
HEADROOM = 0.9  # the share of device memory a stage may plan to use (allocator fragmentation, CUDA context)


def check_accel(accel: Any, use_cuda: bool) -> None:
    """Refuse a GPU option this machine cannot honour, naming the field and what to do."""
    import importlib.util

    def need_gpu(field: str) -> None:
        if not use_cuda:
            raise ConfigError(f"accel.{field}", "needs a CUDA device; this trial runs on the CPU (turn it off, or "
                              "run on a GPU machine with `device: cuda`)")

    if accel.bf16 == "on":
        need_gpu("bf16")
        import torch

        if not torch.cuda.is_bf16_supported():
            raise ConfigError("accel.bf16", "is 'on' but this GPU does not support bfloat16 (use 'auto')")
    if accel.padding_free:
        need_gpu("padding_free")
    if accel.liger:
        need_gpu("liger")
        if importlib.util.find_spec("liger_kernel") is None:
            raise ConfigError("accel.liger", "needs the liger-kernel package (pip install liger-kernel)")
    if accel.rl_generation == "vllm":
        need_gpu("rl_generation")
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError("accel.rl_generation", "is 'vllm' but vLLM is not installed (pip install vllm)")
    if accel.eval_engine == "vllm":
        raise ConfigError("accel.eval_engine", "'vllm' is not built yet: evaluation generates with transformers "
                          "(use 'hf')")


def use_bf16(accel: Any, use_cuda: bool) -> bool:
    if accel.bf16 == "off" or not use_cuda:
        return False
    if accel.bf16 == "on":
        return True
    import torch

    return torch.cuda.is_bf16_supported()


def use_checkpointing(accel: Any, use_cuda: bool) -> bool:
    """Activation checkpointing: TRL's default (on) on a GPU; on the CPU its recompute cost a fifth of
    the training time for bit-identical weights, so `auto` turns it off there."""
    return accel.gradient_checkpointing == "on" or (accel.gradient_checkpointing == "auto" and use_cuda)


def trainer_args(accel: Any, use_cuda: bool, stage: str) -> dict:
    """TRL config arguments for the plan's GPU options (`stage`: cpt, sft or rl)."""
    args: dict[str, Any] = {"bf16": use_bf16(accel, use_cuda), "gradient_checkpointing": use_checkpointing(accel, use_cuda)}
    if accel.liger:
        args["use_liger_kernel"] = True
    if stage in ("cpt", "sft") and accel.padding_free:
        args["padding_free"] = True
    if stage == "rl" and accel.rl_generation == "vllm":
        args.update(use_vllm=True, vllm_mode="colocate")
    return args


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a model: parameters, layers, width, heads, vocabulary."""

    params: int
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    intermediate: int

    @classmethod
    def of(cls, config: Any, params: int) -> "ModelShape":
        heads = config.num_attention_heads
        return cls(params=params, layers=config.num_hidden_layers, hidden=config.hidden_size, heads=heads,
                   kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                   head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
                   vocab=config.vocab_size,
                   intermediate=getattr(config, "intermediate_size", None) or 4 * config.hidden_size)


def estimate_memory(shape: ModelShape, *, stage: str, rank: int, batch: int, seq: int, bf16: bool,
                    gradient_checkpointing: bool = False, generations: int = 1, completion: int = 0) -> dict:
    """Estimated peak bytes of one training step of a stage, by component (and `total`).

    `batch` counts sequences per step (for GRPO: prompts x generations) and `seq` their length in tokens.
    """
    weight_bytes = 4  # HF mixed precision keeps fp32 weights; bf16 only in the compute
    trained = shape.params if rank == 0 else _lora_params(shape, rank)
    act_bytes = 2 if bf16 else 4
    per_layer = (2 * batch * seq * shape.hidden * act_bytes if gradient_checkpointing else
                 17 * batch * seq * shape.hidden * act_bytes + 2.5 * shape.heads * batch * seq * seq * act_bytes)
    out = {
        "weights": shape.params * weight_bytes,
        "gradients": trained * 4,
        "optimizer": trained * 8,
        "activations": shape.layers * per_layer,
        "logits": 2 * batch * seq * shape.vocab * 4,
        "generation_cache": 0,
    }
    if stage == "rl":
        out["generation_cache"] = (2 * shape.layers * shape.kv_heads * shape.head_dim * act_bytes
                                   * batch * (seq + completion))
    out["total"] = sum(out.values())
    return out


def _lora_params(shape: ModelShape, rank: int) -> int:
    """Adapter parameters of LoRA on every linear layer of a block: r * (in + out) per matrix."""
    h, qd, kvd, i = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, shape.intermediate
    per_layer = (h + qd) + 2 * (h + kvd) + (qd + h) + 2 * (h + i) + (i + h)  # q, k, v, o, gate, up, down
    return rank * shape.layers * per_layer


def check_memory(estimate: dict, device_bytes: int | None, what: str) -> None:
    """Refuse a stage whose estimate exceeds the device, with the estimate by component."""
    if device_bytes is None or estimate["total"] <= HEADROOM * device_bytes:
        return
    parts = ", ".join(f"{k.replace('_', ' ')} {v / GIB:.1f}" for k, v in estimate.items() if k != "total" and v)
    raise ConfigError(what, f"needs about {estimate['total'] / GIB:.1f} GiB ({parts} GiB) but the device has "
                      f"{device_bytes / GIB:.1f} GiB: lower the batch size or max length, use LoRA (a rank > 0), "
                      "or turn on `accel.gradient_checkpointing`")
