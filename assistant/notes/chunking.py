"""Split Markdown into chunks that each fit a token budget, along the text's structure.

Cuts are made where they hurt least, in this order: between sections (ATX headings
outside fenced code), between blocks (paragraphs, lists, fenced code, front matter),
between sentences or lines, and only then inside a line. Pieces are packed greedily;
a piece that cannot fit even alone in a fresh chunk is cut one level finer, so a fenced
code block that fits the budget is never split. A chunk that begins inside a section is
prefixed with the section's heading path, so the model knows where the text comes from.

``count`` is any ``str -> int`` token counter. It is called once per piece, and once more
per finished chunk to check it, because token counts do not add up exactly across joins.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

Count = Callable[[str], int]

_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]|$)")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
# Where a sentence ends: ASCII punctuation followed by spaces, CJK full stops (which are
# not followed by spaces), or a line break (list items, hard-wrapped prose).
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*[ \t]+|[。！？]+[\"'”’」』）)]*[ \t]*|\n")
_LEADING_BLANK_LINES = re.compile(r"(?:[ \t]*\n)+")


@dataclass(frozen=True)
class Chunk:
    """One chunk: ``text`` for the model, and the slice of the input it covers."""

    text: str  # context + the covered slice, blank lines around it trimmed (and any
    # bare headings it starts with left out, as the context shows them)
    start: int  # covers input[start:end]; consecutive chunks tile the whole input
    end: int
    context: str  # heading lines put before the slice ("" when none)


def chunk_markdown(text: str, max_tokens: int, count: Count) -> list[str]:
    """The text in pieces of at most ``max_tokens`` tokens by ``count``, cut at headings,
    then paragraphs, then sentences; the whole text as one chunk if it fits."""
    return [chunk.text for chunk in split_markdown(text, max_tokens, count)]


def split_markdown(text: str, max_tokens: int, count: Count) -> list[Chunk]:
    """Like ``chunk_markdown``, with where each chunk came from."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
    if count(text) <= max_tokens:
        return [Chunk(text, 0, len(text), "")]
    return _Splitter(text, max_tokens, count).run()


@dataclass(frozen=True)
class _Block:
    start: int
    end: int
    kind: str  # "heading", "para" or "code" (fenced code and front matter)
    line: str = ""  # a heading's line
    level: int = 0  # a heading's level


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    kind: str  # "section", "heading", "para", "code", "sentence", "line" or "text"
    tokens: int
    path: tuple[str, ...]  # heading lines of the section the piece is in, outermost first
    opens_section: bool  # begins with its own section's heading line
    blocks: tuple[_Block, ...] = ()  # a section's blocks


