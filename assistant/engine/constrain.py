"""Tool calls the model cannot get wrong: an llguidance grammar inside ``<tool_call>``.

A logits processor with a lazy start. Outside a tool call it changes two logits at most:
inside ``<think>`` the model cannot open ``<tool_call>``. Once it has opened one, every
token is masked to the grammar of ``{"name": <a tool offered this turn>, "arguments":
<that tool's input schema>}`` and the closing ``</tool_call>``; then it is free again,
so several calls in one reply stay possible.

mlx-lm pipelines decoding: the processor for token k is called while token k-1 is
still being computed. Outside a call, the tokens up to k-2 are known from the engine
(``observe``) and token k-1 is handled with lazy ``mx`` operations (if it is
``<tool_call>``, token k is the grammar's one possible first token), so free text never
waits.
Inside a call the grammar needs token k-1: the processor first starts the model on
token k (``mx.async_eval``), then waits for token k-1 and computes the mask on the CPU
while the model runs, so the mask costs only what exceeds a forward pass.

A call must also end before the token limit does, or it is cut off and lost. When the
tokens left are few (``CLOSING_TOKENS``), the mask keeps, wherever the grammar allows
one, only tokens that close what is open (a string's quote; outside strings ``}``,
``]``, the newline, ``</tool_call>``), so the call ends at the nearest point where it
is complete and valid.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import lru_cache
from typing import Callable

import mlx.core as mx
import numpy as np

from assistant.tokens import TokenCounter

log = logging.getLogger(__name__)

# The chat template's tojson writes exactly these separators and no other whitespace;
# a call the grammar allows re-renders token for token, so the KV cache stays valid.
# (With llguidance's flexible whitespace a random model fills objects with blanks.)
JSON_STYLE = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}
TOOL_CALL, TOOL_CALL_END, THINK, THINK_END = ("<tool_call>", "</tool_call>", "<think>",
                                              "</think>")
# Enough to close strings, arrays and objects a few levels deep and write the keys a
# schema still requires; far below any answer's token limit.
CLOSING_TOKENS = 32


class ToolGrammar:
    """The grammar of one call to any of the tools offered, for one tokenizer."""

    def __init__(self, tools: list[dict], vocabulary: Vocabulary, end_id: int,
                 first_token: int):
        import llguidance

        self.vocabulary = vocabulary
        self.degraded: list[str] = []  # tools whose schema llguidance cannot express
        rules = []
        for i, tool in enumerate(tools):
            function = tool.get("function", tool)
            name = function.get("name", "")
            rule = f"tool{i}: %json {json.dumps(_call_schema(name, function.get('parameters')))}"
            error = _grammar_error(f"start: tool{i}\n{rule}\n", vocabulary.lltokenizer)
            if error:
                log.warning("tool %r: its input schema cannot be enforced (%s); only its "
                            "name and a JSON object are", name, error)
                self.degraded.append(name)
                rule = f"tool{i}: %json {json.dumps(_call_schema(name, None))}"
            rules.append(rule)
        choices = " | ".join(f"tool{i}" for i in range(len(tools)))
        # The template writes "<tool_call>\n{...}\n</tool_call>".
        self.lark = (f"%llguidance {{}}\nstart: \"\\n\" call \"\\n\" <[{end_id}]>\n"
                     f"call: {choices}\n" + "\n".join(rules) + "\n")
        self.grammar = llguidance.LLMatcher.grammar_from_lark(self.lark)
        # The first token's mask is the same for every call: applied lazily in free text.
        first = allocate_bitmask(vocabulary.size)
        fill_bitmask(self.matcher(), first)
        (first_tokens,) = np.nonzero(_allowed(first, vocabulary.size))
        # The grammar starts with a newline: one token only, so free text can apply the
        # first mask as a boost on one logit rather than an operation on all of them.
        if list(first_tokens) != [first_token]:
            raise ValueError("the tool-call grammar must start with one fixed token")

    def matcher(self):
        import llguidance

        matcher = llguidance.LLMatcher(self.vocabulary.lltokenizer, self.grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(f"the tool-call grammar is invalid: {matcher.get_error()}")
        return matcher


def _grammar_error(lark: str, lltokenizer) -> str | None:
    import llguidance

    try:
        grammar = llguidance.LLMatcher.grammar_from_lark(lark)
        error = llguidance.LLMatcher.validate_grammar(grammar, lltokenizer)
    except (ValueError, TypeError, RuntimeError) as exc:  # a schema it cannot even read
        error = str(exc) or type(exc).__name__
    return error.strip().splitlines()[0] if error else None


def _call_schema(name: str, parameters: dict | None) -> dict:
    """The call's JSON; ``parameters`` None: any object as the arguments."""
    if not isinstance(parameters, dict):
        arguments = {"type": "object"}
    elif (arguments := dict(parameters)).get("type") == "object" and \
            "additionalProperties" not in arguments:
        # The model should not invent arguments: the schema's own keys only.
        arguments["additionalProperties"] = False
    return {"type": "object", "properties": {"name": {"const": name}, "arguments": arguments},
            "required": ["name", "arguments"], "additionalProperties": False,
            "x-guidance": JSON_STYLE}


