"""Reading mcp.json: Claude Desktop's format, our keys, ${VAR}, and mistakes."""

from __future__ import annotations

import json

import pytest

from assistant.mcp.config import BUILTIN, load_servers


def load(tmp_path, text: str):
    path = tmp_path / "mcp.json"
    path.write_text(text)
    servers, problems = load_servers(path, notes_root=tmp_path / "notes")
    return {s.name: s for s in servers}, problems


def test_no_file_means_our_servers(tmp_path):
    servers, problems = load_servers(tmp_path / "none.json", notes_root=tmp_path / "n")
    assert [s.name for s in servers] == list(BUILTIN) and problems == []
    notes = servers[0]
    assert notes.args[-2:] == ("--root", str(tmp_path / "n")) and notes.builtin


def test_claude_desktop_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "s3cret")
    servers, problems = load(tmp_path, json.dumps({"mcpServers": {
        "fs": {"command": "npx", "args": ["-y", "server-filesystem", "${HOME}"],
               "env": {"TOKEN": "${API_TOKEN}"}, "cwd": "~"},
        "web": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer ${API_TOKEN}"},
                "timeout": 5, "trust": True},
        "clock": {"disabled": True},
    }}))
    assert problems == []
    assert servers["fs"].env == {"TOKEN": "s3cret"} and servers["fs"].transport == "stdio"
    assert servers["fs"].args[-1] != "${HOME}"
    assert servers["web"].transport == "http" and servers["web"].timeout == 5.0
    assert servers["web"].headers == {"Authorization": "Bearer s3cret"} and servers["web"].trust
    assert servers["clock"].disabled and servers["clock"].builtin  # adjusted, not replaced
    assert "notes" in servers and "calculator" in servers


def test_replacing_a_builtin(tmp_path):
    servers, _ = load(tmp_path, '{"mcpServers": {"notes": {"command": "my-notes"}}}')
    assert servers["notes"].command == "my-notes" and not servers["notes"].builtin


@pytest.mark.parametrize("entry,needle", [
    ({"args": ["x"]}, 'needs "command"'),
    ({"command": "x", "url": "http://h"}, "not both"),
    ({"url": "ftp://h"}, "not http(s)"),
    ({"command": "x", "args": "not a list"}, "list of strings"),
    ({"command": "x", "env": {"A": 1}}, "map names to strings"),
    ({"command": "x", "timeout": 0}, "above 0"),
    ({"command": "x", "trust": "yes"}, "true or false"),
    ({"command": "x", "env": {"A": "${NOT_SET_ANYWHERE_XYZ}"}}, "NOT_SET_ANYWHERE_XYZ"),
    ("just a string", "expected an object"),
])
def test_a_bad_entry_skips_that_server_alone(tmp_path, entry, needle):
    servers, problems = load(tmp_path, json.dumps({"mcpServers": {"bad": entry,
                                                                  "ok": {"command": "y"}}}))
    assert "bad" not in servers and "ok" in servers
    assert len(problems) == 1 and needle in problems[0] and "'bad'" in problems[0]


def test_invalid_json_means_no_servers_and_says_where(tmp_path):
    servers, problems = load(tmp_path, '{\n  "mcpServers": {\n    "a": {"command": "x"\n  }\n}')
    assert servers == {}
    assert len(problems) == 1 and "mcp.json:5:2:" in problems[0]


def test_wrong_shape(tmp_path):
    servers, problems = load(tmp_path, '{"servers": {}}')
    assert servers == {} and "mcpServers" in problems[0]
