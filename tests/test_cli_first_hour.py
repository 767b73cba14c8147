"""The command line as a new user meets it in the first hour: counts in the right number,
descriptions cut at a word, help for every option, one list of `ask --json` keys, a
first run without network in one line, and signs of life on a terminal while the model
downloads and the servers start (and nothing extra when the output is piped)."""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT
from fake_hub import FakeHub
from test_cli import ASSISTANT, one_line_error
from test_cli import run as run_bytes
from test_cli_tools import run, write_config

LIMIT = 180  # seconds; only a guard against hanging, never a measurement
REPO = "someone/tiny-qwen3"
LONG = ("Look up a word in the dictionary of the realm and return every meaning it has, "
        "with examples of use from the old books, their dates and the places they come from.")


def long_server(tmp_path: Path) -> dict:
    """A real MCP server with one tool whose description is longer than a line."""
    script = tmp_path / "long.py"
    script.write_text(textwrap.dedent(f"""
        from mcp.server import MCPServer

        server = MCPServer(name="long")

        @server.tool(description={LONG!r})
        def lookup(word: str) -> str:
            return word

        server.run()
    """))
    return {"command": sys.executable, "args": [str(script)]}


def test_tools_list_counts_in_the_right_number_and_cuts_at_a_word(app_home, tmp_path):
    write_config(app_home, {"long": long_server(tmp_path)},
                 f'notes_dir = "{tmp_path / "n"}"\n')
    result = run("tools", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "1 tool, 0 resources, 0 prompts" in next(x for x in lines if x.startswith("long "))
    assert "1 tool, 0 resources" in next(x for x in lines if x.startswith("calculator "))
    assert not re.search(r"\b1 (tools|resources|prompts|tokens)\b", result.stdout)
    row = next(x for x in lines if x.strip().startswith("lookup"))
    assert len(row) <= 100 and row.endswith("…"), row
    shown = row.split(maxsplit=1)[1].removesuffix("…")
    assert LONG.startswith(shown) and LONG[len(shown)] == " ", row  # a whole word last


def test_tools_test_says_1_tool(app_home, tmp_path):
    write_config(app_home, {"long": long_server(tmp_path)},
                 f'notes_dir = "{tmp_path / "n"}"\n')
    result = run("tools", "test")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^ok +long .* 1 tool$", result.stdout, re.M), result.stdout
    assert re.search(r"^ok +calculator .* 1 tool$", result.stdout, re.M), result.stdout


def _without_help(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if not helped.get(name):
                    yield f"{path} {name}"
                yield from _without_help(sub, f"{path} {name}")
        elif not action.help or action.help == argparse.SUPPRESS:
            yield f"{path} {'/'.join(action.option_strings) or action.dest}"


def test_every_command_option_and_argument_has_help():
    from assistant.cli.parser import build_parser

    assert list(_without_help(build_parser(), "assistant")) == []


def test_ask_json_keys_are_one_list_in_the_output_the_help_and_the_readme(fixture_model):
    result = run_bytes("ask", "--model", str(fixture_model), "--max-tokens", "3", "--json", "Hi")
    assert result.returncode == 0, result.stderr
    printed = list(json.loads(result.stdout))

    from assistant.cli.parser import build_parser

    ask = build_parser()._subparsers._group_actions[0].choices["ask"]
    (option,) = [a for a in ask._actions if "--json" in a.option_strings]
    helped = [k.strip() for k in option.help.split(":", 1)[1].split(",")]

    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `assistant ask --json`"))
    documented = re.findall(r"`(\w+)`", row.split("|")[2])

    assert printed == helped == documented


def test_summarize_json_into_a_folder_writes_one_file_per_note(fixture_model, tmp_path):
    notes = tmp_path / "notes"
    (notes / "books").mkdir(parents=True)
    (notes / "todo.md").write_text("# Todo\n\n- call Ana\n")
    (notes / "books" / "sapiens.md").write_text("# Sapiens\n\nHumans tell stories.\n")
    out = tmp_path / "out"
    result = subprocess.run([ASSISTANT, "summarize", str(notes), "--model", str(fixture_model),
                             "--max-tokens", "8", "--quiet", "--format", "json",
                             "-o", f"{out}/"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=LIMIT)
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if p.is_file()) == ["books/sapiens.md.summary.json", "digest.json",
                                      "todo.md.summary.json"]
    note = json.loads((out / "todo.md.summary.json").read_text())
    assert note["display"] == "todo.md" and note["summary"]
    digest = json.loads((out / "digest.json").read_text())
    assert digest["stats"]["notes_found"] == 2 and "digest" in digest and "notes" not in digest
    help_text = subprocess.run([ASSISTANT, "summarize", "--help"], capture_output=True,
                               text=True).stdout
    assert "NOTE.summary.json" in " ".join(help_text.split())


# -- the model from the Hub, with no network, and while it downloads ----------------------


def online(endpoint: str) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": endpoint}


def ask_repo(env: dict, *extra: str):
    return subprocess.run([ASSISTANT, "ask", "--no-tools", "--model", REPO, *extra, "hi"],
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=LIMIT, env=env)


def test_no_network_on_first_run_is_one_line_that_says_what_to_do():
    # .invalid never resolves (RFC 6761): the name lookup fails, as with no network at all.
    err = one_line_error(ask_repo(online("http://hub.invalid")),
                         f"cannot download {REPO}: no network (name lookup failed)",
                         "--model DIR", "scripts/make_fixture_model.py")
    assert "Got:" not in err and "ConnectError" not in err


def test_a_hub_that_refuses_the_connection_is_one_line():
    import socket

    with socket.socket() as sock:  # a port that is bound but not listening: refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        one_line_error(ask_repo(online(f"http://127.0.0.1:{port}")),
                       f"cannot download {REPO}: no network (127.0.0.1:{port} refused the "
                       "connection)", "--model DIR")


PROBE = textwrap.dedent("""
    import json, sys
    from assistant.engine.model import resolve_model

    calls = []
    path = resolve_model(sys.argv[1], progress=lambda done, total: calls.append([done, total]))
    print(json.dumps({"path": str(path), "calls": calls}))
""")


def test_resolve_model_reports_the_bytes_of_a_real_download(fixture_model):
    with FakeHub(fixture_model, REPO) as hub:
        result = subprocess.run([sys.executable, "-c", PROBE, REPO], capture_output=True,
                                text=True, timeout=LIMIT, env=online(hub.url))
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert any("/resolve/" in r and r.startswith("GET") for r in hub.requests)
    calls = out["calls"]
    assert calls and calls[-1] == [hub.size, hub.size]  # every byte, of all files
    assert all(0 < done <= total <= hub.size for done, total in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert Path(out["path"], "model.safetensors").stat().st_size == \
        (fixture_model / "model.safetensors").stat().st_size

    # Once it is in the cache, nothing is downloaded and nothing reported.
    again = subprocess.run([sys.executable, "-c", PROBE, REPO], capture_output=True,
                           text=True, timeout=LIMIT, env=online("http://hub.invalid"))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["calls"] == []


def on_terminal(*args: str, env: dict) -> tuple[int, str]:
    """Run the command with stdout and stderr on a pseudo-terminal; all it showed."""
    master, slave = os.openpty()
    proc = subprocess.Popen([ASSISTANT, *args], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, start_new_session=True, env=env)
    os.close(slave)
    screen = b""
    while True:
        ready, _, _ = select.select([master], [], [], LIMIT)
        assert ready, f"nothing more on the terminal: {screen[-800:]!r}"
        try:
            data = os.read(master, 65536)
        except OSError:  # the command ended and closed the terminal
            break
        if not data:
            break
        screen += data
    os.close(master)
    return proc.wait(timeout=LIMIT), screen.decode()


@pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")),
                    reason="needs a POSIX pseudo-terminal")
def test_ask_shows_the_download_on_a_terminal_and_nothing_when_piped(fixture_model, app_home):
    with FakeHub(fixture_model, REPO) as hub:
        code, screen = on_terminal("ask", "--no-tools", "--model", REPO, "--max-tokens", "2",
                                   "hi", env=online(hub.url))
    assert code == 0, screen
    size = hub.size / 1e6
    assert f"\r\x1b[Kdownloading {REPO}: {size:.1f} MB of {size:.1f} MB (100%)" in screen
    # Cleared before the answer: the line ends in an erase, then the answer follows.
    after = screen.split(f"(100%)", 1)[1]
    assert after.startswith("\r\x1b[K") and "downloading" not in after

    # Piped, the same first run prints the answer and nothing about the download.
    import shutil

    shutil.rmtree(Path(os.environ["HF_HOME"]), ignore_errors=True)
    with FakeHub(fixture_model, REPO) as hub:
        piped = ask_repo(online(hub.url), "--max-tokens", "2", "--json")
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == b"" and json.loads(piped.stdout)["model"].endswith("1" * 40)


# -- servers starting --------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")),
                    reason="needs a POSIX pseudo-terminal")
