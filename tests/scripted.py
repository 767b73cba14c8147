"""Scripted output through the real engine (TESTING.md §2).

A logits processor masks every logit but the next token of a script, so the real model
still runs with its KV cache, and the detokenizer, the thinking split and the
tool-call parser all see real tokens.
"""

from __future__ import annotations

import hashlib

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


class Rounds:
    """Scripted output over several generations: one script per generation, in order
    (the last one repeats). A script may be a callable taking the generation's number."""

    def __init__(self, tokenizer, *scripts):
        self.tokenizer, self.scripts = tokenizer, scripts
        self.round, self.step, self.last_len, self.last_token = 0, 0, None, None
        self._ids: dict[int, list[int]] = {}

    def _script(self, n: int) -> list[int]:
        if n not in self._ids:
            script = self.scripts[min(n, len(self.scripts) - 1)]
            text = script(n) if callable(script) else script
            self._ids[n] = self.tokenizer.encode(text, add_special_tokens=False) + [IM_END]
        return self._ids[n]

    def __call__(self, tokens, logits):
        # Within a generation each call sees one more token, the one forced last time; a
        # new generation starts from its prompt, which never ends with <|im_end|>.
        n = tokens.size
        if self.last_len is not None and (n != self.last_len + 1
                                          or tokens[-1].item() != self.last_token):
            self.round, self.step = self.round + 1, 0
        self.last_len = n
        script = self._script(self.round)
        self.last_token = script[min(self.step, len(script) - 1)]
        self.step += 1
        return force(logits, self.last_token)


class Steer:
    """Pushes the model toward ``text`` without forcing it: a large bonus on the script's
    next token, added after the tool-call grammar has masked the logits. A token the
    grammar forbids stays at -inf, so the model takes an allowed one instead. ``steps``
    records each token pushed and whether the grammar had masked it. Once the script is
    spent, the model chooses on its own."""

    BONUS = 50.0

    def __init__(self, tokenizer, text: str, end: bool = True):
        self.ids = tokenizer.encode(text, add_special_tokens=False) + ([IM_END] if end else [])
        self.steps: list[tuple[int, bool]] = []

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        if len(self.steps) >= len(self.ids):
            return logits
        token = self.ids[len(self.steps)]
        self.steps.append((token, logits[0, token].item() == -float("inf")))
        return logits + mx.where(mx.arange(logits.shape[-1]) == token, self.BONUS, 0.0)

    def masked(self) -> list[int]:
        return [token for token, masked in self.steps if masked]


class ByLastLine:
    """Each generation answers ``- about <hash>``, the hash of the last line of the user's
    message: the same answer for the same request whatever order requests are served in
    and whatever a KV cache held (the last line is always among the tokens fed).
    ``fail_on``: a generation whose last line holds it fails (the engine reports it)."""

    def __init__(self, tokenizer, fail_on: str | None = None):
        self.tokenizer, self.fail_on = tokenizer, fail_on
        self.reply: list[int] = []
        self.step, self.last_len, self.last_token = 0, None, None

    def __call__(self, tokens, logits):
        n = tokens.size
        if self.last_len is None or n != self.last_len + 1 or tokens[-1].item() != self.last_token:
            # A new generation: its first call sees the prompt tokens that were fed.
            text = self.tokenizer.decode(tokens.tolist())
            user = text.rsplit("<|im_end|>", 1)[0].strip()
            line = user.splitlines()[-1] if user else ""
            if self.fail_on is not None and self.fail_on in line:
                self.last_len = None
                raise RuntimeError(f"scripted failure on {line!r}")
            digest = hashlib.sha256(line.encode()).hexdigest()[:8]
            self.reply = self.tokenizer.encode(f"- about {digest}",
                                               add_special_tokens=False) + [IM_END]
            self.step = 0
        self.last_len = n
        self.last_token = self.reply[min(self.step, len(self.reply) - 1)]
        self.step += 1
        return force(logits, self.last_token)
