"""Turning the model's streamed text into thinking, answer and tool-call events.

mlx-lm's ``TextStateMachine`` does the matching (``<think>``, ``</think>``,
``<tool_call>``, ``</tool_call>``, held back while a marker may be half-streamed);
this adds what a chat needs on top: whitespace that only separates blocks is dropped,
so an empty ``<think>\\n\\n</think>\\n\\n`` never reaches the answer, and each finished
tool-call block is parsed.

The machine matches text, so a model that spells ``<tool_call>`` in ordinary tokens (say,
echoing a tool result) would open a real call. Only a control token's own text may
match: in every other token's text ``<`` is swapped for a noncharacter before matching
and put back in what comes out.
"""

from __future__ import annotations

import json

from mlx_lm.generate import TextStateMachine, make_text_state_machine

from assistant.engine.events import TextDelta, ThinkingDelta, ToolCallParsed
from assistant.text import scrub_data

REASONING, ANSWER, TOOL = "reasoning", "normal", "tool"
_LT = "\ufdd0"  # a Unicode noncharacter: never a marker's first character
MAX_ARGUMENT_DEPTH = 32  # far past any tool schema; well inside Python's recursion limit


def initial_state(tokenizer, prompt: list[int]) -> str:
    """Whether the prompt leaves a ``<think>`` block open (the template opened it)."""
    if tokenizer.has_thinking:
        if tokenizer.rfind_think_start(prompt) > tokenizer.rfind_think_end(prompt):
            return REASONING
    return ANSWER


class OutputSplitter:
    def __init__(self, tokenizer, state: str = ANSWER):
        self._machine = make_text_state_machine(tokenizer)
        self._state = self._machine.make_state(state)
        self._parse = tokenizer.tool_parser or json.loads
        self._current = state
        self._block_start = True  # strip whitespace until the block says something
        self._tool_text = ""

    @property
    def thinking(self) -> bool:
        return self._current == REASONING

    def feed(self, text: str, *, control: bool = True) -> list:
        """``control``: the text is a control token's (or the engine's own); otherwise
        it is ordinary text and never matches a marker."""
        if not control:
            text = text.replace("<", _LT)
        self._state, segments = TextStateMachine.split(self._state, text)
        return self._events(segments)

    def finish(self) -> list:
        """Flush what was held back; a tool call left open is reported as cut off."""
        self._state, held, state = TextStateMachine.flush(self._state)
        events = self._events([(state, held)])
        if self._current == TOOL:
            raw, self._tool_text = self._tool_text, ""
            events.append(ToolCallParsed(None, None, raw, "the tool call was cut off "
                                         "before </tool_call>"))
        return events

    def _events(self, segments) -> list:
        events = []
        for state, text in segments:
            if state != self._current:
                if self._current == TOOL:
                    events.append(self._tool_call())
                self._current = state
                self._block_start = True
            text = text.replace(_LT, "<")
            if state == TOOL:
                self._tool_text += text
                continue
            if self._block_start:
                text = text.lstrip()
                self._block_start = not text
            if not text:
                continue
            if state == REASONING:
                events.append(ThinkingDelta(text))
            elif state == ANSWER:
                events.append(TextDelta(text))
        return events

    def _tool_call(self) -> ToolCallParsed:
        raw, self._tool_text = self._tool_text.strip(), ""
        return parse_tool_call(raw, self._parse)


def parse_tool_call(raw: str, parse=json.loads) -> ToolCallParsed:
    """Read one call's JSON (``{"name": ..., "arguments": {...}}``) as the model wrote it;
    what is wrong with it goes in ``error``, for the model to correct."""
    try:
        call = parse(raw)
    except ValueError as exc:
        return ToolCallParsed(None, None, raw, f"the tool call is not valid JSON: {exc}")
    except RecursionError:
        return ToolCallParsed(None, None, raw, "the tool call's JSON is nested too deeply")
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return ToolCallParsed(None, None, raw, 'a tool call needs a "name" string')
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):  # some models send the arguments JSON-encoded
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass
    if not isinstance(arguments, dict):
        return ToolCallParsed(call["name"], None, raw, '"arguments" must be a JSON object')
    if _depth(arguments) > MAX_ARGUMENT_DEPTH:
        # Kept in the history, such a call would break every later prompt's rendering.
        return ToolCallParsed(call["name"], None, raw, "the arguments are nested more than "
                              f"{MAX_ARGUMENT_DEPTH} levels deep")
    # A "\ud800" escape decodes to a lone surrogate, which nothing downstream can encode.
    return ToolCallParsed(scrub_data(call["name"]), scrub_data(arguments), raw)


def _depth(value) -> int:
    """How deeply lists and objects nest in ``value``, walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item \
            if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                deepest = max(deepest, level + 1)
                stack.append((child, level + 1))
    return max(deepest, 1)
