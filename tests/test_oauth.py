"""OAuth for remote MCP servers, end to end: a real OAuth-protected Streamable HTTP server
on loopback (tests/servers/oauth_server.py), the real ``assistant tools login`` with its
loopback listener (the test plays the browser with httpx), the stored token used by
``tools list`` and ``tools call``, refreshed when it runs out, and forgotten by
``tools logout``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from test_cli_tools import run, write_config

SERVER = Path(__file__).parent / "servers" / "oauth_server.py"
ASSISTANT = str(Path(sys.executable).with_name("assistant"))


@pytest.fixture
def guarded(tmp_path, request):
    """Start the server; ``request.param`` (if any) is the access tokens' lifetime."""
    def start(lifetime: int = 3600) -> str:
        port_file = tmp_path / f"port-{lifetime}"
        proc = subprocess.Popen([sys.executable, str(SERVER), str(port_file), str(lifetime)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        request.addfinalizer(lambda: (proc.kill(), proc.wait()))
        for _ in range(600):
            if port_file.exists() and port_file.read_text():
                return f"http://127.0.0.1:{port_file.read_text()}/mcp"
            assert proc.poll() is None, "the OAuth test server exited"
            time.sleep(0.05)
        raise AssertionError("the OAuth test server did not start")
    return start


def login(app_home: Path) -> subprocess.CompletedProcess:
    """``tools login --no-browser``, with the test as the browser: read the printed URL,
    fetch it (the server approves at once and redirects to the loopback listener)."""
    proc = subprocess.Popen([ASSISTANT, "tools", "login", "guarded", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=os.environ.copy())
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("http://"):
            break
    assert lines and lines[-1].startswith("http://"), (lines, proc.stderr.read())
    answer = httpx.get(lines[-1].strip(), follow_redirects=True, timeout=30)
    assert answer.status_code == 200 and "Logged in" in answer.text
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines) + out, err)


def token_path(app_home: Path) -> Path:
    return app_home / "config" / "oauth" / "guarded.json"


def test_login_list_logout(app_home, guarded):
    url = guarded()
    write_config(app_home, {"guarded": {"url": url}})

    result = run("tools", "list", "--json")  # no login yet: one line naming the command
    assert result.returncode == 0, result.stderr
    servers = {s["name"]: s for s in json.loads(result.stdout)}
    line = "MCP server 'guarded' needs you to log in: run assistant tools login guarded"
    assert servers["guarded"]["state"] == "failed"
    assert servers["guarded"]["error"] == line
    assert "Traceback" not in result.stderr
    assert not token_path(app_home).exists()  # no registration or tokens as a side effect

    done = login(app_home)
    assert done.returncode == 0, done.stderr
    assert "logged in to 'guarded'" in done.stdout
    path = token_path(app_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["tokens"]["access_token"] and stored["client"]["client_id"]

    result = run("tools", "list", "--json")
    servers = {s["name"]: s for s in json.loads(result.stdout)}
    assert servers["guarded"]["state"] == "ready", servers["guarded"]
    assert {t["name"] for t in servers["guarded"]["tools"]} == {"secret", "refreshes"}
    called = run("tools", "call", "guarded", "secret")
    assert called.returncode == 0 and "the owl flies at night" in called.stdout

    out = run("tools", "logout", "guarded")
    assert out.returncode == 0 and "logged out" in out.stdout
    assert not path.exists()
    result = run("tools", "list", "--json")
    servers = {s["name"]: s for s in json.loads(result.stdout)}
    assert servers["guarded"]["error"] == line


def test_expired_access_token_is_refreshed(app_home, guarded):
    url = guarded(lifetime=1)  # every access token runs out after a second
    write_config(app_home, {"guarded": {"url": url}})
    assert login(app_home).returncode == 0
    before = json.loads(token_path(app_home).read_text())["tokens"]
    time.sleep(2)  # not a timed assertion: waits for the token to run out
    called = run("tools", "call", "guarded", "refreshes")
    assert called.returncode == 0, called.stderr
    assert int(called.stdout.strip().splitlines()[-1]) >= 1
    after = json.loads(token_path(app_home).read_text())["tokens"]
    assert after["access_token"] != before["access_token"]
    assert stat.S_IMODE(token_path(app_home).stat().st_mode) == 0o600


def test_login_to_a_local_server_is_refused(app_home):
    write_config(app_home, {"local": {"command": "true"}})
    result = run("tools", "login", "local", "--no-browser")
    assert result.returncode != 0
    assert "only remote (url) servers log in" in result.stderr
    assert "Traceback" not in result.stderr


def test_ask_without_a_login_says_so_in_one_line(app_home, guarded, fixture_model, tmp_path):
    """``ask`` goes on without the server, says the one line and never starts a browser
    flow (no registration or tokens appear)."""
    write_config(app_home, {"guarded": {"url": guarded()}},
                 f'notes_dir = "{tmp_path / "n"}"\n')
    result = run("ask", "--model", str(fixture_model), "--max-tokens", "3", "--json", "hi")
    assert result.returncode == 0, result.stderr
    line = "MCP server 'guarded' needs you to log in: run assistant tools login guarded"
    about = [l for l in result.stderr.splitlines() if "guarded" in l]
    assert len(about) == 1 and about[0].endswith(f": {line}"), about
    assert "Open this URL" not in result.stdout + result.stderr
    assert not token_path(app_home).exists()
    called = run("tools", "call", "guarded", "secret")
    assert called.returncode != 0
    assert called.stderr.strip() == f"assistant: {line}"


def test_token_refused_before_its_time_is_refreshed(app_home, guarded):
    """A stored token with no known expiry that the server no longer takes (401) is
    refreshed once and the call goes on, instead of asking for a login."""
    write_config(app_home, {"guarded": {"url": guarded(lifetime=1)}})
    assert login(app_home).returncode == 0
    path = token_path(app_home)
    stored = json.loads(path.read_text())
    assert stored["as_metadata"]["token_endpoint"].endswith("/token")
    stored["expires_at"] = None  # as for a token issued without expires_in
    path.write_text(json.dumps(stored))
    time.sleep(2)  # not a timed assertion: the server's token runs out
    called = run("tools", "call", "guarded", "refreshes")
    assert called.returncode == 0, called.stderr
    assert int(called.stdout.strip().splitlines()[-1]) >= 1