# -- masks ---------------------------------------------------------------------------

def allocate_bitmask(vocab: int) -> np.ndarray:
    return np.full((vocab + 31) // 32, -1, dtype=np.int32)


def _allowed(bitmask: np.ndarray, vocab: int) -> np.ndarray:
    return np.unpackbits(bitmask.view(np.uint8), bitorder="little")[:vocab].astype(bool)


def fill_bitmask(matcher, bitmask: np.ndarray) -> None:
    """The tokens ``matcher`` allows next, one bit each (llguidance's layout)."""
    matcher.unsafe_compute_mask_ptr(bitmask.ctypes.data, bitmask.nbytes)


_BITS = mx.array(np.arange(32, dtype=np.int32))  # data, not a lazy op on this thread


def unpack(bitmask: mx.array, vocab: int) -> mx.array:
    """A bitmask as booleans over the vocabulary, with ``mx`` ops (any device)."""
    return (((bitmask[:, None] >> _BITS) & 1).reshape(-1)[:vocab]).astype(mx.bool_)


def apply_bitmask(logits: mx.array, bitmask: np.ndarray) -> mx.array:
    """Disallowed tokens to -inf: llguidance's Metal kernel on Apple GPUs, plain ``mx``
    ops elsewhere (the CPU backend has no custom kernels)."""
    if _metal():
        from llguidance.mlx import apply_token_bitmask

        return apply_token_bitmask(logits, bitmask)
    allowed = unpack(mx.array(bitmask), logits.shape[-1])
    return mx.where(allowed, logits, -mx.inf)


@lru_cache(maxsize=1)
def _metal() -> bool:
    return mx.metal.is_available() and mx.default_device() == mx.gpu


# -- per-model pieces ----------------------------------------------------------------

_CLOSERS = b'"}]\n'


class Vocabulary:
    """What the grammar needs to know about the model's tokens. Built once per model, in
    one to two seconds for Qwen3's 151k tokens (llguidance's token trie, most of it, holds
    Python's lock): the engine builds it right after loading when tools are expected."""

    def __init__(self, counter, size: int):
        from llguidance.tiktoken import lltokenizer_from_encoding

        self.size = size
        encoding = counter.encoding
        self.lltokenizer = lltokenizer_from_encoding(
            encoding, n_vocab=size, eos_token=counter.special_tokens["<|im_end|>"])
        # Token classes for closing a call near the token limit.
        self.closes_string = np.zeros(size, dtype=bool)  # '"' then only closers
        self.closes_value = np.zeros(size, dtype=bool)  # only '}', ']', newline
        self.token_bytes: list[bytes] = [b""] * size
        for token in range(min(size, encoding.n_vocab)):
            try:
                text = encoding.decode_single_token_bytes(token)
            except KeyError:  # ids with no token (the model's vocabulary is padded)
                continue
            self.token_bytes[token] = text
            if text and not text.strip(_CLOSERS):
                self.closes_string[token] = text[:1] == b'"'
                self.closes_value[token] = b'"' not in text
        end = counter.special_tokens[TOOL_CALL_END]
        self.closes_value[end] = True
        self.special = counter.special_tokens


class Grammars:
    """Grammars by the tools offered (a turn offers the same tools round after round)."""

    def __init__(self, counter: Callable[[], TokenCounter], vocab: int,
                 special: dict[str, int], first_token: int):
        """``counter`` gives the token counter, which is built only when a grammar is
        first needed. ``special``: the control tokens' ids; ``first_token``: the id of
        "\n", which every call starts with (the template's "<tool_call>\n"). Both come
        from the model's tokenizer, so a turn that opens no call never builds the counter.
        """
        self._counter, self.vocab = counter, vocab
        self.special, self.first_token = special, first_token
        self._vocabulary: Vocabulary | None = None
        self._cached: dict[str, ToolGrammar] = {}

    @property
    def counter(self) -> TokenCounter:
        return self._counter()

    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            self._vocabulary = Vocabulary(self.counter, self.vocab)
        return self._vocabulary

    def for_tools(self, tools) -> ToolGrammar:
        key = hashlib.sha256(json.dumps(list(tools), sort_keys=True).encode()).hexdigest()
        if key not in self._cached:
            if len(self._cached) > 32:
                self._cached.clear()
            self._cached[key] = ToolGrammar(list(tools), self.vocabulary(),
                                            self.special[TOOL_CALL_END], self.first_token)
        return self._cached[key]


# -- the logits processor ------------------------------------------------------------

class ToolCallGuard:
    """The logits processor for one generation. The engine calls ``begin`` before each
    ``stream_generate`` and ``observe`` with each token it yields."""

    def __init__(self, grammars: Grammars, tools, reasoning: bool):
        # The grammar is built when the model first opens a call: a reply without one
        # never waits for it (the free-text path needs only the ids below).
        self.grammars, self.tools = grammars, list(tools)
        self.grammar: ToolGrammar | None = None
        special = grammars.special
        self.tool_call, self.think, self.think_end = (special[TOOL_CALL], special[THINK],
                                                      special[THINK_END])
        self.reasoning = reasoning
        self.matcher = None  # set while a call is open
        self.failed: str | None = None  # why a call left the grammar (a processor after
        # this one forced a token it did not allow)
        self.last_call_constrained = False  # the latest call kept to the grammar throughout
        self._bitmask = allocate_bitmask(grammars.vocab)
        self._in_string = self._escaped = self._closing = False
        self._feed = self._budget = 0
        self._generated: list[int] = []
        self._observed = 0

    def begin(self, feed_length: int, budget: int, *, reasoning: bool | None = None) -> None:
        """A new ``stream_generate``: its prompt's length and the tokens it may produce."""
        self._feed, self._budget, self._generated, self._observed = feed_length, budget, [], 0
        if reasoning is not None:
            self.reasoning = reasoning

    def observe(self, token: int) -> None:
        self._observed += 1
        if self._observed > len(self._generated):  # not already learnt inside a call
            self._advance(token)

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        pending = tokens.shape[0] - self._feed - len(self._generated)
        if pending and self.matcher is not None:
            mx.async_eval(logits)  # the model runs on while the grammar waits and works
            self._advance(int(tokens[-1].item()))
            pending = 0
        if self.matcher is not None:
            return self._constrain(logits, self._budget - (tokens.shape[0] - self._feed))
        if not pending:  # the first token of a stream_generate: its prompt is all known
            reasoning, opened = self.reasoning, False
        else:  # free text: token k-1 is not known yet, so decide lazily
            last = tokens[-1]
            reasoning = (last == self.think) | ((last != self.think_end) & self.reasoning)
            opened = last == self.tool_call
        # Two logits change, never the whole row: no call opens while the model reasons,
        # and right after <tool_call> the grammar's one first token is certain (a logit
        # of 1e9 leaves every other token a probability of exactly zero).
        if reasoning is not False:
            logits[..., self.tool_call] = mx.where(reasoning, -mx.inf,
                                                   logits[..., self.tool_call])
        if opened is not False:
            first = self.grammars.first_token
            logits[..., first] = mx.where(opened, 1e9, logits[..., first])
        return logits

    def _constrain(self, logits: mx.array, left: int) -> mx.array:
        fill_bitmask(self.matcher, self._bitmask)
        bitmask = self._bitmask
        if left <= CLOSING_TOKENS:
            bitmask = self._closing_mask(bitmask)
        return apply_bitmask(logits, bitmask)

    def _closing_mask(self, bitmask: np.ndarray) -> np.ndarray:
        vocabulary = self.grammar.vocabulary
        allowed = _allowed(bitmask, vocabulary.size)
        closers = (vocabulary.closes_string if self._in_string and not self._escaped
                   else vocabulary.closes_value)
        closing = allowed & closers
        if not closing.any():
            return bitmask
        self._closing = True
        packed = np.packbits(np.pad(closing, (0, bitmask.size * 32 - closing.size)),
                             bitorder="little")
        return packed.view(np.int32)

    def _advance(self, token: int) -> None:
        self._generated.append(token)
        if self.matcher is not None:
            self.matcher.consume_token(token)
            self._track_strings(token)
            if self.matcher.is_error():
                self.failed = (self.matcher.get_error().strip().splitlines() or ["?"])[0]
                log.warning("a tool call left its grammar: %s", self.failed)
                self.matcher, self.last_call_constrained = None, False
            elif self.matcher.is_stopped():
                self.matcher = None
                if self._closing:
                    log.info("a tool call was closed early: the token limit was near")
        elif token == self.tool_call and not self.reasoning:
            self.matcher = self._open()
            self.last_call_constrained = self.matcher is not None
            self._in_string = self._escaped = self._closing = False
        elif token == self.think:
            self.reasoning = True
        elif token == self.think_end:
            self.reasoning = False

    def _open(self):
        try:
            if self.grammar is None:
                self.grammar = self.grammars.for_tools(self.tools)
            return self.grammar.matcher()
        except Exception as exc:  # llguidance refused the whole tool set
            self.failed = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("a tool call runs unconstrained: %s", self.failed)
            return None

    def _track_strings(self, token: int) -> None:
        for byte in self.grammar.vocabulary.token_bytes[token]:
            if self._escaped:
                self._escaped = False
            elif byte == 0x5C and self._in_string:  # backslash
                self._escaped = True
            elif byte == 0x22:  # quote
                self._in_string = not self._in_string

