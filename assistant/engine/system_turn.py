"""The system turn's KV cache, kept on disk from one run to the next.

Every ``assistant ask`` with tools starts with the same system turn: the system prompt and
some 900 tokens of tool definitions. Prefilling it is most of what ``ask`` adds on top of
raw mlx-lm, and a new chat in the app pays it again. The first run that prefills a
system turn saves its KV cache (mlx-lm's ``save_prompt_cache``); a later prompt that
starts with the same ids, on the same model, loads it and prefills only what follows.

A file is named by a hash of the model's identity and the turn's ids, and holds both,
which are compared before use: a file for another model or another turn is never used,
and a damaged one is deleted and the turn prefilled as if there were none. The newest
``KEEP`` files are kept (loading one makes it the newest); a write goes to a temporary
file first, so a crash or a second process never leaves half a file under a real name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Sequence

import mlx.core as mx
from mlx_lm.models.cache import (KVCache, load_prompt_cache, make_prompt_cache,
                                  save_prompt_cache)

log = logging.getLogger(__name__)

# A shorter system turn is prefilled faster than its file is read and checked.
MIN_TOKENS = 256
# A file holds about 115 KB per token for Qwen3-0.6B: four 1,000-token turns are 460 MB.
KEEP = 4
FORMAT = "1"
STALE_SECONDS = 600  # a temporary file this old was left by a run that died


def system_turn_length(prompt: Sequence[int], special_ids: dict[str, int],
                       token_bytes) -> int:
    """How many of ``prompt``'s ids are its system turn (``<|im_start|>system…`` up to
    the next ``<|im_start|>``), or 0 when it has none."""
    start = special_ids.get("<|im_start|>")
    if start is None or not prompt or prompt[0] != start:
        return 0
    try:
        end = prompt.index(start, 1)
    except ValueError:
        return 0
    return end if token_bytes(prompt[1:3]).startswith(b"system") else 0


class SystemTurnStore:
    """The saved system turns of one model, in ``folder``."""

    def __init__(self, folder: Path, identity: Sequence[str]):
        self.folder = folder
        self._identity = json.dumps(list(identity))

    def _file(self, tokens: Sequence[int]) -> Path:
        digest = hashlib.sha256(self._identity.encode())
        digest.update(json.dumps(list(tokens)).encode())
        return self.folder / f"{digest.hexdigest()[:32]}.safetensors"

    def load(self, model, tokens: Sequence[int]) -> list | None:
        """The KV cache holding ``tokens``, evaluated, or None if none is saved."""
        path = self._file(tokens)
        if not path.is_file():
            return None
        try:
            kv, meta = load_prompt_cache(str(path), return_metadata=True)
            expected = make_prompt_cache(model)
            if (meta.get("format") != FORMAT or meta.get("identity") != self._identity
                    or json.loads(meta.get("tokens", "null")) != list(tokens)
                    or [type(c) for c in kv] != [type(c) for c in expected]
                    or any(c.offset != len(tokens) for c in kv)):
                raise ValueError("it holds another turn")
            mx.eval([c.state for c in kv])
        except Exception as exc:  # damaged, truncated, or not ours: prefill instead
            log.warning("ignoring the saved system turn %s: %s", path.name, exc)
            with suppress(OSError):  # a read-only folder: it stays, and is refused again
                path.unlink(missing_ok=True)
            return None
        with suppress(OSError):  # gone meanwhile (another run kept only its newest)
            os.utime(path)  # the newest again: kept the longest
        return kv

    def save(self, kv: list, tokens: Sequence[int]) -> None:
        """Keep ``kv`` (which holds exactly ``tokens``); a failure only loses the saving."""
        path = self._file(tokens)
        meta = {"format": FORMAT, "identity": self._identity,
                "tokens": json.dumps(list(tokens))}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp.safetensors")
            os.close(fd)
            try:
                save_prompt_cache(tmp, _held(kv), meta)
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
            self._forget_oldest()
        except Exception as exc:  # a full or read-only disk: the next run prefills again
            log.warning("cannot save the system turn in %s: %s", self.folder, exc)

    def _forget_oldest(self) -> None:
        """Keep the newest ``KEEP`` files, and no temporary file a crash left behind."""
        files = sorted(self.folder.glob("*.safetensors"), key=_mtime, reverse=True)
        now = time.time()
        for old in files:
            if old.name.endswith(".tmp.safetensors"):
                if now - _mtime(old) > STALE_SECONDS:  # not one being written now
                    old.unlink(missing_ok=True)
        for old in [f for f in files if not f.name.endswith(".tmp.safetensors")][KEEP:]:
            old.unlink(missing_ok=True)  # (an OSError here is caught by ``save``)


def _held(kv: list) -> list:
    """The caches with only the positions they hold: a ``KVCache``'s state is its whole
    buffer, which grows 256 positions at a time (up to 255 of them unused)."""
    out = []
    for cache in kv:
        if type(cache) is KVCache and cache.keys is not None \
                and cache.offset < cache.keys.shape[2]:
            held = KVCache()
            held.keys = cache.keys[..., :cache.offset, :]
            held.values = cache.values[..., :cache.offset, :]
            held.offset = cache.offset
            cache = held
        out.append(cache)
    return out


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
