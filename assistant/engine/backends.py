"""Choosing the backend: the model in this process, or an inference server.

``--model`` (or ``model`` in the settings) names either a model (a directory or a
Hugging Face repo id: the MLX engine in this process) or a server's address
(``http://HOST:PORT/v1``: ``RemoteEngine``). Every front end opens its engine here.
"""

from __future__ import annotations

import os
from pathlib import Path

from assistant.config import Settings, paths
from assistant.errors import ModelError

__all__ = ["is_remote", "open_engine"]

REMOTE_SCHEMES = ("http://", "https://")


def is_remote(model: str | None) -> bool:
    """Whether ``model`` names a server's address rather than a model. (The server's
    client, ``remote.py``, is imported only when it does.)"""
    return bool(model) and model.strip().lower().startswith(REMOTE_SCHEMES)


def open_engine(model: str | None, settings: Settings, *, tool_calls: bool = False,
                adapter: Path | str | None = None, progress=None):
    """The engine for ``model`` (the settings' model if None), loading in the background:
    call ``wait_loaded()`` before the first request. ``tool_calls``: see ``Engine``;
    ``adapter``: a LoRA/DoRA folder (the settings' ``adapter`` if None); ``progress``:
    called as ``progress(done_bytes, total_bytes)`` while the model downloads, if it
    must (see ``resolve_model``). The download happens here, before this returns."""
    spec = str(model or settings.model)
    adapter = adapter or settings.adapter
    if is_remote(spec):
        if adapter:
            raise ModelError("adapters are local-only: load it on the server instead (e.g. "
                             f"mlx_lm.server --adapter-path {adapter}), or use a local --model")
        from assistant.engine.remote import RemoteEngine

        return RemoteEngine(spec, model=settings.remote_model, api_key=_api_key(settings),
                            api_key_env=settings.api_key_env,
                            context_limit=settings.context_limit,
                            timeout=settings.request_timeout)
    from assistant.engine.engine import Engine
    from assistant.engine.model import resolve_model

    turns = paths().cache_dir / "system-turns" if settings.keep_system_turns else None
    return Engine(resolve_model(spec, progress=progress), context_limit=settings.context_limit,
                  tool_calls=tool_calls, adapter=adapter, system_turns=turns)


def _api_key(settings: Settings) -> str | None:
    name = settings.api_key_env
    if not name:
        return None
    key = os.environ.get(name, "").strip()
    if not key:
        raise ModelError(f"api_key_env names ${name}, which is not set: export {name} with "
                         "the server's API key")
    return key
