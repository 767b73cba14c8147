"""The suite's own leftover check: it sees what this run started, and only that."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import conftest
from processes import descendants, running

pytestmark = pytest.mark.skipif(not conftest.ADOPTING, reason="needs Linux /proc and prctl")


def test_a_leftover_of_this_run_is_seen_even_when_orphaned():
    # A child that starts a server in a session of its own and exits without it, as an
    # app that forgot to stop its server would.
    spawn = ("import subprocess\n"
             "p = subprocess.Popen(['sleep', '999'], start_new_session=True,\n"
             "                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
             "print(p.pid)\n")
    pid = int(subprocess.run([sys.executable, "-c", spawn], capture_output=True, text=True,
                             check=True, timeout=60).stdout)
    try:
        assert running(pid)
        left = {p.pid: p for p in descendants()}
        assert pid in left and left[pid].cmdline == "sleep 999"
        assert left[pid].ppid == os.getpid()  # adopted, not lost to init
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert pid not in {p.pid for p in descendants()}


def test_processes_outside_this_run_are_not_its_business():
    ours = {p.pid for p in descendants()}
    assert 1 not in ours and os.getppid() not in ours
