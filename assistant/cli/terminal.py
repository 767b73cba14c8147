"""What the commands share on a terminal: text shown safely, and the keyboard."""

from __future__ import annotations

import shutil
import sys
import threading
from contextlib import contextmanager

from assistant.text import scrub

CLEAR = "\r\x1b[K"  # back to the start of the line, and erase it


class ProgressLine:
    """A single line on stderr that each progress report rewrites and the end of the call
    clears, so the output around it is as it would be without it. Only on a terminal."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.shown = False
        self._lock = threading.Lock()  # reports come from other threads

    def show(self, text: str) -> None:
        if not self.live:
            return
        width = shutil.get_terminal_size().columns - 1
        line = printable(text).replace("\n", " ")[:max(width, 10)]  # never wraps
        with self._lock:
            self.stream.write(CLEAR + line)
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        with self._lock:
            if self.shown:
                self.stream.write(CLEAR)
                self.stream.flush()
                self.shown = False


def drop_typed_ahead(tty) -> None:
    """Discard what was typed before the question: it was not an answer to it."""
    try:
        import termios
    except ImportError:  # no terminal control here (Windows)
        return
    try:
        termios.tcflush(tty.fileno(), termios.TCIFLUSH)
    except (termios.error, OSError, ValueError):
        pass


def printable(text: str) -> str:
    """``text`` with control characters shown, not obeyed: a tool's name or arguments
    must not move the cursor or rewrite the question on the terminal."""
    return "".join(c if c == "\n" or c.isprintable() else f"\\x{ord(c):02x}"
                   if ord(c) < 0x100 else f"\\u{ord(c):04x}" for c in scrub(text))


def open_terminal(stdin_used: bool):
    if not sys.stderr.isatty():
        return None
    if not stdin_used and sys.stdin.isatty():
        return sys.stdin
    try:
        return open("/dev/tty", encoding="utf-8")
    except OSError:
        return None


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 tool``, ``2 tools``, ``1,024 tokens``: a count with its noun in the right number."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut at a word boundary and ended with
    "…" when it is longer, so a reader sees that more was there."""
    if len(text) <= width:
        return text
    cut = text[:max(width - 1, 1)]
    space = cut.rfind(" ")
    if space > width // 2:  # a word boundary not too far back; else cut inside the word
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


@contextmanager
def download_progress(name: str, stream=None):
    """A ``progress(done_bytes, total_bytes)`` callback for ``resolve_model`` that shows
    the download of ``name`` on one stderr line, cleared when the block ends; None
    without a terminal, so pipes and --json stay clean."""
    line = ProgressLine(stream)
    if not line.live:
        yield None
        return
    from assistant.engine.model import download_reporter

    progress = download_reporter(name, line.show)
    try:
        yield progress
    finally:
        line.clear()


