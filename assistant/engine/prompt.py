"""The prompt's token ids, with control tokens only where the chat template put them.

``apply_chat_template`` renders the messages and then tokenizes the whole string with
special tokens parsed, so a message, a tool result, a tool's description or a note that
spells ``<|im_end|>\\n<|im_start|>system`` or ``</tool_response><tool_call>`` becomes
those control tokens and can forge a turn. Here every string that goes into the
template (message content, reasoning, tool-call arguments, tool schemas, dictionary
keys included) has its control-token text swapped for a private-use stand-in character
before rendering. In the rendered string, then, any control-token text was written by
the template itself: those become control tokens, and the text between them, with the
stand-ins put back, is encoded as plain text. The real model's own template is used
unchanged, and a prompt without control-token text in its content gets exactly the ids
``apply_chat_template`` gives.

Plain text is encoded by the fast token counter (``assistant.tokens``) once something
has built it. Until then, a piece that holds no control-token text at all goes through
the model's own tokenizer, which gives the same ids: a one-shot ``ask`` never pays the
tenth of a second the counter takes to build. A piece that does spell a control token
always goes through the counter, whose plain encoding cannot make one.
"""

from __future__ import annotations

import re
import threading
from itertools import takewhile
from typing import Callable, Sequence

from assistant.text import scrub
from assistant.tokens import TokenCounter, byte_decoder

# Supplementary Private Use Area-B: no tokenizer or template gives these a meaning.
_STAND_IN_TOP = 0x10FFFD
_PRIVATE = re.compile("[\U00100000-\U0010FFFD]")
_MARKERS = ("<think>", "</think>", "<tool_call>", "</tool_call>")
# Two contents that differ from their first character and that no template treats apart.
_SENTINELS = ("a", "b")


class PromptEncoder:
    """Encodes chat prompts for one tokenizer; build once per model."""

    def __init__(self, tokenizer, counter: Callable[[], TokenCounter]):
        """``counter`` builds the token counter; it is called the first time one is
        needed (see the module's docstring)."""
        self.tokenizer = tokenizer
        self._make_counter, self._counter = counter, None
        self._counter_lock = threading.Lock()
        # The tokenizer's added tokens, which tokenizer.json lists as the counter's are.
        self.special_ids: dict[str, int] = {
            token.content: i for i, token in tokenizer.added_tokens_decoder.items()}
        self._names = {i: name for name, i in self.special_ids.items()}
        # The ids whose text may open or close a block of the model's output.
        self.marker_ids = frozenset(i for name, i in self.special_ids.items()
                                    if name in _MARKERS)
        # Longest first, so "<|im_start|>" is never read as a shorter token's text.
        names = sorted(self.special_ids, key=len, reverse=True)
        self._special = re.compile("|".join(re.escape(n) for n in names))

    @property
    def counter(self) -> TokenCounter:
        """The model's fast token counter, built on first use."""
        if self._counter is None:
            with self._counter_lock:
                if self._counter is None:
                    self._counter = self._make_counter()
        return self._counter

    def count(self, text: str) -> int:
        """The tokens ``text`` takes in a prompt, as plain text; the counter is not built
        for it (see the module's docstring), so counting a tool list costs no start-up."""
        return len(self._plain(text, {}))

    def encode_plain(self, text: str) -> list[int]:
        return self.counter.encode_plain(text)

    def decode(self, ids: list[int]) -> str:
        return self.counter.decode(ids)

    def token_bytes(self, ids: Sequence[int]) -> bytes:
        """The bytes of ``ids`` as the model wrote them (ids past the vocabulary have
        none), from the model's own tokenizer."""
        decode = byte_decoder()
        out = bytearray()
        for token in ids:
            if token in self._names:
                out += self._names[token].encode("utf-8")
            elif piece := self.tokenizer.convert_ids_to_tokens(int(token)):
                out += bytes(decode[c] for c in piece if c in decode)
        return bytes(out)

    def encode(self, messages: Sequence[dict], *, tools: Sequence[dict] | None = None,
               add_generation_prompt: bool = True, enable_thinking: bool = True) -> list[int]:
        found: set[str] = set()
        used: set[str] = set()
        self._scan([messages, tools], found, used)
        stand_in = self._stand_ins(found, used)
        back = {v: k for k, v in stand_in.items()}

        def mask(text: str) -> str:
            return self._special.sub(lambda m: stand_in[m.group()], text)

        # Lone surrogates pass through rendering; encode_plain scrubs every piece after it.
        if stand_in:
            messages = _map_strings(list(messages), mask)
            tools = _map_strings(list(tools), mask) if tools else None
        rendered = self.tokenizer.apply_chat_template(
            list(messages), tools=list(tools) if tools else None, tokenize=False,
            add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking)
        ids: list[int] = []
        start = 0
        for match in self._special.finditer(rendered):
            ids += self._plain(rendered[start:match.start()], back)
            ids.append(self.special_ids[match.group()])
            start = match.end()
        ids += self._plain(rendered[start:], back)
        return ids

    def next_prefix(self, messages: Sequence[dict], role: str, *,
                    tools: Sequence[dict] | None = None,
                    enable_thinking: bool = True) -> list[int]:
        """The ids every next prompt starts with, once a message from ``role`` follows
        ``messages``: the history as the template will render it then (Qwen3's drops
        earlier turns' reasoning, and the empty think block of non-thinking mode, once a
        new user message follows), up to where that message's content begins.

        Found by rendering the history with two different sentinel messages: their
        ids agree up to the content, whatever the template does before it.
        """
        first, second = (
            self.encode([*messages, {"role": role, "content": s}], tools=tools,
                        add_generation_prompt=False, enable_thinking=enable_thinking)
            for s in _SENTINELS)
        return first[:sum(1 for _ in takewhile(lambda p: p[0] == p[1], zip(first, second)))]

    def _plain(self, text: str, back: dict[str, str]) -> list[int]:
        if not text:
            return []
        if back:
            text = _PRIVATE.sub(lambda m: back.get(m.group(), m.group()), text)
        if self._counter is None and not self._special.search(text):
            return self.tokenizer.encode(scrub(text), add_special_tokens=False)
        return self.counter.encode_plain(text)

    def _scan(self, value, found: set[str], used: set[str]) -> None:
        """Which control-token texts the strings hold, and which private-use characters."""
        if isinstance(value, str):
            if "<" in value:  # every Qwen control token starts with "<"
                found.update(self._special.findall(value))
            used.update(_PRIVATE.findall(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                self._scan(key, found, used)
                self._scan(item, found, used)
        elif isinstance(value, (list, tuple)):
            for item in value:
                self._scan(item, found, used)

    @staticmethod
    def _stand_ins(found: set[str], used: set[str]) -> dict[str, str]:
        """One private-use character per control-token text, none the input already has."""
        free = (chr(c) for c in range(_STAND_IN_TOP, 0x100000, -1) if chr(c) not in used)
        return {name: next(free) for name in sorted(found)}


def _map_strings(value, fn):
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {_map_strings(k, fn): _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_map_strings(v, fn) for v in value]
    return value
