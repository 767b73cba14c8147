"""Finding the model on disk (or fetching it once) and checking it is complete.

``mlx_lm.load`` downloads silently when given a repo id that is not local, and fails
with a traceback on a half-downloaded directory. Here the decision to use the network
is ours, and every problem becomes one line that says what to do.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

from assistant.errors import ModelError

# What mlx-lm needs from a repo: weights, configs, tokenizer files.
ALLOW_PATTERNS = ["*.json", "model*.safetensors", "*.py", "tokenizer.model", "*.tiktoken",
                  "*.txt", "*.jinja"]
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def is_repo_id(ref: str) -> bool:
    return bool(_REPO_ID.match(ref)) and not ref.startswith((".", "~"))


def resolve_model(ref: str, *, allow_download: bool = True) -> Path:
    """Return a checked local directory for ``ref`` (a directory or an HF repo id).

    A repo id is looked up in the Hugging Face cache without the network; only when it
    is absent, and downloads are allowed, is it fetched.
    """
    path = Path(ref).expanduser()
    if path.exists() or not is_repo_id(ref):
        if not path.is_dir():
            raise ModelError(f"no model directory at {path}: pass --model with a model "
                             "directory or a Hugging Face repo id")
        check_model_dir(path, ref)
        return path

    local = _cached_snapshot(ref)
    if local is None:
        if not allow_download or _hub_offline():
            raise ModelError(f"model {ref} is not downloaded; fetch it with "
                             f"'hf download {ref}' while online, or pass --model DIR")
        local = _download(ref)
    check_model_dir(local, ref)
    return local


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _cached_snapshot(repo: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, local_files_only=True, allow_patterns=ALLOW_PATTERNS))
    except Exception:  # not cached, or cached incompletely: both mean "fetch it"
        return None


def _download(repo: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, allow_patterns=ALLOW_PATTERNS))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"model {repo} is not downloaded and could not be fetched ({reason}); "
                         f"connect and try again, or fetch it with 'hf download {repo}'") from None


def check_model_dir(path: Path, ref: str) -> None:
    """Raise ``ModelError`` if ``path`` lacks a file mlx-lm needs or has a truncated one."""
    refetch = (f"fetch it again with 'hf download {ref}'" if is_repo_id(ref)
               else "copy or convert the model again")
    config = path / "config.json"
    if not config.is_file():
        raise ModelError(f"{path} has no config.json, so it is not a complete model; {refetch}")
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{config} is not valid JSON ({exc}); {refetch}") from None

    weights = sorted(path.glob("model*.safetensors"))
    if not weights:
        raise ModelError(f"{path} has no weights (model*.safetensors); {refetch}")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError, UnicodeDecodeError):
            raise ModelError(f"{index} is not a valid weight index; {refetch}") from None
        missing = sorted(s for s in shards if not (path / s).is_file())
        if missing:
            raise ModelError(f"{path} is missing weight file {missing[0]}; {refetch}")
    for file in weights:
        problem = _safetensors_problem(file)
        if problem:
            raise ModelError(f"{file} {problem}; {refetch}")

    # tokens.py counts with tokenizer.json, which every Qwen3 MLX conversion ships.
    if not (path / "tokenizer.json").is_file():
        raise ModelError(f"{path} has no tokenizer (tokenizer.json); {refetch}")


def _safetensors_problem(file: Path) -> str | None:
    """Check the header against the file size: an interrupted download is shorter."""
    size = file.stat().st_size
    try:
        with file.open("rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size:
                return "is truncated or not a safetensors file"
            header = json.loads(f.read(header_len))
    except (struct.error, ValueError, UnicodeDecodeError):
        return "is truncated or not a safetensors file"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
              default=0)
    expected = 8 + header_len + end
    if size < expected:
        return f"is truncated ({size:,} of {expected:,} bytes)"
    return None
