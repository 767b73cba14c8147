"""The processes this test run started, found through its own process tree (Linux).

Other processes on the machine (a second checkout's test run, a user's open app, a server
someone started by hand) are none of the suite's business. The test process makes itself
the subreaper of its descendants, so a process whose parent exits (a server's child after
the server ended on stdin EOF, a daemon that forked twice) is re-parented to the test
process instead of init and stays in its tree.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    session: int
    state: str
    cmdline: str

    def __str__(self) -> str:
        return f"{self.pid}: {self.cmdline}"


def adopt_orphans() -> bool:
    """Become the subreaper of every process this one starts, where the system can."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def read(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # The command name in parentheses may hold spaces and parentheses itself.
    fields = stat[stat.rindex(")") + 2:].split()
    return Proc(pid, int(fields[1]), int(fields[3]), fields[0],
                cmdline.replace(b"\0", b" ").decode(errors="replace").strip())


def descendants(root: int | None = None) -> list[Proc]:
    """Every living (not zombie) process below ``root`` (this process by default)."""
    root = os.getpid() if root is None else root
    procs = [p for p in map(read, _pids()) if p is not None]
    children: dict[int, list[Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child.pid)
    return [p for p in found if p.state != "Z"]


def running(pid: int) -> bool:
    proc = read(pid)
    return proc is not None and proc.state != "Z"


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
