"""A fast token counter that gives exactly the ids of the model's own tokenizer.

A tiktoken ``Encoding`` is built from the model's ``tokenizer.json``: the byte-level BPE
vocabulary as mergeable ranks, the pre-tokenizer's split pattern, and the added tokens
(``<|im_start|>``, ``<think>``, ...) as special tokens. ``encode`` recognises their text
as the HF tokenizer does (for the chat template's own text); ``encode_plain`` and
``count`` read every character as text, which is how content from outside is encoded.
Used for budgets and chunking, where the HF tokenizer is several times slower.
"""

from __future__ import annotations

import json
import unicodedata
from functools import lru_cache
from pathlib import Path

import tiktoken

from assistant import tokencache
from assistant.text import scrub

# The Qwen2/Qwen3 split pattern, used when tokenizer.json does not carry one.
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's byte-to-printable-character map used by byte-level BPE.

    transformers and mlx-lm have this map too; it is repeated here so that this module
    needs neither of them (importing either costs about a second).
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _split_pattern(pre_tokenizer: dict | None) -> str:
    if not pre_tokenizer:
        return QWEN_PATTERN
    steps = pre_tokenizer.get("pretokenizers", [pre_tokenizer])
    for step in steps:
        if step.get("type") == "Split" and "Regex" in step.get("pattern", {}):
            return step["pattern"]["Regex"]
    return QWEN_PATTERN


def _tables(tokenizer_json: Path) -> tokencache.Tables:
    """The ranks, special tokens and split pattern, read from ``tokenizer.json``."""
    data = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    model = data["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"{tokenizer_json}: not a BPE tokenizer")
    special = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
    decode = byte_decoder()
    ranks = {
        bytes(decode[ch] for ch in token): rank
        for token, rank in model["vocab"].items()
        if token not in special
    }
    normalizer = data.get("normalizer") or {}
    return tokencache.Tables(ranks, special, _split_pattern(data.get("pre_tokenizer")),
                             normalizer.get("type") == "NFC")


class TokenCounter:
    """Encodes and counts text with the model's vocabulary, at tiktoken speed."""

    def __init__(self, tokenizer_json: Path, *, cache_dir: Path | None = None):
        """With ``cache_dir``, the tables come from there when this very file was read
        before (see ``tokencache``)."""
        tokenizer_json = Path(tokenizer_json)
        kept = tokencache.cache_file(cache_dir, tokenizer_json) if cache_dir else None
        tables = tokencache.read(kept) if kept else None
        if tables is None:
            tables = _tables(tokenizer_json)
            if kept:
                tokencache.write(kept, tables)
        self._nfc = tables.nfc
        self.special_tokens: dict[str, int] = tables.special
        self.encoding = tiktoken.Encoding(
            name=f"hf:{tokenizer_json}",
            pat_str=tables.pattern,
            mergeable_ranks=tables.ranks,
            special_tokens=tables.special,
        )

    def encode(self, text: str) -> list[int]:
        """As the HF tokenizer encodes: control-token text becomes control tokens."""
        return self.encoding.encode(self._normalize(text), allowed_special="all")

    def encode_plain(self, text: str) -> list[int]:
        """Every character as text: ``<|im_end|>`` here is ten ordinary tokens' worth."""
        return self.encoding.encode_ordinary(self._normalize(text))

    def count(self, text: str) -> int:
        """What ``text`` costs as content of a prompt."""
        return len(self.encode_plain(text))

    def _normalize(self, text: str) -> str:
        text = scrub(text)
        if self._nfc and not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        return text

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(ids)


def _tables_dir() -> Path:
    from assistant.config import paths

    return paths().cache_dir / "tokenizers"


@lru_cache(maxsize=4)
def counter_for(model_dir: Path) -> TokenCounter:
    """The counter for a model directory, built once per process (and its tables once
    per tokenizer file)."""
    return TokenCounter(Path(model_dir) / "tokenizer.json", cache_dir=_tables_dir())


def tables_kept(model_dir: Path) -> bool:
    """Whether this model's tokenizer was read before (its tables are kept): then
    building its counter cannot fail for want of a readable ``tokenizer.json``."""
    kept = tokencache.cache_file(_tables_dir(), Path(model_dir) / "tokenizer.json")
    return kept is not None and kept.is_file()
