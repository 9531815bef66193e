"""Chat formatting: prompts as conversations when the tokenizer has a chat template (`data.chat`).

SFT trains on TRL's conversational prompt-completion rows (loss on the assistant turn only), GRPO
samples from conversational prompts, and evaluation generates from the same templated prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class ChatFormat:
    """How a prompt becomes a conversation: an optional system message and the template's switches."""

    system: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def messages(self, prompt: str) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [{"role": "user", "content": prompt}]

    def prompt_text(self, tokenizer, prompt: str) -> str:
        """The templated prompt, ending where the assistant's answer starts (what evaluation feeds `generate`)."""
        return tokenizer.apply_chat_template(self.messages(prompt), tokenize=False, add_generation_prompt=True,
                                             **self.kwargs)

    def sft_row(self, prompt: str, answer: str) -> dict[str, Any]:
        return {"prompt": self.messages(prompt), "completion": [{"role": "assistant", "content": answer}],
                "chat_template_kwargs": dict(self.kwargs)}


def chat_format(tokenizer, data_config) -> ChatFormat | None:
    """The chat format a trial uses (None: plain prompt strings, as for the built-in char-level models)."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    mode = data_config.chat
    if mode == "off" or (mode == "auto" and not has_template):
        return None
    if not has_template:
        raise ConfigError("data.chat", "is 'on' but the tokenizer has no chat template (set `data.chat: auto` or "
                          "give a backbone whose tokenizer has one)")
    return ChatFormat(system=data_config.system_prompt, kwargs=dict(data_config.template_kwargs or {}))
