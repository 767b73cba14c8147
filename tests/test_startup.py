"""Start only what a run uses, and nothing twice: the real command in a subprocess for
what it imports, real servers (ours in process, others over stdio) for the tool lists
kept between runs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from assistant.mcp.config import ServerConfig
from mcp_helpers import ours, raw
from processes import descendants

# Runs the real command's main() and reports which heavy packages it imported.
PROBE = textwrap.dedent("""
    import json, sys
    from assistant.cli import main
    code = main(sys.argv[1:])
    loaded = sorted({m.split(".")[0] for m in sys.modules} & {"mcp", "textual", "jsonschema"})
    print("IMPORTED " + json.dumps(loaded), file=sys.stderr)
    sys.exit(code)
""")


def imported(*args: str, input: bytes | None = None
             ) -> tuple[list[str], subprocess.CompletedProcess]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True,
                            input=input, stdin=None if input else subprocess.DEVNULL,
                            timeout=300, env=os.environ.copy())
    err = result.stderr.decode()
    assert result.returncode == 0, err
    line = next(line for line in err.splitlines() if line.startswith("IMPORTED "))
    return json.loads(line.removeprefix("IMPORTED ")), result


def settings(app_home: Path, notes: Path) -> None:
    config = app_home / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "settings.toml").write_text(f'notes_dir = "{notes}"\n')


def test_ask_without_tools_imports_neither_mcp_nor_textual(fixture_model):
    loaded, _ = imported("ask", "--no-tools", "--model", str(fixture_model), "--max-tokens",
                         "4", "Hello")
    assert loaded == []


def test_summarize_imports_neither_mcp_nor_textual(fixture_model, tmp_path):
    note = tmp_path / "note.md"
    note.write_text("# Plan\n\nShip it on Friday.\n")
    loaded, _ = imported("summarize", str(note), "--model", str(fixture_model),
                         "--max-tokens", "4", "--quiet", "--no-cache")
    assert loaded == []


def test_bench_without_the_chat_app_does_not_import_textual(fixture_model):
    loaded, _ = imported("bench", "--model", str(fixture_model), "--max-tokens", "4",
                         "--long-prompt-tokens", "32", "--repeats", "1", "--no-tui", "--json")
    # The cache-reuse figures offer the built-in servers' tools, as the chat app does, so
    # the SDK comes in with them; the chat app itself does not.
    assert loaded == ["mcp"]


def test_ask_offers_known_tools_without_starting_their_servers(fixture_model, app_home,
                                                             tmp_path):
    settings(app_home, tmp_path / "notes")
    ask = ("ask", "--model", str(fixture_model), "--max-tokens", "4", "--json", "Hello")
    first, run1 = imported(*ask)
    assert "mcp" in first and "textual" not in first  # never seen: started, waited for
    second, run2 = imported(*ask)
    assert second == []  # known from the first run: offered, not started
    tokens = [json.loads(r.stdout)["stats"]["prompt_tokens"] for r in (run1, run2)]
    assert tokens[0] == tokens[1] > 500  # the same tool definitions in the prompt


# -- the tool lists kept between runs -------------------------------------------------


def gated(gate: Path, name: str = "slow") -> ServerConfig:
    """A real stdio server that answers nothing until ``gate`` exists; its tools are
    named by the gate file's lines."""
    return raw("gated", name, str(gate))


def open_gate(gate: Path, *tools: str) -> None:
    tmp = gate.with_suffix(".tmp")
    tmp.write_text("\n".join(tools))
    tmp.replace(gate)


def ToolListCache(directory: Path):  # noqa: N802 (imported late: see host_for)
    from assistant.mcp.toolcache import ToolListCache

    return ToolListCache(directory)


def host_for(servers, tmp_path, **kw):
    # Imported here, so that the tests of what a command imports run on any tree.
    from assistant.mcp.host import McpHost

    return McpHost(servers, log_dir=tmp_path / "logs",
                   tool_cache=ToolListCache(tmp_path / "cache"), **kw)


def test_a_known_server_is_offered_before_it_answers_and_checked_when_it_does(tmp_path):
    gate = tmp_path / "gate"
    open_gate(gate, "work")
    with host_for([gated(gate)], tmp_path) as host:  # first run: waited for, then kept
        assert [t.name for t in host.tools()] == ["work"]
    gate.unlink()

    host = host_for([gated(gate)], tmp_path)
    try:
        host.start(wait=False)
        assert host.wait_for_tools(0)  # nothing to wait for: the list is known
        state = host.servers["slow"]
        assert state.status == "starting" and state.cached
        assert [t.name for t in host.tools()] == ["work"]
        call = host.start_call("slow", "work", {"text": "hi"})  # waits for the server
        assert not call.done()
        open_gate(gate, "work", "more")  # it comes up with one tool more
        assert call.result(timeout=60).text == '{"text": "hi"}'
        assert state.status == "ready" and not state.cached
        assert host.revision == 1 and [t.name for t in host.tools()] == ["work", "more"]
    finally:
        host.close()
    # The next run starts from the fresh list.
    assert [t.name for t in ToolListCache(tmp_path / "cache").get(gated(gate))] == [
        "work", "more"]


