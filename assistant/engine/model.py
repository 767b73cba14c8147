"""Finding the model on disk (or fetching it once) and checking it is complete.

``mlx_lm.load`` downloads silently when given a repo id that is not local, and fails
with a traceback on a half-downloaded directory. Here the decision to use the network
is ours, every problem becomes one line that says what to do, and a download reports
its bytes to whoever shows them (``progress``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from assistant.errors import ModelError

# progress(done_bytes, total_bytes): bytes of the model written so far, of those known.
Progress = Callable[[int, int], None]

# What mlx-lm needs from a repo: weights, configs, tokenizer files.
ALLOW_PATTERNS = ["*.json", "model*.safetensors", "*.py", "tokenizer.model", "*.tiktoken",
                  "*.txt", "*.jinja"]
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def download_reporter(name: str, show: Callable[[str], None], every: float = 0.1) -> Progress:
    """A ``progress`` callback that hands ``show`` one line at most every ``every``
    seconds, and always the last: "downloading NAME: 12.3 MB of 350.0 MB (3%)"."""
    shown = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - shown[0] < every and done < total:
            return
        shown[0] = now
        percent = f" ({100 * done // total}%)" if total else ""
        show(f"downloading {name}: {_size(done)} of {_size(total)}{percent}")

    return progress


def _size(n: float) -> str:
    """Bytes as a person reads them: 512 bytes, 12.3 MB, 1.2 GB."""
    if n < 1000:
        return f"{n:,.0f} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def is_repo_id(ref: str) -> bool:
    return bool(_REPO_ID.match(ref)) and not ref.startswith((".", "~"))


def resolve_model(ref: str, *, allow_download: bool = True,
                  progress: Progress | None = None) -> Path:
    """Return a checked local directory for ``ref`` (a directory or an HF repo id).

    A repo id is looked up in the Hugging Face cache without the network; only when it
    is absent, and downloads are allowed, is it fetched. While it downloads,
    ``progress(done_bytes, total_bytes)`` is called from the download threads as bytes
    arrive (``total_bytes`` grows as each file's size becomes known); it is never called
    when nothing is downloaded.
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
        local = _download(ref, progress)
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


def _download(repo: str, progress: Progress | None = None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        # The library's own bars would write to stderr (over the chat app, into pipes):
        # bytes go to ``progress`` only, if anyone shows them.
        bars = _progress_bars(progress, _download_size(repo) if progress else 0)
        return Path(snapshot_download(repo, allow_patterns=ALLOW_PATTERNS, tqdm_class=bars))
    except Exception as exc:
        raise ModelError(f"cannot download {repo}: {_why(exc)}. Connect and retry, or pass "
                         "--model DIR with a local MLX model (a test model: python "
                         "scripts/make_fixture_model.py DIR)") from None


def _why(exc: BaseException) -> str:
    """What went wrong with a download, in a few words, from the error's whole chain."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    chain = []
    while exc is not None and len(chain) < 20:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for err in chain:
        if isinstance(err, GatedRepoError):
            return "the repo is gated (accept its terms on the Hub, then hf auth login)"
        if isinstance(err, RepositoryNotFoundError):
            return "no such repo on the Hub, or it is private (check the name)"
        if isinstance(err, socket.gaierror) or "Name or service not known" in str(err) \
                or "nodename nor servname" in str(err) \
                or "Temporary failure in name resolution" in str(err):
            return "no network (name lookup failed)"
        if isinstance(err, ConnectionRefusedError) or "Connection refused" in str(err):
            return f"no network ({_endpoint()} refused the connection)"
        if "timed out" in str(err).lower() or type(err).__name__.endswith("Timeout") \
                or type(err).__name__ == "TimeoutException":
            return f"no network ({_endpoint()} did not answer in time)"
        if isinstance(err, HfHubHTTPError) and err.response is not None:
            return f"the Hub answered HTTP {err.response.status_code}"
        if isinstance(err, OSError) and err.errno is not None and err.strerror:
            return f"{err.strerror.lower()} ({getattr(err, 'filename', None) or 'download'})"
    first = chain[0]
    text = str(first).splitlines()[0] if str(first) else ""
    return f"{type(first).__name__}: {text}" if text else type(first).__name__


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT.split("://", 1)[-1].rstrip("/")


def _download_size(repo: str) -> int:
    """The bytes a download of ``repo`` writes, from its file list (one request), so the
    percentage shown does not start over as each file begins; 0 if unknown. An error
    here is left for the download itself to meet and report."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    try:
        files = [f for f in HfApi().list_repo_tree(repo, recursive=True)
                 if isinstance(f, RepoFile)]
    except Exception:
        return 0
    return sum(f.size or 0 for f in filter_repo_objects(files, allow_patterns=ALLOW_PATTERNS,
                                                        key=lambda f: f.path))


def _progress_bars(progress: Progress | None, expected: int):
    """A tqdm class for ``snapshot_download`` that draws nothing and reports the bytes
    written to ``progress`` (if any), of ``expected`` (or of what the files announce, if
    more).

    ``snapshot_download`` sums every file's bytes into one bar, named
    ``huggingface_hub.snapshot_download``; the other bars (files done, bytes on the
    wire) are not reported."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    lock = threading.Lock()

    class Reporting(hf_tqdm):
        def __init__(self, *args, **kwargs):
            self._reports = kwargs.get("name") == "huggingface_hub.snapshot_download"
            kwargs["disable"] = True  # nothing drawn: the caller shows the bytes
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            with lock:  # reported under the lock too: a count never goes back
                self.n += n or 0
                if self._reports and self.n and progress is not None:
                    progress(self.n, max(expected, self.total or 0, self.n))

        def refresh(self, *args, **kwargs):  # the total grows as each file starts
            pass

    return Reporting


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
