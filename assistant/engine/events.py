"""What the engine streams back for one generation: frozen, typed events.

Every front end (CLI, TUI, benchmarks, tests) reads the same stream. A generation
that runs starts with ``PromptReady`` and always ends with exactly one ``Finished`` or
``Failed``; ``TurnStats`` comes just before ``Finished``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class PromptReady:
    """The prompt is templated and matched against the cache; prefill starts. Lets a
    front end show the context in use while the answer streams, not only at its end."""

    prompt_tokens: int
    cached_tokens: int


@dataclass(frozen=True)
class ThinkingDelta:
    """A piece of the model's reasoning (the text inside ``<think>``)."""

    text: str


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer."""

    text: str


@dataclass(frozen=True)
class ToolCallParsed:
    """One ``<tool_call>`` block. ``error`` is set when its JSON could not be read."""

    name: str | None
    arguments: dict[str, Any] | None
    raw: str
    error: str | None = None
    constrained: bool = False  # decoded under the tool-call grammar


@dataclass(frozen=True)
class TurnStats:
    ttft_s: float  # from the request to the first generated token
    prompt_tokens: int  # the whole templated prompt
    cached_tokens: int  # of which reused from the conversation's KV cache
    prompt_tps: float  # prefill speed over the tokens actually prefilled
    generated_tokens: int  # thinking and answer together
    thinking_tokens: int
    decode_tps: float
    peak_memory_gb: float
    thinking_mode: bool  # the mode in effect, soft switches included

    @property
    def prefilled_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens


@dataclass(frozen=True)
class Finished:
    reason: Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class Failed:
    """The generation could not run or broke off. ``kind`` says whether the user can act
    on it: ``"context"`` (the prompt does not fit the context window), ``"model"`` (the
    model could not be loaded), or ``"error"`` (anything else)."""

    error: str
    kind: Literal["context", "model", "error"] = "error"


Event = PromptReady | ThinkingDelta | TextDelta | ToolCallParsed | TurnStats | Finished | Failed
