"""Prefill in idle time: bring a chat's KV cache up to what its next prompt starts with.

Between a chat's requests the generation thread is idle: while the user types, and while
a tool call runs. The next prompt's start is known by then (the history as the template
will render it next time, see ``PromptEncoder.next_prefix``), so the thread prefills it
and the request that follows prefills only its new message. Idle work must never hold up
a real request: it runs in short chunks and stops between any two of them as soon as
anything else is queued, leaving the cache consistent (its token list is exactly what
its KV entries hold) for the request to carry on from.
"""

from __future__ import annotations

import time
from typing import Callable

import mlx.core as mx
from mlx_lm.generate import generation_stream

from assistant.engine.generation import Prefill  # noqa: F401  (its handle, re-exported)

# A chunk is sized to take about this long, so a request queued behind idle work waits
# about this long at most, on a fast machine or a slow one (where even a few tokens take
# longer, the smallest chunk bounds the wait).
CHUNK_SECONDS = 0.05
FIRST_CHUNK = 16
MIN_CHUNK, MAX_CHUNK = 4, 1024
PREFILL_STEP = 2048  # stream_generate's prefill_step_size


def prefill_chunks(model, chat, target: list[int], *, stop: Callable[[], bool],
                   progress: Callable[[int, int], None] | None = None,
                   chunk: int | None = None) -> str:
    """Extend ``chat`` (a ChatCache) to hold ``target``, chunk by chunk, until done or
    ``stop()`` says a real request is waiting; return ``"done"`` or ``"yielded"``.
    ``chunk``: a fixed chunk size, for prefill that a request waits for anyway (mlx-lm
    prefills in chunks of ``PREFILL_STEP``); by default chunks are sized by time.

    The model call and the evaluation are those of mlx-lm's own prefill in
    ``generate_step``, on the same stream; the token list grows only once a chunk's KV
    entries are computed.
    """
    done, size = len(chat.tokens), chunk or FIRST_CHUNK
    with mx.stream(generation_stream):
        while done < len(target):
            if stop():
                return "yielded"
            piece = target[done:done + size]
            started = time.perf_counter()
            model(mx.array(piece)[None], cache=chat.kv)
            mx.eval([c.state for c in chat.kv])
            chat.tokens.extend(piece)
            done += len(piece)
            if not chunk:
                rate = len(piece) / max(time.perf_counter() - started, 1e-6)
                size = max(MIN_CHUNK, min(MAX_CHUNK, int(rate * CHUNK_SECONDS)))
            if progress is not None:
                progress(done, len(target))
        mx.clear_cache()
    return "done"
