"""The MCP host against real servers over real stdio: ours, one from PyPI, and
misbehaving ones. After each fault the other servers must keep working."""

from __future__ import annotations

import json
import sys
import time

import pytest

from assistant.mcp.config import ServerConfig
from assistant.mcp.host import McpHost
from mcp_helpers import misbehaving, ours, time_server


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


def test_server_that_never_finishes_the_handshake(notes, tmp_path):
    started = time.perf_counter()
    with host_for([misbehaving("mute"), *ours(notes)[:1]], tmp_path, startup_timeout=3) as host:
        assert host.servers["mute"].status == "failed"
        assert "handshake" in host.servers["mute"].error
        assert host.call("notes", "list_notes", {}).ok
    assert time.perf_counter() - started < 20


def test_server_that_crashes_mid_call(notes, tmp_path):
    with host_for([misbehaving("crash"), *ours(notes)[:1]], tmp_path) as host:
        result = host.call("crash", "work", {})
        assert not result.ok and "stopped responding" in result.error
        assert host.servers["crash"].status == "failed"
        assert not host.call("crash", "echo", {"text": "x"}).ok  # reported, not hung
        assert host.call("notes", "list_notes", {}).ok


def test_server_that_never_answers_times_out_and_is_cancelled(notes, tmp_path):
    with host_for([misbehaving("hang", timeout=2), *ours(notes)[:1]], tmp_path) as host:
        started = time.perf_counter()
        result = host.call("hang", "work", {})
        assert time.perf_counter() - started < 10
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
    with host_for([misbehaving("flood")], tmp_path) as host:
        assert host.call("flood", "work", {"text": "x"}).text == "done: x"
        log = host.servers["flood"].log_file
    assert log.stat().st_size > 4_000_000  # it all went to the log, not the screen


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
