"""`assistant ask`'s question before a tool call, on a real pseudo-terminal: only an
explicit answer allows, and nothing typed before the question answers it."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")),
                                reason="needs a POSIX pseudo-terminal")

# The child makes the pty its controlling terminal (so /dev/tty is it), then asks once per
# byte it reads on the control pipe and writes each answer back on the result pipe.
CHILD = textwrap.dedent("""
    import fcntl, os, sys, termios
    from types import SimpleNamespace
    from assistant.cli.ask import _terminal_approver

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    go, done, stdin_used = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
    tool = SimpleNamespace(server="notes", name="append_note\\x1b[2K", read_only=False)
    request = SimpleNamespace(tool=tool, arguments={"path": "todo.md", "text": "- milk"})
    approve = _terminal_approver(False, stdin_used=stdin_used)
    while os.read(go, 1):
        os.write(done, approve(request).encode() + b"\\n")
""")

PROMPT = b" no: "  # the end of the question
LIMIT = 120  # seconds; only a guard against hanging, never a measurement


class Terminal:
    """A child process on a pty; we are the keyboard and the screen."""

    def __init__(self, stdin_used: bool):
        self.master, slave = os.openpty()
        go_read, self.go = os.pipe()
        self.done, done_write = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(go_read), str(done_write), str(int(stdin_used))],
            stdin=slave, stdout=slave, stderr=slave, pass_fds=(go_read, done_write),
            start_new_session=True)
        for fd in (slave, go_read, done_write):
            os.close(fd)
        self.screen = b""

    def read_until(self, needle: bytes, start: int) -> int:
        while needle not in self.screen[start:]:
            ready, _, _ = select.select([self.master], [], [], LIMIT)
            assert ready, f"no {needle!r} on the terminal: {self.screen[-500:]!r}"
            self.screen += os.read(self.master, 4096)
        return self.screen.index(needle, start) + len(needle)

    def ask(self, typed_ahead: bytes, answer: bytes) -> str:
        start = len(self.screen)
        if typed_ahead:
            os.write(self.master, typed_ahead)
            # Its echo means the terminal has it queued: typed before the question.
            start = self.read_until(typed_ahead.rstrip(b"\n").split(b"\n")[-1], start)
        os.write(self.go, b"x")
        start = self.read_until(PROMPT, start)
        os.write(self.master, answer)
        ready, _, _ = select.select([self.done], [], [], LIMIT)
        assert ready, f"no answer taken: {self.screen[-500:]!r}"
        return os.read(self.done, 64).decode().strip()

    def close(self) -> None:
        os.close(self.go)
        self.proc.wait(timeout=LIMIT)
        for fd in (self.master, self.done):
            os.close(fd)


# (typed before the question, typed after it, the choice)
CASES = [
    (b"", b"y\n", "once"),
    (b"", b"  YES \n", "once"),
    (b"", b"always\n", "always"),
    (b"", b"a\n", "deny"),  # "always" is a word to type, not a key to hit
    (b"", b"\n", "deny"),
    (b"", b"what about the weather\n", "deny"),
    (b"", b"yes please\n", "deny"),
    (b"", b"\xff\xfe\n", "deny"),  # not UTF-8
    (b"", b"\x04", "deny"),  # the end of input (ctrl+d)
    (b"y\n", b"\n", "deny"),  # typed while the answer streamed, then Enter on the question
    (b"always", b"\n", "deny"),  # half a line typed ahead
    (b"y\nyes\n", b"always\n", "always"),  # what comes after the question counts
]


@pytest.mark.parametrize("stdin_used", [True, False], ids=["dev-tty", "stdin"])
def test_only_an_explicit_answer_after_the_question_allows(stdin_used):
    terminal = Terminal(stdin_used)
    try:
        got = [terminal.ask(typed, answer) for typed, answer, _ in CASES]
    finally:
        terminal.close()
    assert got == [choice for _, _, choice in CASES]
    shown = terminal.screen.decode("utf-8", "replace")
    assert "Allow notes/append_note\\x1b[2K (it may change things)" in shown
    assert '"text": "- milk"' in shown and "\x1b[2K" not in shown
