"""A tiny Hugging Face chat model for tests: Qwen2 architecture (Qwen3 shares it) from a config (random init), a BPE
tokenizer trained locally with `tokenizers`, a Qwen-style chat template; saved with
`save_pretrained`. Nothing is downloaded."""

from __future__ import annotations

import random
from pathlib import Path

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<answer>", "</answer>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus(seed: int = 0) -> list[str]:
    """Text with the pieces biological tasks use: residues, GO ids, numbers, English."""
    rng = random.Random(seed)
    lines = []
    for _ in range(400):
        dna = "".join(rng.choice("ACGT") for _ in range(rng.randint(8, 40)))
        protein = "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(8, 30)))
        lines += [f"Sequence: {dna}. GC content: {rng.randint(0, 100)}%.", f"Protein {protein} has GO:0003677 "
                  f"and GO:{rng.randint(0, 9999999):07d}.", "Answer with one word. The answer is DNA binding.",
                  f"RNA AUG{dna.replace('T', 'U')} codon table {rng.randint(1, 33)}"]
    return lines


def tiny_chat_model(folder: str | Path, *, vocab_size: int = 2048, hidden: int = 128, layers: int = 4,
                    seed: int = 0) -> Path:
    """Write a ~1M-parameter Qwen2 chat model with a locally trained BPE tokenizer to `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    folder = Path(folder)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # digits stay together
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, chat_template=CHAT_TEMPLATE)
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(fast), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
