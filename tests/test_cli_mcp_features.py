"""`assistant tools call` with what a call can carry besides text, through the real
command over real stdio (tests/servers/features.py): one progress line on a terminal,
cleared after; a server's questions asked on the terminal, declined without one; a page
opened only on a yes; the result's images and links as text."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import pytest

from mcp_helpers import SERVERS
from test_cli_tools import ASSISTANT, run, write_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")),
                                reason="needs a POSIX pseudo-terminal")

FEATURES = {"command": sys.executable, "args": [str(SERVERS / "features.py")]}
LIMIT = 120  # seconds; only a guard against hanging, never a measurement


@pytest.fixture
def configured(app_home, tmp_path):
    write_config(app_home, {"features": FEATURES}, f'notes_dir = "{tmp_path / "n"}"\n')


class Terminal:
    """The command on a pseudo-terminal (stdin, stdout and stderr); we type and read."""

    def __init__(self, *args: str, env: dict | None = None):
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen([ASSISTANT, *args], stdin=slave, stdout=slave,
                                     stderr=slave, start_new_session=True,
                                     env=env or os.environ.copy())
        os.close(slave)
        self.screen = b""

    def _more(self) -> bool:
        ready, _, _ = select.select([self.master], [], [], LIMIT)
        assert ready, f"nothing more on the terminal: {self.screen[-800:]!r}"
        try:
            data = os.read(self.master, 4096)
        except OSError:  # the command ended and closed the terminal
            return False
        self.screen += data
        return bool(data)

    def wait_for(self, text: str) -> None:
        while text.encode() not in self.screen:
            assert self._more(), f"no {text!r} on the terminal: {self.screen[-800:]!r}"

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self) -> str:
        while self._more():
            pass
        assert self.proc.wait(timeout=LIMIT) == 0, self.screen[-800:]
        os.close(self.master)
        return self.screen.decode()


def test_progress_is_one_line_on_a_terminal_and_cleared(configured):
    term = Terminal("tools", "call", "features", "slow_count", '{"n": 3}')
    screen = term.finish()
    for step in (1, 2, 3):
        assert f"\r\x1b[Kfeatures/slow_count: {step}/3 step {step}" in screen
    assert screen.endswith("\r\x1b[Kcounted to 3\r\n")  # cleared before the result
    piped = run("tools", "call", "features", "slow_count", '{"n": 3}')
    assert (piped.stdout, piped.stderr) == ("counted to 3\n", "")  # no terminal: no line


def test_a_form_is_asked_field_by_field(configured):
    term = Terminal("tools", "call", "features", "sign_up")
    term.wait_for("features asks: Tell us about yourself")
    term.wait_for("Your name (required): ")
    term.type("")  # required: asked again
    term.wait_for("this one is required")
    term.type("Ann")
    term.wait_for("age (a whole number; required): ")
    term.type("forty")
    term.wait_for("a whole number\r\n")
    term.type("200")
    term.wait_for("at most 150")
    term.type("41")
    term.wait_for("height (in metres; a number): ")
    term.type("")
    term.wait_for("subscribe (y/n) [no]: ")
    term.type("")
    term.wait_for("colour ([1] red [2] green [3] blue): ")
    term.type("2")
    term.wait_for("Send these answers to features? [y] yes  [N] no: ")
    term.type("y")
    result = json.loads(term.finish().splitlines()[-1])
    assert result == {"action": "accept", "content": {"name": "Ann", "age": 41,
                                                      "subscribe": False, "colour": "green"}}


def test_a_form_not_sent_is_declined_and_ctrl_d_cancels(configured):
    term = Terminal("tools", "call", "features", "sign_up")
    term.wait_for("Your name (required): ")
    term.type("Ann")
    term.wait_for("age (")
    term.type("3")
    for _ in range(3):
        term.wait_for("]: ") if _ else term.wait_for("a number): ")
        term.type("")
    term.wait_for("Send these answers")
    term.type("")  # not a yes
    assert json.loads(term.finish().splitlines()[-1]) == {"action": "decline"}

    term = Terminal("tools", "call", "features", "sign_up")
    term.wait_for("Your name (required): ")
    os.write(term.master, b"\x04")  # Ctrl+D
    assert json.loads(term.finish().splitlines()[-1]) == {"action": "cancel"}


def test_without_a_terminal_questions_are_declined(configured):
    for tool in ("sign_up", "connect_account"):
        result = run("tools", "call", "features", tool)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"action": "decline"}


def test_a_page_opens_only_on_yes(configured, tmp_path):
    opened = tmp_path / "opened.txt"
    env = os.environ.copy()
    # webbrowser runs $BROWSER with the URL in place of %s: here, a note of it.
    env["BROWSER"] = f"sh -c 'echo \"$0\" >> {opened}' %s"
    term = Terminal("tools", "call", "features", "connect_account", env=env)
    term.wait_for("features asks you to open a page: Log in to connect your account")
    term.wait_for("https://example.com/connect?x=1")
    # Only once asked: keys typed before the question are dropped, as they should be.
    term.wait_for("Open it in your browser?")
    term.type("")
    assert json.loads(term.finish().splitlines()[-1]) == {"action": "decline"}
    assert not opened.exists()

    term = Terminal("tools", "call", "features", "connect_account", env=env)
    term.wait_for("Open it in your browser?")
    term.type("yes")
    assert json.loads(term.finish().splitlines()[-1]) == {"action": "accept"}
    assert opened.read_text().strip() == "https://example.com/connect?x=1"


def test_results_show_images_and_links_as_text_and_schema_breaks_as_one_line(configured):
    result = run("tools", "call", "features", "map_picture")
    assert result.stdout == ("Here is the map.\n[image: image/png, 12.0 KB]\n"
                             "[resource: library://maps/full (full map, text/plain)]\n")
    broken = run("tools", "call", "features", "broken_weather", '{"city": "Oslo"}')
    assert broken.returncode == 1
    assert broken.stderr == ("assistant: features/broken_weather returned structuredContent "
                             "that breaks its outputSchema at celsius: 'warm' is not of type "
                             "'number'\n")


def test_ask_shows_progress_on_one_terminal_line(engine, hf_tokenizer, fixture_model,
                                                 tmp_path, monkeypatch):
    """`ask`'s printer as the observer of a real turn (scripted model, real server), its
    stderr a real terminal."""
    from assistant.chat.tooling import make_tools
    from assistant.chat.turn import Turn
    from assistant.cli.ask import _Printer
    from assistant.engine import ChatCache, GenerationOptions
    from assistant.mcp.host import McpHost
    from assistant.tokens import counter_for
    from mcp_helpers import features
    from scripted import Rounds
    from test_turn import call

    monkeypatch.setattr("assistant.chat.turn.PROGRESS_EVERY_S", 0)  # every report shown
    master, slave = os.openpty()
    terminal = os.fdopen(slave, "w", encoding="utf-8")
    monkeypatch.setattr(sys, "stderr", terminal)
    host = McpHost([features()], log_dir=tmp_path / "logs")
    host.start()
    try:
        tools = make_tools(host, [features()], counter_for(fixture_model),
                           lambda request: "once")
        options = GenerationOptions(thinking=False, max_tokens=60, logits_processors=[
            Rounds(hf_tokenizer, call("slow_count", n=2), "Done.")])
        printer = _Printer(False, False)
        outcome = Turn(engine, [{"role": "user", "content": "count"}], options,
                       chat=ChatCache(), observer=printer, tools=tools,
                       prefill_after=False).run()
    finally:
        host.close()
        terminal.flush()
    screen = b""
    while select.select([master], [], [], 0)[0]:
        screen += os.read(master, 65536)
    os.close(master)
    terminal.close()
    assert outcome.calls[0].result == "counted to 2"
    shown = screen.decode()
    assert "\r\x1b[K[tool] features/slow_count: 2/2 step 2" in shown
    assert "\r\x1b[K[tool] features/slow_count: ok" in shown  # the line cleared first


def test_a_flood_of_progress_reaches_the_front_end_a_few_times(engine, hf_tokenizer,
                                                                fixture_model, tmp_path):
    from assistant.chat.tooling import make_tools
    from assistant.chat.turn import Turn
    from assistant.engine import ChatCache, GenerationOptions
    from assistant.mcp.host import McpHost
    from assistant.tokens import counter_for
    from mcp_helpers import features
    from scripted import Rounds
    from test_turn import Recorder, call

    class Progressed(Recorder):
        def on_tool_call(self, call):
            super().on_tool_call(call)
            if call.progress:
                reports.append(call.progress)

    reports = []
    recorder = Progressed(["once"])
    host = McpHost([features()], log_dir=tmp_path / "logs")
    host.start()
    try:
        tools = make_tools(host, [features()], counter_for(fixture_model), recorder.approve)
        options = GenerationOptions(thinking=False, max_tokens=60, logits_processors=[
            Rounds(hf_tokenizer, call("flood_progress"), "Done.")])
        outcome = Turn(engine, [{"role": "user", "content": "flood"}], options,
                       chat=ChatCache(), observer=recorder, tools=tools,
                       prefill_after=False).run()
    finally:
        host.close()
    assert outcome.calls[0].result == "flooded"
    # 3,000 reports; the front end hears at most one per PROGRESS_EVERY_S (a bound on
    # the count, which holds unless the reports take more than 30 s to arrive).
    assert 1 <= len(reports) < 3000 // 10
    assert all(len(r) < 250 for r in reports)


def test_ask_shows_resource_links_with_how_to_attach_them(engine, hf_tokenizer,
                                                          fixture_model, tmp_path, capsys):
    from assistant.chat.tooling import make_tools
    from assistant.chat.turn import Turn
    from assistant.cli.ask import _Printer
    from assistant.engine import ChatCache, GenerationOptions
    from assistant.mcp.host import McpHost
    from assistant.tokens import counter_for
    from mcp_helpers import features
    from scripted import Rounds
    from test_turn import call

    host = McpHost([features()], log_dir=tmp_path / "logs")
    host.start()
    try:
        tools = make_tools(host, [features()], counter_for(fixture_model),
                           lambda request: "once")
        options = GenerationOptions(thinking=False, max_tokens=60, logits_processors=[
            Rounds(hf_tokenizer, call("map_picture"), "Done.")])
        outcome = Turn(engine, [{"role": "user", "content": "map"}], options,
                       chat=ChatCache(), observer=_Printer(False, False), tools=tools,
                       prefill_after=False).run()
    finally:
        host.close()
    sent = [m["content"] for m in outcome.messages if m["role"] == "tool"]
    assert sent == ["Here is the map.\n[image: image/png, 12.0 KB]\n"
                    "[resource: library://maps/full (full map, text/plain)]"]
    assert ("[tool]   resource: library://maps/full (full map, text/plain); attach it with "
            "--attach features:library://maps/full\n") in capsys.readouterr().err
