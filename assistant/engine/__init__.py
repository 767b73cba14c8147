"""The model side of the app: loading, the generation thread, typed events.

The names below load on first use: finding a model (``engine.model``) or reading the
events needs neither mlx nor mlx-lm, which take a second or more to import.
"""

import importlib
import os

# transformers warns on stderr when torch is absent; only its tokenizers are used here.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

_WHERE = {
    "ChatCache": "engine", "Engine": "engine", "GenerationOptions": "generation",
    "Generation": "generation", "TurnResult": "generation", "Prefill": "generation",
    "open_engine": "backends", "is_remote": "backends",
    "Event": "events", "Failed": "events", "Finished": "events", "PromptReady": "events",
    "TextDelta": "events", "ThinkingDelta": "events", "ToolCallParsed": "events",
    "TurnStats": "events",
    "resolve_model": "model",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
