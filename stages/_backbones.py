"""Backbones: built-in char-level Llama models created from a config, or any causal LM by path/hub id."""

from __future__ import annotations

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


def load_backbone(name: str | None = None, path: str | None = None, *, trust_remote_code: bool = False,
                  seed: int = 0, dtype: Any = None):
    """Return (model, tokenizer) for a built-in name, or a local folder / hub id via `path`.

    Built-in backbones start untrained (seeded init): CPT is what teaches them biological text.
    """
    if path is not None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        local = Path(path).expanduser()
        if not local.exists() and (local.is_absolute() or str(path).startswith((".", "~")) or str(path).count("/") > 1):
            raise FileNotFoundError(f"`backbone.path`: the folder {str(local)!r} does not exist (give a local model "
                                    "folder, or a Hugging Face hub id such as 'org/name')")
        path = str(local) if local.exists() else path

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=dtype)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        return model, tokenizer
    if name not in BUILTIN_BACKBONES:
        raise ValueError(f"`backbone.name` must be one of {sorted(BUILTIN_BACKBONES)}, got {name!r}")
    tokenizer = char_tokenizer()
    return _builtin_model(BUILTIN_BACKBONES[name], len(tokenizer), tokenizer, seed), tokenizer


def load_checkpoint(folder: str | Path):
    """Load a (merged) stage checkpoint written by `save_checkpoint`."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    tokenizer.padding_side = "left"
    return AutoModelForCausalLM.from_pretrained(folder), tokenizer


def save_checkpoint(model, tokenizer, folder: str | Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
