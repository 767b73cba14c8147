"""The MCP host against real servers over real stdio: ours, one from PyPI, and
misbehaving ones. After each fault the other servers must keep working."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from assistant.mcp import host as host_module
from assistant.mcp.config import ServerConfig
from assistant.mcp.host import McpHost
from assistant.mcp.stdio import LOG_CAP_BYTES
from mcp_helpers import misbehaving, ours, raw, time_server, with_child
from processes import running


@pytest.fixture
def notes(tmp_path):
    root = tmp_path / "notes"
    root.mkdir()
    (root / "groceries.md").write_text("# Groceries\n\n- eggs\n- 豆腐\n", encoding="utf-8")
    return root


def host_for(servers, tmp_path, **kw) -> McpHost:
    return McpHost(servers, log_dir=tmp_path / "logs", **kw)


def test_our_servers_start_in_parallel_and_answer(notes, tmp_path):
    with host_for(ours(notes), tmp_path) as host:
        assert {s.config.name: s.status for s in host.servers.values()} == {
            "notes": "ready", "clock": "ready", "calculator": "ready"}
        names = {(t.server, t.name) for t in host.tools()}
        assert {("notes", "read_note"), ("clock", "now"), ("calculator", "calculate")} <= names
        result = host.call("notes", "read_note", {"path": "groceries.md"})
        assert result.ok and "豆腐" in result.text
        assert host.call("calculator", "calculate", {"expression": "6*7"}).text.strip() == "42"


def test_a_server_nobody_here_wrote(tmp_path):
    with host_for([time_server()], tmp_path) as host:
        assert host.servers["time"].status == "ready", host.servers["time"].error
        result = host.call("time", "get_current_time", {"timezone": "Asia/Shanghai"})
        assert result.ok
        assert json.loads(result.text)["timezone"] == "Asia/Shanghai"
        bad = host.call("time", "get_current_time", {"timezone": "Mars/Olympus"})
        assert not bad.ok and "Mars/Olympus" in bad.error


def test_server_that_cannot_start_is_skipped(notes, tmp_path):
    servers = [ServerConfig("ghost", command="no-such-command-anywhere"),
               ServerConfig("quits", command="python3", args=("-c", "raise SystemExit(4)")),
               *ours(notes)[:1]]
    with host_for(servers, tmp_path) as host:
        assert host.servers["ghost"].status == "failed"
        assert "command not found" in host.servers["ghost"].error
        assert host.servers["quits"].status == "failed"
        assert host.servers["notes"].status == "ready"
        result = host.call("ghost", "anything", {})
        assert not result.ok and "not running" in result.error
        assert host.call("notes", "list_notes", {}).ok


def test_server_that_never_finishes_the_handshake(tmp_path):
    # A short start-up limit only for a server that never starts: no other server here
    # has to make it within those seconds.
    with host_for([misbehaving("mute")], tmp_path, startup_timeout=3) as host:
        assert host.servers["mute"].status == "failed"
        assert "did not finish the handshake within 3 s" in host.servers["mute"].error
        assert not host.call("mute", "work", {}).ok


def test_handshake_is_not_bound_by_the_call_timeout(tmp_path):
    # It takes this server 3 s more than an SDK import to serve; its calls may take 1 s.
    with host_for([misbehaving("slow", timeout=1)], tmp_path) as host:
        assert host.servers["slow"].status == "ready", host.servers["slow"].error
        result = host.call("slow", "work", {})
        assert not result.ok and "did not answer within 1 s" in result.error
        assert host.call("slow", "echo", {"text": "still here"}).text == "still here"


def test_a_handshake_slower_than_the_call_timeout_still_completes(tmp_path):
    # Listing the tools takes this server 3 s; its calls may take 1 s.
    with host_for([raw("slowlist", timeout=1)], tmp_path) as host:
        assert host.servers["slowlist"].status == "ready", host.servers["slowlist"].error
        assert host.call("slowlist", "work", {"a": 1}).text == '{"a": 1}'


def test_servers_start_a_few_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(host_module, "START_AT_ONCE", 2)
    record = tmp_path / "starts.txt"
    servers = [raw("echo", f"s{i}", str(record)) for i in range(7)]
    with host_for(servers, tmp_path) as host:
        assert all(s.status == "ready" for s in host.servers.values())
    running_now, most = set(), 0
    for line in record.read_text().splitlines():
        what, pid = line.split()
        (running_now.add if what == "start" else running_now.discard)(pid)
        most = max(most, len(running_now))
    assert most <= 2  # never more servers in their handshake than allowed


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states in /proc")
@pytest.mark.parametrize("how", ["exits on stdin EOF", "crashes mid-call", "never exits"])
def test_a_server_s_own_children_end_with_it(tmp_path, how):
    # Started as `sh -c "sleep 999 & exec server"`, as launch scripts do.
    pid_file = tmp_path / "child.pid"
    server = {"exits on stdin EOF": raw("echo", "s"), "crashes mid-call": misbehaving("crash", "s"),
              "never exits": misbehaving("hang", "s")}[how]
    with host_for([with_child(server, pid_file)], tmp_path) as host:
        assert host.servers["s"].status == "ready", host.servers["s"].error
        child = int(pid_file.read_text())
        assert running(child)
        if how == "crashes mid-call":  # the child holds its stdout open: still seen to end
            assert "stopped responding" in host.call("s", "work", {}).error
        if how == "never exits":
            host.start_call("s", "work", {})  # busy in a call when stdin closes
    assert not running(child)


def test_server_that_crashes_mid_call(notes, tmp_path):
    with host_for([misbehaving("crash"), *ours(notes)[:1]], tmp_path) as host:
        result = host.call("crash", "work", {})
        assert not result.ok and "stopped responding" in result.error
        assert host.servers["crash"].status == "failed"
        assert not host.call("crash", "echo", {"text": "x"}).ok  # reported, not hung
        assert host.call("notes", "list_notes", {}).ok


def test_server_that_never_answers_times_out_and_is_cancelled(notes, tmp_path):
    with host_for([misbehaving("hang", timeout=2), *ours(notes)[:1]], tmp_path) as host:
        result = host.call("hang", "work", {})
        assert not result.ok and "did not answer within 2 s" in result.error
        # The server is still usable for other calls, and so are the others.
        assert host.call("hang", "echo", {"text": "still here"}).text == "still here"
        assert host.call("notes", "list_notes", {}).ok


def test_cancelling_a_call(tmp_path):
    with host_for([misbehaving("hang")], tmp_path) as host:
        future = host.start_call("hang", "work", {})
        time.sleep(0.5)
        future.cancel()
        assert future.cancelled()
        assert host.call("hang", "echo", {"text": "after cancel"}).text == "after cancel"


def test_server_that_floods_stderr(tmp_path):
    # About 2.4 MB at start-up and again in the call: it goes to the log, not the screen,
    # and the log stays under its cap while the server runs, with the newest lines kept.
    with host_for([misbehaving("flood")], tmp_path) as host:
        assert host.call("flood", "work", {"text": "x"}).text == "done: x"
        log = host.servers["flood"].log_file
        older = log.with_name(log.name + ".1")
        assert 0 < log.stat().st_size <= LOG_CAP_BYTES
        assert 0 < older.stat().st_size <= LOG_CAP_BYTES
        assert "noise noise" in log.read_text()


def test_server_that_returns_megabytes(tmp_path):
    with host_for([misbehaving("huge")], tmp_path) as host:
        result = host.call("huge", "work", {})
        assert result.ok and len(result.text) > 5_000_000
        assert host.call("huge", "echo", {"text": "ok"}).text == "ok"


def test_server_that_writes_garbage_to_stdout(tmp_path):
    with host_for([misbehaving("garbage")], tmp_path) as host:
        result = host.call("garbage", "work", {"text": "y"})
        assert result.ok and result.text == "done: y"
        assert host.call("garbage", "echo", {"text": "ok"}).text == "ok"
        state = host.servers["garbage"]
        assert state.bad_lines == 2500  # counted for the user
        log = state.log_file.read_text()
    assert log.count("this is not JSON {{{") == 2500
    assert "Traceback" not in log  # one line each, not the SDK's traceback each


def test_invalid_unicode_in_arguments_is_replaced_and_the_server_goes_on(tmp_path):
    with host_for([raw("echo"), misbehaving("hang", "sdk")], tmp_path) as host:
        result = host.call("echo", "work", {"text": "a\ud800b", "\udcff": ["\udc80"]})
        assert result.ok, result.error
        assert json.loads(result.text) == {"text": "a\ufffdb", "\ufffd": ["\ufffd"]}
        assert host.call("echo", "work", {"text": "next"}).ok
        assert host.call("sdk", "echo", {"text": "\ud83d\ude00 \ud800"}).text == "\U0001f600 \ufffd"
        assert host.call("sdk", "echo", {"text": "next"}).text == "next"


@pytest.mark.parametrize("mode, text", [("surrogate", "before \ufffd after"),
                                        ("bytes", "before \ufffd\ufffd after")])
def test_invalid_unicode_in_results_is_replaced(tmp_path, mode, text):
    with host_for([raw(mode)], tmp_path) as host:
        for _ in range(2):  # and the server is still there
            result = host.call(mode, "work", {})
            assert (result.ok, result.text) == (True, text)
        assert host.servers[mode].bad_lines == 0


def test_child_gets_only_its_configured_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")
    probe = ("import os, sys\n"
             "from mcp.server import MCPServer\n"
             "s = MCPServer(name='env')\n"
             "@s.tool(structured_output=False)\n"
             "def env() -> str:\n"
             "    return '\\n'.join(sorted(os.environ))\n"
             "s.run()\n")
    script = tmp_path / "env_server.py"
    script.write_text(probe)
    config = ServerConfig("env", command=sys.executable,
                          args=(str(script),), env={"GIVEN": "1"})
    with host_for([config], tmp_path) as host:
        names = set(host.call("env", "env", {}).text.split())
    assert "GIVEN" in names and "PATH" in names
    assert "SECRET_TOKEN" not in names and "ASSISTANT_HOME" not in names


def test_disabled_server_is_not_started(notes, tmp_path):
    servers = ours(notes)
    servers[1] = ServerConfig(**{**vars(servers[1]), "disabled": True})
    with host_for(servers, tmp_path) as host:
        assert host.servers["clock"].status == "disabled"
        assert not host.call("clock", "now", {}).ok