@pytest.mark.parametrize("command", ["list", "test"])
def test_tools_show_servers_starting_on_a_terminal_then_clear_it(app_home, tmp_path, command):
    write_config(app_home, {"long": long_server(tmp_path)},
                 f'notes_dir = "{tmp_path / "n"}"\n')
    code, screen = on_terminal("tools", command, env={**os.environ, "COLUMNS": "200"})
    assert code == 0, screen
    # Shown at once, before the slowest server (a second interpreter) is up.
    assert "\r\x1b[Kstarting 4 servers… " in screen, screen[:400]
    assert "(waiting for " in screen and "long" in screen.split("(waiting for ", 1)[1]
    before, listing = screen.rsplit("\r\x1b[K", 1)  # the last erase clears the line
    assert "starting" not in listing and "long" in listing
    piped = run("tools", command)
    assert piped.returncode == 0 and "starting" not in piped.stderr + piped.stdout


def test_a_download_cut_off_part_way_is_resumed_on_the_next_run(fixture_model):
    """The first run dies while the weights are half written (a Ctrl+C, a crash); the
    next run fetches what is missing instead of refusing the half-filled cache, and its
    count of bytes only rises and ends at 100%."""
    import threading
    import time

    hold = threading.Event()
    weights = "model.safetensors"
    with FakeHub(fixture_model, REPO, hold=hold) as hub:
        first = subprocess.Popen([sys.executable, "-c", PROBE, REPO], env=online(hub.url),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + LIMIT
            while not any(r.startswith("GET") and r.endswith(weights) for r in hub.requests):
                assert first.poll() is None and time.monotonic() < deadline, hub.requests
                time.sleep(0.05)
        finally:
            first.kill()
            first.wait()
        hold.set()
        again = subprocess.run([sys.executable, "-c", PROBE, REPO], capture_output=True,
                               text=True, timeout=LIMIT, env=online(hub.url))
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout)
    size = (fixture_model / weights).stat().st_size
    assert Path(out["path"], weights).stat().st_size == size
    calls = out["calls"]
    assert calls and calls[-1][0] == calls[-1][1]  # 100% at the end
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
