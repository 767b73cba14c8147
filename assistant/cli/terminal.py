"""What the commands share on a terminal: text shown safely, and the keyboard."""

from __future__ import annotations

import sys

from assistant.text import scrub


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