def _lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of the lines in text[start:end], each with its "\\n"."""
    spans = []
    while start < end:
        stop = text.find("\n", start, end)
        stop = end if stop < 0 else stop + 1
        spans.append((start, stop))
        start = stop
    return spans


def _blocks(text: str) -> list[_Block]:
    """The text as contiguous blocks; blank lines belong to the block before them."""
    lines = _lines(text, 0, len(text))
    blocks: list[_Block] = []
    i = 0
    fence = _front_matter_end(text, lines)
    if fence:
        blocks.append(_Block(0, lines[fence - 1][1], "code"))
        i = fence
    while i < len(lines):
        start, end = lines[i]
        line = text[start:end].rstrip("\n")
        if not line.strip():
            if blocks:
                blocks[-1] = _Block(blocks[-1].start, end, blocks[-1].kind, blocks[-1].line,
                                    blocks[-1].level)
            else:
                blocks.append(_Block(start, end, "para"))
            i += 1
        elif heading := _HEADING.match(line):
            blocks.append(_Block(start, end, "heading", line.strip(), len(heading.group(1))))
            i += 1
        elif _opens_fence(line):
            close = _fence_end(text, lines, i)
            blocks.append(_Block(start, lines[close - 1][1], "code"))
            i = close
        else:
            j = i + 1
            while j < len(lines):
                nxt = text[lines[j][0]:lines[j][1]].rstrip("\n")
                if not nxt.strip() or _HEADING.match(nxt) or _opens_fence(nxt):
                    break
                j += 1
            blocks.append(_Block(start, lines[j - 1][1], "para"))
            i = j
    # Leading blank lines would be a block of their own: give them to the next block.
    if len(blocks) > 1 and not text[blocks[0].start:blocks[0].end].strip():
        second = blocks[1]
        blocks[:2] = [_Block(0, second.end, second.kind, second.line, second.level)]
    return blocks


def _opens_fence(line: str) -> bool:
    m = _FENCE.match(line)
    # A backtick fence's info string cannot contain backticks (CommonMark).
    return bool(m) and not (m.group(1)[0] == "`" and "`" in m.group(2))


def _fence_end(text: str, lines: list[tuple[int, int]], i: int) -> int:
    """Index of the line after the fenced block opened at line i (all lines if unclosed)."""
    opening = _FENCE.match(text[lines[i][0]:lines[i][1]]).group(1)
    for j in range(i + 1, len(lines)):
        m = _FENCE.match(text[lines[j][0]:lines[j][1]].rstrip("\n"))
        if (m and m.group(1)[0] == opening[0] and len(m.group(1)) >= len(opening)
                and not m.group(2).strip()):
            return j + 1
    return len(lines)


def _front_matter_end(text: str, lines: list[tuple[int, int]]) -> int:
    """Lines taken by YAML front matter ('---' ... '---' or '...'), else 0: its
    '# comments' must not be read as headings."""
    if not lines or text[lines[0][0]:lines[0][1]].rstrip() != "---":
        return 0
    for j in range(1, len(lines)):
        if text[lines[j][0]:lines[j][1]].rstrip() in ("---", "..."):
            return j + 1
    return 0


def _sections(blocks: list[_Block]) -> list[tuple[tuple[str, ...], tuple[_Block, ...]]]:
    """Blocks grouped under their headings, each with its heading path."""
    sections: list[tuple[tuple[str, ...], list[_Block]]] = []
    stack: list[_Block] = []
    for block in blocks:
        if block.kind == "heading":
            stack = [h for h in stack if h.level < block.level] + [block]
            sections.append((tuple(h.line for h in stack), [block]))
        elif sections:
            sections[-1][1].append(block)
        else:
            sections.append(((), [block]))  # text before the first heading
    return [(path, tuple(group)) for path, group in sections]


def _spans(text: str, start: int, end: int, cuts: list[int]) -> list[tuple[int, int]]:
    """text[start:end] cut at ``cuts``; whitespace-only spans join the span before them."""
    spans: list[tuple[int, int]] = []
    for stop in [*cuts, end]:
        if stop <= start:
            continue
        if spans and not text[start:stop].strip():
            spans[-1] = (spans[-1][0], stop)
        elif len(spans) == 1 and not text[spans[0][0]:spans[0][1]].strip():
            spans[0] = (spans[0][0], stop)
        else:
            spans.append((start, stop))
        start = stop
    return spans


class _Splitter:
    def __init__(self, text: str, max_tokens: int, count: Count):
        self.text = text
        self.max_tokens = max_tokens
        self.count = count
        self._contexts: dict[tuple[str, ...], tuple[str, int, tuple[str, ...]]] = {}

    def run(self) -> list[Chunk]:
        pieces = [self._section(path, blocks) for path, blocks in _sections(_blocks(self.text))]
        chunks: list[Chunk] = []
        carried: list[str] = []  # bare headings that the next chunk shows as context
        carried_from = None  # where the first of them starts
        i = 0
        while i < len(pieces):
            first = pieces[i]
            context, context_tokens, _ = self._context(first)
            if first.kind == "code" and not carried and self._too_big_with_context(first):
                context, context_tokens = "", 0  # a whole code block beats its headings
            budget = self.max_tokens - context_tokens
            j = _fill(pieces, i, budget)
            fits_alone = j > i
            if j == i + 1 and first.kind == "heading" and i + 1 < len(pieces):
                # A heading alone in a chunk says nothing: the next chunk shows it as
                # context instead, if its context has room for every heading carried.
                after = pieces[i + 1]
                shown = self._context(after)[2]
                whole_code = after.kind == "code" and self._too_big_with_context(after)
                if all(line in shown for line in [*carried, first.path[-1]]) and not whole_code:
                    carried.append(first.path[-1])
                    carried_from = first.start if carried_from is None else carried_from
                    i += 1
                    continue
            while j > i:
                chunk = self._chunk(context, carried_from, first.start, pieces[j - 1].end)
                if self.count(chunk.text) <= self.max_tokens:
                    break
                j = _keep_heading_with_text(pieces, i, j - 1)  # the sums were a little off
            if j == i and fits_alone and first.tokens <= 1:
                # A token that overflows only when joined to its context (BPE merges
                # across the join; not seen in practice) cannot be cut: drop the context.
                context, j = "", i + 1
                chunk = self._chunk("", carried_from, first.start, first.end)
            if j == i:  # the piece does not fit alone in a fresh chunk: cut it finer
                limit = first.tokens - 1 if fits_alone else budget
                pieces[i:i + 1] = self._expand(first, max(limit, 1))
                continue
            if not chunk.text[len(context):].strip() and j < len(pieces):
                # Only blanks (a cut inside a long blank run): they go with the next chunk.
                carried_from = chunk.start
                i = j
                continue
            chunks.append(chunk)
            carried, carried_from = [], None
            i = j
        return _absorb_blank(self.text, chunks)

    def _piece(self, start, end, kind, path, opens_section, tokens=None, blocks=()) -> _Piece:
        if tokens is None:
            tokens = self.count(self.text[start:end])
        return _Piece(start, end, kind, tokens, path, opens_section, blocks)

    def _section(self, path: tuple[str, ...], blocks: tuple[_Block, ...]) -> _Piece:
        has_heading = blocks[0].kind == "heading"
        # A section that is only its heading line must travel with what follows it.
        kind = "heading" if has_heading and len(blocks) == 1 else "section"
        return self._piece(blocks[0].start, blocks[-1].end, kind, path, has_heading,
                           blocks=blocks)

    def _expand(self, piece: _Piece, budget: int) -> list[_Piece]:
        """The piece cut one level finer; at the last level, into spans of ``budget``."""
        def sub(start, end, kind, tokens=None):
            opens = piece.opens_section and start == piece.start
            return self._piece(start, end, kind, piece.path, opens, tokens)

        if piece.kind == "section":
            return [sub(b.start, b.end, b.kind) for b in piece.blocks]
        if piece.kind in ("para", "code"):
            kind = "sentence" if piece.kind == "para" else "line"
            if piece.kind == "para":
                cuts = [m.end() for m in _SENTENCE_END.finditer(self.text, piece.start, piece.end)]
            else:
                cuts = [end for _, end in _lines(self.text, piece.start, piece.end)]
            spans = _spans(self.text, piece.start, piece.end, cuts)
            if len(spans) > 1:
                return [sub(start, end, kind) for start, end in spans]
        return [sub(start, end, "text", tokens)
                for start, end, tokens in self._hard(piece.start, piece.end, piece.tokens, budget)]

    def _hard(self, start: int, end: int, tokens: int, budget: int) -> list[tuple[int, int, int]]:
        """Cut text[start:end] into spans of at most ``budget`` tokens, preferring to cut
        after whitespace; the cut is guessed from the text's characters per token."""
        text = self.text
        per_token = (end - start) / max(tokens, 1)
        spans = []
        while start < end:
            stop = min(end, start + max(1, int(budget * per_token * 0.9)))
            while True:
                cut = _after_space(text, start, stop) if stop < end else stop
                n = self.count(text[start:cut])
                if n <= budget:
                    break
                if cut - start == 1:
                    raise ValueError(f"max_tokens={self.max_tokens} is too small: "
                                     f"{text[start]!r} alone is {n} tokens")
                stop = start + max(1, min(cut - start - 1, (cut - start) * budget // n))
            spans.append((start, cut, n))
            start = cut
        return spans

    def _context(self, piece: _Piece) -> tuple[str, int, tuple[str, ...]]:
        """The heading lines to put before a chunk that starts with ``piece``: the
        context string, its tokens, and the lines kept. At most half the budget, so
        the outermost headings are dropped first."""
        lines = piece.path[:-1] if piece.opens_section else piece.path
        if lines not in self._contexts:
            kept, context, tokens = lines, "", 0
            while kept:
                context = "\n".join(kept) + "\n\n"
                tokens = self.count(context)
                if tokens <= self.max_tokens // 2:
                    break
                kept = kept[1:]
            self._contexts[lines] = (context, tokens, kept) if kept else ("", 0, ())
        return self._contexts[lines]

    def _too_big_with_context(self, piece: _Piece) -> bool:
        """A piece that fits a chunk alone, but not after its context."""
        return self._context(piece)[1] + piece.tokens > self.max_tokens >= piece.tokens

    def _chunk(self, context: str, start: int | None, body_start: int, end: int) -> Chunk:
        """The chunk showing text[body_start:end]; it covers from ``start`` when the
        headings before ``body_start`` are shown in the context instead."""
        body = self.text[body_start:end]
        blank = _LEADING_BLANK_LINES.match(body)
        body = body[blank.end():] if blank else body
        return Chunk(context + body.rstrip(), body_start if start is None else start, end,
                     context)


def _fill(pieces: list[_Piece], i: int, budget: int) -> int:
    """End (exclusive) of the longest run of pieces from i whose token sum fits."""
    j, used = i, 0
    while j < len(pieces) and used + pieces[j].tokens <= budget:
        used += pieces[j].tokens
        j += 1
    return _keep_heading_with_text(pieces, i, j)


def _keep_heading_with_text(pieces: list[_Piece], i: int, j: int) -> int:
    """Don't end a chunk on a bare heading when there is text after it."""
    if j - i > 1 and j < len(pieces) and pieces[j - 1].kind == "heading":
        return j - 1
    return j


def _after_space(text: str, start: int, stop: int) -> int:
    """A cut at or before ``stop``: just after the last whitespace in the second half of
    text[start:stop] that follows some non-space (a span must not be blank)."""
    window = text[start:stop]
    lowest = max(start + len(window) - len(window.lstrip()), start + (stop - start) // 2)
    for k in range(stop - 1, lowest, -1):
        if text[k].isspace():
            return k + 1
    return stop


def _absorb_blank(text: str, chunks: list[Chunk]) -> list[Chunk]:
    """A last chunk covering nothing but whitespace joins the chunk before it."""
    if len(chunks) > 1 and not text[chunks[-1].start:chunks[-1].end].strip():
        last, prev = chunks.pop(), chunks.pop()
        chunks.append(Chunk(prev.text, prev.start, last.end, prev.context))
    return chunks
