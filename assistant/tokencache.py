"""The token counter's tables, kept between runs so ``tokenizer.json`` is parsed once.

mlx-lm's loader already parses the model's 11 MB ``tokenizer.json`` (through
transformers); parsing it a second time for the counter's ranks cost more than half a
second of every start. The ranks, the split pattern and the special tokens are kept in
a compact binary file in the cache folder, named after the tokenizer file's path, size
and modification time. The file carries a SHA-256 of its contents: a damaged or foreign
file is never trusted, and the tables are read from ``tokenizer.json`` again.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from array import array
from contextlib import suppress
from itertools import accumulate
from pathlib import Path

MAGIC = b"assistant token tables\n"
FORMAT = 1


class Tables:
    """What a ``TokenCounter`` is built from."""

    def __init__(self, ranks: dict[bytes, int], special: dict[str, int], pattern: str,
                 nfc: bool):
        self.ranks, self.special, self.pattern, self.nfc = ranks, special, pattern, nfc


def cache_file(cache_dir: Path, tokenizer_json: Path) -> Path | None:
    try:
        info = tokenizer_json.stat()
    except OSError:
        return None
    identity = f"{FORMAT}\0{tokenizer_json.resolve()}\0{info.st_size}\0{info.st_mtime_ns}"
    name = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return cache_dir / f"{name}.bin"


def read(path: Path) -> Tables | None:
    """The tables in ``path``, or None if it is absent, damaged or not ours."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        if not data.startswith(MAGIC):
            return None
        (size,) = struct.unpack_from("<Q", data, len(MAGIC))
        start = len(MAGIC) + 8
        header = json.loads(data[start:start + size].decode("utf-8"))
        body = memoryview(data)[start + size:]
        if (header.get("format") != FORMAT or header.get("byteorder") != sys.byteorder
                or hashlib.sha256(body).hexdigest() != header.get("sha256")):
            return None
        count = header["count"]
        ranks, lengths = array("I"), array("H")
        ranks.frombytes(body[:count * ranks.itemsize])
        body = body[count * ranks.itemsize:]
        lengths.frombytes(body[:count * lengths.itemsize])
        blob = bytes(body[count * lengths.itemsize:])
        if len(ranks) != count or len(lengths) != count or sum(lengths) != len(blob):
            return None
        ends = accumulate(lengths)
        table = {blob[end - n:end]: rank for end, n, rank in zip(ends, lengths, ranks)}
        special = {str(k): int(v) for k, v in header["special"].items()}
        return Tables(table, special, str(header["pattern"]), bool(header["nfc"]))
    except (ValueError, KeyError, TypeError, AttributeError, struct.error, OverflowError):
        return None


def write(path: Path, tables: Tables) -> None:
    """Keep the tables for the next run; a cache that cannot be written is no error."""
    items = list(tables.ranks.items())
    if any(len(token) > 0xFFFF for token, _ in items):
        return
    ranks = array("I", (rank for _, rank in items))
    lengths = array("H", (len(token) for token, _ in items))
    body = ranks.tobytes() + lengths.tobytes() + b"".join(token for token, _ in items)
    header = json.dumps({"format": FORMAT, "byteorder": sys.byteorder, "count": len(items),
                         "sha256": hashlib.sha256(body).hexdigest(), "special": tables.special,
                         "pattern": tables.pattern, "nfc": tables.nfc}).encode()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(MAGIC + struct.pack("<Q", len(header)) + header + body)
        tmp.replace(path)
    except OSError:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
