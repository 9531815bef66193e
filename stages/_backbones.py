"""Backbones: built-in char-level Llama models created from a config, or any causal LM by path/hub id."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Characters the built-in tokenizer knows: printable ASCII plus newline. DNA, RNA and protein
# letters are single characters, so every residue is one token.
CHARSET = "\n" + "".join(chr(c) for c in range(32, 127))
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


@dataclass(frozen=True)
class BuiltinSize:
    """Shape of a built-in Llama backbone."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int = 256


# One registry (name -> shape); parameter counts are for the 100-token char vocabulary.
BUILTIN_BACKBONES: dict[str, BuiltinSize] = {
    "llama-0.5m": BuiltinSize(hidden=128, layers=3, heads=4, intermediate=256),
    "llama-2m": BuiltinSize(hidden=192, layers=4, heads=6, intermediate=512),
    "llama-8m": BuiltinSize(hidden=320, layers=6, heads=8, intermediate=864),
    "llama-30m": BuiltinSize(hidden=512, layers=10, heads=8, intermediate=1376),
}


def char_tokenizer():
    """A character-level fast tokenizer built locally (no download)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS.values())}
    for ch in CHARSET:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    fast.padding_side = "left"
    return fast


def _builtin_model(size: BuiltinSize, vocab_size: int, tokenizer, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        intermediate_size=size.intermediate,
        max_position_embeddings=size.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


# Strings whose tokenization must not change between the user's tokenizer and any stage checkpoint.
PROBES = ("ACGTTGCAAGGCTTAA", "AUGGCCAUUGUAAUGGGCCGCUGA", "MKTAYIAKQRQISFVKSHFSRQ", "GO:0003677", "0003677",
          "2026-12-04", "3.14159", " the answer is 42\n", "<answer>DNA binding</answer>")
_compared: set[str] = set()  # folders whose saved tokenizer was compared with AutoTokenizer's
log = logging.getLogger("ptplan.backbones")


def load_tokenizer(folder: str | Path, *, trust_remote_code: bool = False, compare: bool = False):
    """The tokenizer saved in `folder`, exactly as saved.

    With a `tokenizer.json` it is loaded as that file says (`PreTrainedTokenizerFast`): transformers'
    `AutoTokenizer` may substitute a model-specific class whose own normalizer and pre-tokenizer change
    the tokenization (a `qwen2`/`qwen3` config gives Qwen2Tokenizer, which splits digits). With
    `compare`, the two are compared on `PROBES` once per folder and process, and a difference is logged. Without a `tokenizer.json`
    (a slow-only tokenizer or a hub id), `AutoTokenizer` loads it.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = str(folder)
    if not (Path(folder) / "tokenizer.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    else:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
        if compare and folder not in _compared:
            _compared.add(folder)
            try:
                auto = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
            except Exception:  # noqa: BLE001 - nothing to compare with: the saved tokenizer is used anyway
                auto = None
            if auto is not None and type(auto) is not type(tokenizer):
                ours = tokenizer(list(PROBES), add_special_tokens=False)["input_ids"]
                theirs = auto(list(PROBES), add_special_tokens=False)["input_ids"]
                diff = [(p, len(a), len(b)) for p, a, b in zip(PROBES, ours, theirs) if a != b]
                if diff:
                    p, a, b = diff[0]
                    log.warning("transformers would load the tokenizer in %s as %s, which tokenizes differently "
                                "(%r: %d tokens, saved tokenizer.json: %d); ptplan keeps the saved tokenizer at "
                                "every stage", folder, type(auto).__name__, p, b, a)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_backbone(name: str | None = None, path: str | None = None, *, trust_remote_code: bool = False,
                  seed: int = 0, dtype: Any = None):
    """Return (model, tokenizer) for a built-in name, or a local folder / hub id via `path`.

    Built-in backbones start untrained (seeded init): CPT is what teaches them biological text.
    """
    if path is not None:
        from transformers import AutoModelForCausalLM

        local = Path(path).expanduser()
        if not local.exists() and (local.is_absolute() or str(path).startswith((".", "~")) or str(path).count("/") > 1):
            raise FileNotFoundError(f"`backbone.path`: the folder {str(local)!r} does not exist (give a local model "
                                    "folder, or a Hugging Face hub id such as 'org/name')")
        path = str(local) if local.exists() else path

        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code, compare=True)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=dtype)
        return model, tokenizer
    if name not in BUILTIN_BACKBONES:
        raise ValueError(f"`backbone.name` must be one of {sorted(BUILTIN_BACKBONES)}, got {name!r}")
    tokenizer = char_tokenizer()
    return _builtin_model(BUILTIN_BACKBONES[name], len(tokenizer), tokenizer, seed), tokenizer


BASE_FILE = "base.json"  # an adapter checkpoint's base: {"checkpoint": relative path} or {"backbone": {...}}


def load_checkpoint(folder: str | Path):
    """Load a stage checkpoint written by `save_checkpoint` (an adapter is merged into its base, loaded
    the same way), with its tokenizer as saved."""
    import json

    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    base_file = folder / BASE_FILE
    if not base_file.exists():
        return AutoModelForCausalLM.from_pretrained(folder), load_tokenizer(folder)
    from peft import PeftModel

    base = json.loads(base_file.read_text())
    if "checkpoint" in base:
        model, _ = load_checkpoint((folder / base["checkpoint"]).resolve())
    else:
        b = base["backbone"]
        model, _ = load_backbone(b.get("name"), b.get("path"), trust_remote_code=b.get("trust_remote_code", False),
                                 seed=b.get("seed", 0))
    return PeftModel.from_pretrained(model, folder).merge_and_unload(), load_tokenizer(folder)


def save_checkpoint(model, tokenizer, folder: str | Path, *, adapter: Any = None, base: dict | None = None) -> None:
    """Save a stage's weights and tokenizer. A LoRA stage (`adapter`: (peft config, weights)) saves only
    its adapter, with `base` naming what it applies to: {"checkpoint": folder} of the stage before it,
    or {"backbone": {name, path, trust_remote_code, seed}}."""
    import json
    import os

    folder = Path(folder)
    if adapter is None or base is None:
        model.save_pretrained(folder)
    else:
        from safetensors.torch import save_file

        config, weights = adapter
        folder.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(folder)
        save_file(weights, str(folder / "adapter_model.safetensors"))
        if "checkpoint" in base:  # relative, so a run folder can move
            base = {"checkpoint": os.path.relpath(Path(base["checkpoint"]).resolve(), folder.resolve())}
        (folder / BASE_FILE).write_text(json.dumps(base))
    tokenizer.save_pretrained(folder)


def folder_bytes(folder: str | Path) -> int:
    """Bytes of every file under a folder (0 when it does not exist)."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
