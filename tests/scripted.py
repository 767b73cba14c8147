"""Scripted output through the real engine (TESTING.md §2).

A logits processor masks every logit but the next token of a script, so the real model
still runs with its KV cache, and the detokenizer, the thinking split and the
tool-call parser all see real tokens.
"""

from __future__ import annotations

import mlx.core as mx

IM_END = 151645
THINK_START = 151667
THINK_END = 151668


def force(logits: mx.array, token_id: int) -> mx.array:
    return mx.where(mx.arange(logits.shape[-1]) == token_id, mx.zeros_like(logits), -mx.inf)


class Script:
    """The model says exactly ``text`` (special tokens included), then ends its turn."""

    def __init__(self, tokenizer, text: str, end: bool = True):
        self.ids = tokenizer.encode(text, add_special_tokens=False) + ([IM_END] if end else [])
        self.calls = 0

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        token = self.ids[min(self.calls, len(self.ids) - 1)]
        self.calls += 1
        return force(logits, token)


class ThinkForever:
    """Opens ``<think>`` and never closes it; once ``</think>`` has been fed to the
    model (by someone else), says ``answer``."""

    def __init__(self, tokenizer, answer: str):
        self.filler = tokenizer.encode(" hmm", add_special_tokens=False)
        self.answer = Script(tokenizer, answer)
        self.steps = 0

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        if THINK_END in tokens.tolist():
            return self.answer(tokens, logits)
        self.steps += 1
        if self.steps == 1:
            return force(logits, THINK_START)
        return force(logits, self.filler[self.steps % len(self.filler)])
