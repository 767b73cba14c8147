"""The real ``assistant`` command in a tmux pane, as a user sees it (TESTING.md §4):
start-up, a message and its answer, quitting, and nothing left running; and a kill -9
in the middle of an answer."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from assistant.chat.store import ChatStore
from assistant.bench.chat_app import Tmux, assistant_command, processes_with

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def quit_app(tmux: Tmux) -> None:
    """ctrl+q, then the pane's process must end within 30 s."""
    tmux.send("C-q")
    deadline = time.monotonic() + 30
    while not tmux.exited():
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.05)


@pytest.mark.parametrize("tools", [False, True], ids=["no-tools", "mcp-config"])
def test_chat_in_a_real_terminal(fixture_model, app_home, tmp_path, tools):
    command = [*assistant_command(), "--model", str(fixture_model), "--no-think"]
    if tools:
        notes = tmp_path / "notes"
        notes.mkdir()
        config = tmp_path / "mcp.json"  # the built-in servers, with one switched off
        config.write_text(json.dumps({"mcpServers": {"calculator": {"disabled": True}}}))
        command += ["--mcp-config", str(config)]
    else:
        command.append("--no-tools")
    settings = app_home / "config" / "settings.toml"
    settings.parent.mkdir(parents=True)
    settings.write_text("max_tokens = 24\n")  # a short answer from the random model
    tmux = Tmux()
    env = {"ASSISTANT_HOME": str(app_home), "HOME": str(tmp_path / "user"),
           "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color"}
    try:
        tmux.start(command, env)
        tmux.wait_for("Message (Enter sends")
        tmux.wait_for("Try:")  # the start screen
        tmux.wait_for("ctx 0/", timeout=60)  # the model has loaded
        if tools:
            tmux.wait_for("MCP 2/2", timeout=60)
        tmux.type("Hello there")
        tmux.send("Enter")
        tmux.wait_for("Hello there")
        # The random fixture model says something until its end of turn or the token
        # limit; the status bar then shows the reply's speed.
        tmux.wait_for("tok/s", timeout=60)
        quit_app(tmux)
        left = [p for p in processes_with(str(app_home)) if "tmux" not in p]
        assert not left, left
    finally:
        tmux.kill()
    (chat,) = ChatStore().chats()
    messages = ChatStore().messages(chat.id)
    assert messages[0].content == "Hello there" and messages[1].role == "assistant"
    if not tools:  # `assistant` reopens that chat; `assistant --new` opens the start screen
        for extra, shown, absent in (([], "Hello there", "Try:"),
                                     (["--new"], "Try:", "Hello there")):
            tmux = Tmux()
            try:
                tmux.start(command + extra, env)
                tmux.wait_for(shown, timeout=60)
                assert absent not in tmux.screen()
                quit_app(tmux)
            finally:
                tmux.kill()
        assert len(ChatStore().chats()) == 1


def _words(screen: str) -> set[str]:
    """Longer words on the screen above the status bar and the footer."""
    return set(re.findall(r"\w{6,}", "\n".join(screen.rstrip("\n").splitlines()[:-2])))


def _kill_app(marker: str) -> None:
    """SIGKILL every process of this test's app (found by its unique ASSISTANT_HOME)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            mine = marker.encode() in (proc / "environ").read_bytes()
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if mine and b"tmux" not in command:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_kill_9_mid_answer_keeps_what_was_on_screen(fixture_model, app_home, tmp_path):
    """The random model streams a long answer; the app is killed with SIGKILL while it
    does; the database still has what the screen showed, and reads as interrupted."""
    settings = app_home / "config" / "settings.toml"
    settings.parent.mkdir(parents=True)
    settings.write_text("max_tokens = 20000\n")
    tmux = Tmux()
    env = {"ASSISTANT_HOME": str(app_home), "HOME": str(tmp_path / "user"),
           "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color"}
    db = app_home / "data" / "chats.db"

    def answer() -> str:
        try:
            reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                # Any status: a row finished meanwhile must not read as "stopped growing".
                row = reader.execute("SELECT content FROM messages WHERE role = 'assistant'"
                                     " ORDER BY position DESC LIMIT 1").fetchone()
            finally:
                reader.close()
        except sqlite3.Error:
            return ""
        return row[0] if row else ""

    def until(condition, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{what}; the screen shows:\n{tmux.screen()}"
            time.sleep(0.05)

    try:
        tmux.start([*assistant_command(), "--model", str(fixture_model), "--no-think",
                    "--no-tools"], env)
        tmux.wait_for("ctx 0/", timeout=120)  # the model has loaded
        idle = _words(tmux.screen())
        tmux.type("Tell me a long story")
        tmux.send("Enter")
        until(lambda: len(answer()) > 400, "no streaming answer saved")
        shown = tmux.screen()
        saved = answer()
        # A write after the screen was captured holds everything the screen showed.
        until(lambda: answer() != saved, "the saved answer stopped growing")
        _kill_app(str(app_home))
        until(tmux.exited, "the app did not die")
    finally:
        tmux.kill()
    on_screen = _words(shown) - idle
    assert len(on_screen) >= 5, shown
    partial = answer()
    found = {w for w in on_screen if w in partial}
    assert len(found) >= 0.9 * len(on_screen), (on_screen - found, shown)
    (chat,) = ChatStore().chats()
    user, assistant = ChatStore().messages(chat.id)
    assert user.content == "Tell me a long story"
    assert assistant.status == "interrupted" and assistant.content.startswith(partial[:400])


def test_first_run_shows_the_download_in_the_status_bar(fixture_model, app_home, tmp_path):
    """The model is a repo id not yet in the cache: the real command downloads it from a
    loopback hub (``HF_ENDPOINT``), and the status bar shows bytes and percentage while
    it does; then the model loads and the app is ready."""
    import threading

    from fake_hub import FakeHub

    hold = threading.Event()  # each file's second half waits: the download is seen part way
    repo = "someone/tiny-qwen3"
    tmux = Tmux(width=100)
    try:
        with FakeHub(fixture_model, repo, hold=hold) as hub:
            env = {"ASSISTANT_HOME": str(app_home), "HOME": str(tmp_path / "user"),
                   "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0",
                   "HF_ENDPOINT": hub.url, "TERM": "xterm-256color"}
            tmux.start([*assistant_command(), "--model", repo, "--no-tools"], env)
            tmux.wait_for(f"downloading {repo}:", timeout=60)
            line = next(row for row in tmux.screen().splitlines() if "downloading" in row)
            percent = int(re.search(r"\((\d+)%\)", line).group(1))
            assert 0 < percent < 100, line
            assert re.search(r"[\d.]+ (KB|MB) of [\d.]+ (KB|MB)", line), line
            hold.set()
            tmux.wait_for("ctx 0/", timeout=120)  # downloaded, then loaded
            assert "downloading" not in tmux.screen()
        quit_app(tmux)
    finally:
        hold.set()
        tmux.kill()
