"""The real ``assistant`` command in a tmux pane, as a user sees it (TESTING.md §4):
start-up, a message and its answer, quitting, and nothing left running."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from assistant.chat.store import ChatStore
from assistant.tui.bench import Tmux, assistant_command, processes_with

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


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
        tmux.wait_for("ctx 0/", timeout=60)  # the model has loaded
        if tools:
            tmux.wait_for("MCP 2/2", timeout=60)
        tmux.type("Hello there")
        tmux.send("Enter")
        tmux.wait_for("Hello there")
        # The random fixture model says something until its end of turn or the token
        # limit; the status bar then shows the reply's speed.
        tmux.wait_for("tok/s", timeout=60)
        tmux.send("C-q")
        deadline = time.monotonic() + 30
        while not tmux.exited():
            assert time.monotonic() < deadline, tmux.screen()
            time.sleep(0.05)
        left = [p for p in processes_with(str(app_home)) if "tmux" not in p]
        assert not left, left
    finally:
        tmux.kill()
    (chat,) = ChatStore().chats()
    messages = ChatStore().messages(chat.id)
    assert messages[0].content == "Hello there" and messages[1].role == "assistant"
