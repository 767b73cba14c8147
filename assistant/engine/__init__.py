"""The model side of the app: loading, the generation thread, typed events."""

import os

# transformers warns on stderr when torch is absent; only its tokenizers are used here.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from assistant.engine.engine import (ChatCache, Engine, Generation,  # noqa: E402
                                     GenerationOptions, TurnResult)
from assistant.engine.events import (Event, Failed, Finished, PromptReady,  # noqa: E402
                                     TextDelta, ThinkingDelta, ToolCallParsed, TurnStats)
from assistant.engine.model import resolve_model  # noqa: E402

__all__ = ["ChatCache", "Engine", "Event", "Failed", "Finished", "Generation",
           "GenerationOptions", "PromptReady", "TextDelta", "ThinkingDelta", "ToolCallParsed",
           "TurnResult", "TurnStats", "resolve_model"]
