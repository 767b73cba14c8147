"""Reading mcp.json: Claude Desktop's format, our keys, ${VAR}, and mistakes."""

from __future__ import annotations

import json

import pytest

from assistant.mcp.config import BUILTIN, DEFAULT_TIMEOUT, import_claude, load_servers


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


# The timeout as written in mcp.json: Python's json reads NaN and Infinity as numbers.
BAD_TIMEOUTS = ["NaN", "Infinity", "-Infinity", "0", "-5", "1e18", "3601", "1e999",
                '"30"', "true", "null", "[]"]


@pytest.mark.parametrize("raw", BAD_TIMEOUTS)
def test_a_timeout_out_of_range_is_one_line_and_the_default(tmp_path, raw):
    servers, problems = load(tmp_path, '{"mcpServers": {"web": {"url": "http://h/mcp", '
                                       f'"timeout": {raw}}}, "clock": {{"timeout": {raw}}}}}}}')
    assert servers["web"].timeout == DEFAULT_TIMEOUT  # the server still runs
    assert servers["clock"].timeout == DEFAULT_TIMEOUT and servers["clock"].builtin
    assert len(problems) == 2, problems
    for name, problem in zip(("web", "clock"), problems):
        assert problem.startswith(f"{tmp_path / 'mcp.json'}: server {name!r}: timeout = ")
        assert "using 30" in problem and "\n" not in problem


def test_the_edges_of_the_timeout_range(tmp_path):
    servers, problems = load(tmp_path, '{"mcpServers": {"a": {"command": "x", "timeout": 3600},'
                                       ' "b": {"command": "x", "timeout": 0.001}}}')
    assert problems == [] and servers["a"].timeout == 3600 and servers["b"].timeout == 0.001


@pytest.mark.parametrize("text,needle", ids=["deep", "digits"], argvalues=[
    ('{"mcpServers": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested too deeply"),
    ('{"mcpServers": {"a": {"command": "x", "timeout": 1' + "0" * 5000 + "}}}",
     "too many digits"),
])
def test_a_file_python_cannot_hold_is_one_line(tmp_path, text, needle):
    servers, problems = load(tmp_path, text)
    assert servers == {} and len(problems) == 1 and needle in problems[0]
    with pytest.raises(ValueError, match=needle):  # the import reads files the same way
        import_claude(tmp_path / "mcp.json", tmp_path / "ours.json")


def test_invalid_unicode_in_a_value_is_replaced(tmp_path):
    servers, problems = load(tmp_path, r'{"mcpServers": {"a": {"command": "x\ud800", '
                                       r'"args": ["\udfff"], "env": {"K": "\ud800"}}}}')
    assert problems == []
    a = servers["a"]
    assert (a.command, a.args, a.env) == ("x\ufffd", ("\ufffd",), {"K": "\ufffd"})
    for text in (a.command, *a.args, *a.env.values()):
        text.encode("utf-8")  # what starting the server needs
