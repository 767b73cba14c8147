"""Text from outside made safe to encode.

A Python ``str`` can hold lone surrogates ("\\ud800" from a JSON escape, or the
``surrogateescape`` bytes of a non-UTF-8 argv), which cannot be encoded as UTF-8:
SQLite, the MCP SDK's stdin writer, log files and the tokenizer all raise on them. Every
boundary where such text comes in passes it through ``scrub``.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


def scrub(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (valid pairs are joined)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        # Through UTF-16: a well-formed pair becomes its character, a lone half U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def scrub_data(value):
    """``scrub`` every string in a JSON-like value, dictionary keys included."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_data(k): scrub_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_data(v) for v in value]
    return value
