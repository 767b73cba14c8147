"""The chat app as a new user first meets it: the start screen, the last chat reopened
(``--new`` for a fresh one), the chat list, the command palette, every screen's empty
state, and a sign of life during each long wait. Real engine, servers and store."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from mcp_helpers import raw
from scripted import Rounds, Script
from test_tui import app_for, running, send, until
from textual.command import CommandList
from textual.widgets import ListItem

from assistant.chat.store import DEFAULT_TITLE, ChatStore
from assistant.cli import main
from assistant.tui.app import ChatApp
from assistant.tui.mcp_screens import PickerScreen, command_choices
from assistant.tui.screens import NO_SERVERS, ToolsScreen
from assistant.tui.widgets import AssistantMessage, Status, StatusBar, Welcome

pytestmark = pytest.mark.asyncio


def text_of(widget) -> str:
    return str(widget.render())


def saved_chat(title: str, *contents: str) -> int:
    store = ChatStore()
    chat = store.create_chat(title)
    for i, content in enumerate(contents):
        store.add_message(chat, {"role": "user" if i % 2 == 0 else "assistant",
                                 "content": content})
    store.close()
    return chat


async def test_the_start_screen_says_model_mode_what_to_try_and_where_help_is(
        engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Hi."), thinking=False)
    async with running(app) as pilot:
        await until(pilot, lambda: app.query(Welcome))
        text = text_of(app.query_one(Welcome))
        assert engine.label in text and "Thinking off" in text
        assert "Try:" in text and "/summarize" in text
        assert "@" in text and "/think" in text  # resources, prompts, the soft switch
        assert "ctrl+p" in text and "F1" in text  # where help is
        await pilot.press("ctrl+t")  # the mode shown follows the toggle
        await until(pilot, lambda: "Thinking on" in text_of(app.query_one(Welcome)))
        await send(pilot, "Hello")
        assert not app.query(Welcome)  # the chat takes its place
        await pilot.press("ctrl+n")
        await until(pilot, lambda: app.query(Welcome))  # a new chat starts on it again
        await pilot.press("f1")  # the keys panel
        await until(pilot, lambda: app.screen.query("HelpPanel"))


async def test_the_last_chat_reopens_and_new_starts_fresh(engine, hf_tokenizer):
    chat = saved_chat("Earlier", "My name is Ada.", "Hello Ada.")
    app = app_for(engine, Script(hf_tokenizer, "Ada."))
    app.reopen = True  # `assistant` / `assistant chat`
    async with running(app) as pilot:
        await until(pilot, lambda: app.chat_id == chat and app.query(AssistantMessage))
        assert "Hello Ada." in app.query_one(AssistantMessage).all_text
        assert not app.query(Welcome)
        await send(pilot, "What is my name?")
        assert len(ChatStore().history(chat)) == 4
    fresh = app_for(engine, Script(hf_tokenizer, "Hi."))  # `assistant --new`
    async with running(fresh) as pilot:
        await until(pilot, lambda: fresh.query(Welcome))
        assert fresh.chat_id is None and not fresh.history


async def test_an_empty_last_chat_is_reused_not_piled_up(engine, hf_tokenizer):
    empty = ChatStore().create_chat()  # a start that never sent anything
    app = app_for(engine, Script(hf_tokenizer, "Hi."))
    async with running(app) as pilot:
        await until(pilot, lambda: app.query(Welcome))
        assert app.chat_id == empty
        await pilot.press("ctrl+n")  # the open chat is empty: it stays the new chat
        assert app.chat_id == empty
        await send(pilot, "Plan a day in Lisbon")
        (only,) = ChatStore().chats()
        assert only.id == empty and only.title == "Plan a day in Lisbon" != DEFAULT_TITLE
        assert [m["content"] for m in ChatStore().history(empty)] == ["Plan a day in Lisbon",
                                                                      "Hi."]
        # An empty chat opened and deleted is gone: the next message makes a new one.
        await app.resume(ChatStore().create_chat())
        await app.action_delete_chat()
        assert app.chat_id is None
        await send(pilot, "Again")
        assert [c.title for c in ChatStore().chats()] == ["Again", "Plan a day in Lisbon"]


@pytest.mark.parametrize("argv, reopen", [([], True), (["chat"], True), (["--new"], False),
                                          (["chat", "--new"], False)])
async def test_the_command_line_reopens_unless_new(monkeypatch, argv, reopen):
    seen = []
    monkeypatch.setattr(ChatApp, "run", lambda self: seen.append(self.reopen))
    terminal = SimpleNamespace(isatty=lambda: True)  # the app needs one; it never draws here
    monkeypatch.setattr("sys.stdin", terminal)
    monkeypatch.setattr("sys.stdout", terminal)
    assert main([*argv, "--no-tools"]) == 0
    assert seen == [reopen]


async def test_the_chat_list_has_a_header_one_line_titles_and_an_empty_state(
        engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Hi."))
    async with running(app) as pilot:
        await pilot.press("ctrl+b")
        await until(pilot, lambda: app.query_one("#chats-empty").display)
        assert "No saved chats yet" in text_of(app.query_one("#chats-empty"))
        assert "Chats" in text_of(app.query_one(".chats-header"))
        long = "A very long title about planning a whole week in Lisbon in the spring"
        app.input.text = long
        app.input.focus()
        await pilot.press("enter")
        await until(pilot, lambda: not app.busy and app.query(ListItem))
        await app.workers.wait_for_complete()
        await pilot.pause()
        (item,) = app.query(ListItem)
        assert not app.query_one("#chats-empty").display
        assert item.region.height == 1  # cut, not wrapped
        line = "".join(s.text for s in app.screen.get_widget_at(*item.region.offset)[0]
                       .render_line(0))
        assert line.rstrip().endswith("…")


async def test_the_palette_lists_the_apps_commands_first_on_screen(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Hi."))
    async with running(app) as pilot:
        await pilot.press("ctrl+p")
        await until(pilot, lambda: app.screen.query(CommandList)
                    and app.screen.query_one(CommandList).option_count)
        commands = app.screen.query_one(CommandList)
        names = [commands.get_option_at_index(i).hit.text
                 for i in range(commands.option_count)]
        assert names[:3] == ["Toggle thinking", "Tools", "Switch model"]
        assert {"Theme", "Screenshot", "Maximize"}.isdisjoint(names) and "Quit" in names
        # Each of the first six rows (new chat, chats, export among them) is on screen
        # without scrolling.
        lines = commands._line_cache  # the list's row → line layout, as drawn
        seen = commands.scrollable_content_region.height
        for index in range(6):
            assert lines.index_to_line[index] + lines.heights[index] <= seen, names[index]
        assert {"New chat", "Chats", "Export chat"} <= set(names[:6])


async def test_empty_screens_each_say_what_to_do(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Hi."))
    async with running(app) as pilot:
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, ToolsScreen))
        await pilot.pause()
        tools = app.screen
        assert not tools.query_one("#approvals").display  # no bare table header
        assert "Choose Always" in text_of(tools.query_one("#no-approvals"))
        assert any(NO_SERVERS in text_of(s) for s in tools.query("Static"))
        await pilot.press("escape")
        # The / picker with a filter that matches nothing.
        app.push_screen(PickerScreen("Commands and prompts", command_choices([]),
                                     query="zzzz"))
        await until(pilot, lambda: isinstance(app.screen, PickerScreen))
        await pilot.pause()
        options = app.screen.query_one("OptionList")
        assert "Backspace" in str(options.get_option_at_index(0).prompt)
        await pilot.press("escape")
        # @ with no server running: the notice says how to get one.
        await app.action_attach_resource()
        await until(pilot, lambda: any(NO_SERVERS in n.message for n in app._notifications))


async def test_slow_servers_count_their_seconds_in_the_status_bar(
        engine, hf_tokenizer, tmp_path):
    gate = tmp_path / "gate"
    app = app_for(engine, Script(hf_tokenizer, "Hi."),
                  servers=[raw("gated", "slow", str(gate))])
    async with app.run_test(size=(80, 24)) as pilot:
        try:
            shown = app.status_bar.render
            await until(pilot, lambda: "starting" in str(shown()))
            # The seconds move while it starts (a condition, not a sleep).
            await until(pilot, lambda: "starting 1 s" in str(shown())
                        or "starting 2 s" in str(shown()))
            gate.write_text("work\n")
            await until(pilot, lambda: app._servers_settled.is_set())
            await pilot.pause()
            assert "MCP 1/1" in str(shown()) and "starting" not in str(shown())
            await pilot.press("ctrl+q")
        finally:
            gate.write_text("work\n")  # never a server left waiting, pass or fail
            app.close_backends()


async def test_a_summary_shows_which_note_and_how_far(engine, hf_tokenizer, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    for name in ("plan.md", "shopping.md"):
        (notes / name).write_text(f"# {name}\n\n- one thing\n")
    app = app_for(engine, Rounds(hf_tokenizer, lambda n: f"- point {n}"))
    shown: list[str] = []
    show = app._show_status

    def record() -> None:
        show()
        shown.append(str(app.status_bar.render()))

    app._show_status = record
    async with running(app) as pilot:
        await send(pilot, f"/summarize {notes}")
    assert any("summarizing plan.md (0/2 done)" in line for line in shown)
    assert any("(1/2 done)" in line for line in shown)
    assert any("writing the digest" in line for line in shown)


async def test_a_long_wait_counts_seconds():
    bar = StatusBar()
    status = Status(model="m", loading=None, busy="summarizing plan.md (0/2 done)")
    status.busy_since = 0.0  # long ago
    bar.show(status)
    assert " s" in str(bar.render()).split("(0/2 done)")[1]
