"""`assistant tools …` and `assistant ask` with MCP servers, as the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mcp_helpers import SERVERS, time_server

ASSISTANT = str(Path(sys.executable).with_name("assistant"))


def run(*args: str, timeout: float = 120):
    return subprocess.run([ASSISTANT, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=os.environ.copy())


def write_config(app_home: Path, servers: dict, settings: str = "") -> Path:
    config = app_home / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "mcp.json").write_text(json.dumps({"mcpServers": servers}))
    (config / "settings.toml").write_text(settings)
    return config / "mcp.json"


def test_list_shows_our_servers_and_their_cost(app_home, fixture_model, tmp_path):
    write_config(app_home, {}, f'model = "{fixture_model}"\nnotes_dir = "{tmp_path / "n"}"\n')
    result = run("tools", "list", "--json")
    assert result.returncode == 0, result.stderr
    servers = {s["name"]: s for s in json.loads(result.stdout)}
    assert {n: s["state"] for n, s in servers.items()} == {
        "notes": "ready", "clock": "ready", "calculator": "ready"}
    assert servers["notes"]["tokens"] > 100  # counted with the model's own tokenizer
    tools = {t["name"]: t for t in servers["notes"]["tools"]}
    assert tools["read_note"]["read_only"] is True and tools["append_note"]["read_only"] is False


def test_test_reports_each_server(app_home, tmp_path):
    write_config(app_home, {
        "time": {"command": time_server().command, "args": ["--local-timezone", "UTC"]},
        "broken": {"command": "definitely-not-installed-xyz"},
        "calculator": {"disabled": True},
    }, f'notes_dir = "{tmp_path / "n"}"\n')
    result = run("tools", "test")
    assert result.returncode == 1  # one server failed
    lines = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines()}
    assert lines == {"time": "ok", "broken": "FAILED", "notes": "ok", "clock": "ok",
                     "calculator": "off"}
    assert "command not found" in result.stdout


def test_call_one_tool_directly_is_audited(app_home, tmp_path):
    write_config(app_home, {}, f'notes_dir = "{tmp_path / "n"}"\n')
    result = run("tools", "call", "calculator", "calculate", '{"expression": "(2+3)*4"}')
    assert (result.returncode, result.stdout.strip()) == (0, "20")
    entry = json.loads((app_home / "logs" / "tool-calls.jsonl").read_text().splitlines()[-1])
    assert entry["tool"] == "calculate" and entry["outcome"] == "ok"
    assert entry["arguments"] == {"expression": "(2+3)*4"}

    bad = run("tools", "call", "calculator", "calculate", '{"expression": "1/0"}', "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["ok"] is False


def test_call_mistakes_are_one_line(app_home, tmp_path):
    write_config(app_home, {}, f'notes_dir = "{tmp_path / "n"}"\n')
    for args, needle in [(["nope", "x"], "no MCP server named 'nope'"),
                         (["clock", "nope"], "has no tool 'nope'"),
                         (["clock", "now", "{bad json"], "not valid JSON"),
                         (["clock", "now", "[1]"], "must be a JSON object")]:
        result = run("tools", "call", *args)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr


def test_a_server_writing_garbage_on_stdout_is_one_line(app_home, tmp_path):
    write_config(app_home, {"noisy": {"command": sys.executable,
                                      "args": [str(SERVERS / "misbehaving.py"), "garbage"]}},
                 f'notes_dir = "{tmp_path / "n"}"\n')
    result = run("tools", "call", "noisy", "work", '{"text": "z"}')
    assert (result.returncode, result.stdout.strip()) == (0, "done: z")
    log = app_home / "logs" / "mcp-noisy.log"
    assert result.stderr.splitlines() == [
        f"assistant: MCP server 'noisy' wrote 2,500 lines that are not JSON-RPC (ignored); "
        f"see its log: {log}"]
    assert log.read_text().count("this is not JSON") == 2500


def test_call_with_invalid_unicode_in_the_arguments(app_home, tmp_path):
    write_config(app_home, {"echo": {"command": sys.executable,
                                     "args": [str(SERVERS / "raw.py"), "echo"]}},
                 f'notes_dir = "{tmp_path / "n"}"\n')
    # The JSON escape of a lone surrogate, as a user may paste it.
    result = run("tools", "call", "echo", "work", '{"text": "a\\ud800b"}')
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout) == {"text": "a\ufffdb"}  # what the server received
    entry = json.loads((app_home / "logs" / "tool-calls.jsonl").read_text(encoding="utf-8"))
    assert entry["arguments"] == {"text": "a\ufffdb"} and entry["outcome"] == "ok"

    calc = run("tools", "call", "calculator", "calculate", '{"expression": "\\udc80"}', "--json")
    assert calc.returncode == 1 and "Traceback" not in calc.stderr
    assert "cannot parse" in json.loads(calc.stdout)["error"]


def test_invalid_config_is_reported_with_line_and_column(app_home):
    config = app_home / "config"
    config.mkdir(parents=True)
    (config / "mcp.json").write_text('{"mcpServers": {\n  "a": {"command": "x",}\n}}')
    result = run("tools", "list")
    assert result.returncode == 0
    assert f"{config / 'mcp.json'}:2:" in result.stderr and "without MCP servers" in result.stderr
    assert "tool definitions: 0 tokens" in result.stdout


def test_import_claude_keeps_what_the_user_has(app_home, tmp_path):
    ours = write_config(app_home, {"mine": {"command": "my-server"}})
    claude = tmp_path / "claude_desktop_config.json"
    claude.write_text(json.dumps({"mcpServers": {
        "mine": {"command": "their-version"},
        "fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/x"],
               "env": {"TOKEN": "${TOKEN}"}}}}))
    result = run("tools", "import-claude", str(claude))
    assert result.returncode == 0, result.stderr
    assert "fs" in result.stdout and "kept your own entries for: mine" in result.stdout
    servers = json.loads(ours.read_text())["mcpServers"]
    assert servers["mine"] == {"command": "my-server"}
    assert servers["fs"]["env"] == {"TOKEN": "${TOKEN}"}  # expanded at start, not on disk

    missing = run("tools", "import-claude", str(tmp_path / "none.json"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_approvals_can_be_listed_and_revoked(app_home):
    (app_home / "config").mkdir(parents=True)
    (app_home / "config" / "approvals.json").write_text(
        json.dumps({"notes": {"append_note": "never", "read_note": "always"}}))
    assert "notes/append_note: never" in run("tools", "approvals").stdout
    assert run("tools", "revoke", "notes", "read_note").returncode == 0
    assert json.loads((app_home / "config" / "approvals.json").read_text()) == {
        "notes": {"append_note": "never"}}
    assert run("tools", "revoke", "notes", "read_note").returncode == 2


def test_ask_goes_on_when_a_server_fails(app_home, fixture_model, tmp_path):
    write_config(app_home, {
        "crashy": {"command": sys.executable, "args": ["-c", "raise SystemExit(3)"]},
        "broken": {"command": "definitely-not-installed-xyz"},
        "needs_var": {"command": "x", "env": {"K": "${UNSET_VARIABLE_FOR_TEST}"}},
    }, f'notes_dir = "{tmp_path / "n"}"\n')
    result = run("ask", "--model", str(fixture_model), "--max-tokens", "3", "--json", "hi")
    assert result.returncode == 0, result.stderr
    assert "did not start: command not found" in result.stderr
    assert "'crashy' did not start: the server exited during the handshake" in result.stderr
    assert "UNSET_VARIABLE_FOR_TEST" in result.stderr
    assert json.loads(result.stdout)["stats"]["prompt_tokens"] > 300  # tools offered


def test_ask_says_in_one_line_that_a_server_wrote_garbage(app_home, fixture_model, tmp_path):
    write_config(app_home, {"noisy": {"command": sys.executable,
                                      "args": [str(SERVERS / "misbehaving.py"), "garbage"]}},
                 f'notes_dir = "{tmp_path / "n"}"\n')
    result = run("ask", "--model", str(fixture_model), "--max-tokens", "3", "--json", "hi")
    assert result.returncode == 0, result.stderr
    noise = [line for line in result.stderr.splitlines() if "noisy" in line]
    assert noise == [f"assistant: warning: MCP server 'noisy' wrote 2,000 lines that are not "
                     f"JSON-RPC (ignored); see its log: {app_home / 'logs' / 'mcp-noisy.log'}"]
    assert "Traceback" not in result.stderr


def test_ask_without_tools(app_home, fixture_model):
    result = run("ask", "--model", str(fixture_model), "--max-tokens", "3", "--json",
                 "--no-tools", "hi")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stats"]["prompt_tokens"] < 100