def test_a_lazy_server_starts_only_when_called(tmp_path):
    gate = tmp_path / "gate"
    open_gate(gate, "work")
    with host_for([gated(gate)], tmp_path):
        pass
    host = host_for([gated(gate)], tmp_path)
    try:
        host.start(wait=False, lazy=True)
        assert host.servers["slow"].status == "idle"
        assert [t.name for t in host.tools()] == ["work"]
        assert not [p for p in descendants() if "raw.py" in p.cmdline]
        assert host.call("slow", "work", {"n": 1}).text == '{"n": 1}'
        assert host.servers["slow"].status == "ready"
    finally:
        host.close()


def test_a_known_server_that_never_comes_up_fails_the_call_and_is_forgotten(tmp_path):
    gate = tmp_path / "gate"
    open_gate(gate, "work")
    with host_for([gated(gate)], tmp_path):
        pass
    gate.unlink()
    host = host_for([gated(gate)], tmp_path, startup_timeout=3)
    try:
        host.start(wait=False, lazy=True)
        result = host.call("slow", "work", {})
        assert not result.ok
        assert "did not finish the handshake within 3 s" in result.error
        assert host.tools() == [] and host.revision == 1
    finally:
        host.close()
    # Not offered again before the server has answered once more.
    assert ToolListCache(tmp_path / "cache").get(gated(gate)) is None


def test_closing_abandons_a_server_still_in_its_handshake(tmp_path):
    gate = tmp_path / "gate"  # never opened
    host = host_for([gated(gate)], tmp_path)
    host.start(wait=False)
    assert not host.wait_for_tools(0.5)  # unknown, so a first prompt would wait for it
    host.close()
    assert host.servers["slow"].status == "stopped"
    assert not [p for p in descendants() if "raw.py" in p.cmdline]


@pytest.mark.parametrize("content", [
    b"", b"\x00\xff garbage", b"[]", b'{"format": 1, "tools": {}}',
    b'{"format": 1, "tools": [{"name": 3}]}',
    b'{"format": 1, "tools": [{"name": "x", "description": "", "input_schema": []}]}',
    b'{"format": 1, "tools": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"format": 1, "tools": [], "pad": "' + b"x" * 5_000_000 + b'"}',
], ids=["empty", "binary", "not-an-object", "tools-not-a-list", "bad-name", "bad-schema",
        "deep", "huge"])
def test_a_damaged_tool_list_is_no_list(tmp_path, content):
    gate = tmp_path / "gate"
    open_gate(gate, "work")
    cache = ToolListCache(tmp_path / "cache")
    path = cache.path(gated(gate))
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert cache.get(gated(gate)) is None
    with host_for([gated(gate)], tmp_path) as host:  # waited for, and the file repaired
        assert host.servers["slow"].status == "ready"
    assert [t.name for t in cache.get(gated(gate))] == ["work"]


def test_each_configuration_keeps_its_own_list(tmp_path):
    cache = ToolListCache(tmp_path)
    one = ServerConfig("s", command="srv", env={"TOKEN": "secret-1"})
    two = ServerConfig("s", command="srv", env={"TOKEN": "secret-2"})
    from assistant.mcp.toolinfo import ToolInfo

    cache.put(one, [ToolInfo("s", "a", "", {"type": "object"}, True, False)])
    assert cache.get(two) is None and [t.name for t in cache.get(one)] == ["a"]
    assert b"secret" not in b"".join(p.read_bytes() for p in tmp_path.iterdir())


# -- our own servers, in this process ----------------------------------------------------


def test_our_servers_run_in_this_process_and_speak_mcp(tmp_path, capfd):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# A\n\nalpha\n")
    handlers = list(logging.getLogger().handlers)
    with host_for(ours(notes), tmp_path) as host:
        assert all(s.status == "ready" and s.in_process for s in host.servers.values())
        assert not [p for p in descendants() if "assistant.tools" in p.cmdline]
        assert "alpha" in host.call("notes", "read_note", {"path": "a.md"}).text
        bad = host.call("calculator", "calculate", {"expression": "1/0"})
        assert not bad.ok and "division by zero" in bad.error
        bad = host.call("notes", "read_note", {"path": "../etc/passwd"})
        assert not bad.ok
    assert logging.getLogger().handlers == handlers  # the SDK's server set up no logging
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # nothing on the terminal


def test_a_builtin_server_given_its_own_environment_runs_as_a_process(tmp_path):
    notes = tmp_path / "notes"
    clock = next(s for s in ours(notes) if s.name == "clock")
    clock = ServerConfig(**{**vars(clock), "env": {"TZ": "UTC"}})
    with host_for([clock], tmp_path) as host:
        state = host.servers["clock"]
        assert state.status == "ready" and not state.in_process
        assert host.call("clock", "days_between", {"start": "2026-01-01",
                                                   "end": "2026-01-31"}).text == "30"


def test_notes_folder_that_cannot_be_made_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    notes = next(s for s in ours(blocker / "notes") if s.name == "notes")
    with host_for([notes], tmp_path) as host:
        state = host.servers["notes"]
        assert state.status == "failed"
        assert state.error.startswith(f"cannot use {blocker / 'notes'} as the notes folder")
        assert "\n" not in state.error
