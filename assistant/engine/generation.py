"""Handles on the engine's work, shared by every backend: a generation's event stream,
an idle prefill, and what one generation produced.

Nothing here needs MLX, so a backend that runs the model elsewhere (an inference server)
uses them without importing it.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from assistant.config import DIRECT_SAMPLING, THINKING_SAMPLING, Sampling
from assistant.engine.events import (Event, Failed, Finished, TextDelta, ThinkingDelta,
                                     ToolCallParsed, TurnStats)

_SOFT_SWITCH = re.compile(r"/(no_)?think\b")


def effective_thinking(messages: Sequence[dict], thinking: bool) -> bool:
    """Qwen3's soft switches: with thinking on, the latest ``/think`` or ``/no_think``
    in the user's messages decides; with it off (the hard switch), nothing turns it on."""
    if not thinking:
        return False
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            switches = _SOFT_SWITCH.findall(message["content"])
            if switches:
                return switches[-1] != "no_"
    return True


@dataclass(frozen=True)
class GenerationOptions:
    thinking: bool = True
    max_tokens: int = 4096
    thinking_budget: int | None = None
    # One preset per mode (Qwen's by default): soft switches can change the mode.
    thinking_sampling: Sampling = THINKING_SAMPLING
    direct_sampling: Sampling = DIRECT_SAMPLING
    tools: Sequence[dict] | None = None  # JSON schemas in the chat template's format
    seed: int | None = None
    # Extra mlx-lm logits processors, applied after the sampling penalties and the
    # tool-call grammar (a processor that sets a logit outright can override the grammar).
    logits_processors: Sequence[Callable] = ()
    # Inside <tool_call>, decode only calls to the tools offered, valid for their schema.
    constrain_tool_calls: bool = True


class Generation:
    """A handle on one request: iterate it for events, or cancel it."""

    def __init__(self) -> None:
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self.submitted = time.perf_counter()
        self.done = False
        # Set by a backend that can stop a request at once (an HTTP stream it closes);
        # the local engine needs none, as it checks ``cancelled`` after every token.
        self.on_cancel: Callable[[], None] | None = None

    def cancel(self) -> None:
        self._cancel.set()
        if self.on_cancel is not None:
            self.on_cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __iter__(self) -> Iterator[Event]:
        while not self.done:
            event = self._events.get()
            if isinstance(event, (Finished, Failed)):
                self.done = True
            yield event

    def result(self) -> TurnResult:
        """Wait for the end and gather everything that was streamed."""
        result = TurnResult()
        for event in self:
            result.add(event)
        return result


@dataclass
class TurnResult:
    text: str = ""
    thinking: str = ""
    tool_calls: list[ToolCallParsed] = field(default_factory=list)
    stats: TurnStats | None = None
    finish_reason: str | None = None
    error: Failed | None = None

    def add(self, event: Event) -> None:
        match event:
            case TextDelta(text):
                self.text += text
            case ThinkingDelta(text):
                self.thinking += text
            case ToolCallParsed():
                self.tool_calls.append(event)
            case TurnStats():
                self.stats = event
            case Finished(reason):
                self.finish_reason = reason
                self.text, self.thinking = self.text.rstrip(), self.thinking.strip()
            case Failed():
                self.error = event


class Prefill:
    """A handle on one idle prefill: wait for it to end, or cancel it.

    ``outcome`` is ``"done"`` (the cache holds the whole prefix), ``"yielded"`` (stopped
    for a request), ``"cancelled"``, ``"skipped"`` (nothing to do: no model, or a
    prefix longer than the context window) or ``"failed"``. ``cached`` counts the
    prefix tokens the cache already held; ``prefilled`` the tokens added here.
    """

    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._done = threading.Event()
        self.outcome = "queued"
        self.target = self.cached = self.prefilled = 0

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def finish(self, outcome: str) -> None:
        self.outcome = outcome
        self._done.set()
