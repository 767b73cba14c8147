"""The approval modal cannot be answered by accident: it pops up while the user may be
typing the next message. Pilot over the real engine with scripted tool calls and our own
MCP servers over stdio, as tests/test_tui.py builds the app."""

from __future__ import annotations

import pytest
from mcp_helpers import ours
from scripted import Rounds
from test_tui import app_for, running, until
from test_turn import call

from assistant.mcp.approval import ApprovalStore
from assistant.tui.screens import ApprovalScreen
from assistant.tui.widgets import ToolCard

pytestmark = pytest.mark.asyncio

TYPED = "what about the weather"


@pytest.fixture
def notes(tmp_path):
    root = tmp_path / "notes"
    root.mkdir()
    (root / "todo.md").write_text("# Todo\n", encoding="utf-8")
    return root


def append_each_turn(hf_tokenizer, *texts: str) -> Rounds:
    """Per turn: a call to append one text, then a short answer after its result."""
    scripts = []
    for text in texts:
        scripts += [call("append_note", path="todo.md", text=text), "OK."]
    return Rounds(hf_tokenizer, *scripts)


async def ask(pilot, message: str) -> ApprovalScreen:
    pilot.app.input.text = message
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, ApprovalScreen))
    return pilot.app.screen


async def outcome(pilot) -> str:
    """The status of the turn's tool call once the turn is over."""
    app = pilot.app
    await until(pilot, lambda: not app.busy)
    await app.workers.wait_for_complete()
    await pilot.pause()
    return list(app.query(ToolCard))[-1].call.status


async def test_nothing_typed_or_clicked_early_allows_a_call(engine, hf_tokenizer, notes,
                                                           monkeypatch):
    monkeypatch.setattr(ApprovalScreen, "ARM_DELAY", 3600)
    app = app_for(engine, append_each_turn(hf_tokenizer, "- typed", "- entered", "- lettered"),
                  servers=ours(notes))
    async with running(app) as pilot:
        # Typed ahead, then every key that could answer, then clicks on the buttons.
        modal = await ask(pilot, "Add to my list")
        await pilot.press(*TYPED, "enter", "o", "c", "a", "y", "tab", "enter", "space",
                          "right", "enter")
        for choice in ("once", "chat", "always"):
            await pilot.click(f"#choice-{choice}")
        await pilot.pause()
        assert app.screen is modal and not modal.armed
        assert all(b.disabled for b in modal.query("Button"))
        await pilot.press("escape")  # Esc denies at once
        assert await outcome(pilot) == "denied"

        # Awake: Enter on the modal as it opens takes Deny, where the focus starts.
        monkeypatch.setattr(ApprovalScreen, "ARM_DELAY", 0)
        modal = await ask(pilot, "Add another")
        assert modal.armed and app.focused.id == "choice-deny"
        await pilot.press("enter")
        assert await outcome(pilot) == "denied"

        # Awake: letters are text, not answers.
        modal = await ask(pilot, "And another")
        await pilot.press(*TYPED, "o", "c", "a", "y")
        await pilot.pause()
        assert app.screen is modal and app.focused.id == "choice-deny"
        await pilot.press("escape")
        assert await outcome(pilot) == "denied"

    assert (notes / "todo.md").read_text() == "# Todo\n"
    assert ApprovalStore().all() == {}


async def test_typing_as_it_opens_then_a_deliberate_answer(engine, hf_tokenizer, notes):
    # The real delay: keys pressed the moment the modal appears never allow the call,
    # however quickly or slowly they arrive (at worst Enter meets the focused Deny).
    assert ApprovalScreen.ARM_DELAY >= 0.5
    app = app_for(engine, append_each_turn(hf_tokenizer, "- typed", "- chosen", "- always"),
                  servers=ours(notes))
    async with running(app) as pilot:
        modal = await ask(pilot, "Add to my list")
        await pilot.press(*TYPED, "enter")
        assert app.screen is modal or list(app.query(ToolCard))[-1].call.status == "denied"
        await pilot.press("escape")
        assert await outcome(pilot) == "denied"
        assert "typed" not in (notes / "todo.md").read_text()

        # Waiting out the delay, then Tab to Once and Enter: allowed, once.
        modal = await ask(pilot, "Add to my list")
        await until(pilot, lambda: modal.armed)
        await pilot.press("tab")
        assert app.focused.id == "choice-once"
        await pilot.press("enter")
        assert await outcome(pilot) == "ok"
        assert "- chosen" in (notes / "todo.md").read_text()
        assert ApprovalStore().all() == {}

        # Always is the farthest button from the focus.
        modal = await ask(pilot, "And always")
        await until(pilot, lambda: modal.armed)
        await pilot.press("tab", "tab", "tab")
        assert app.focused.id == "choice-always"
        await pilot.press("enter")
        assert await outcome(pilot) == "ok"
        assert ApprovalStore().all() == {"notes": {"append_note": "always"}}


async def test_a_tool_name_is_text_not_markup(monkeypatch):
    # A server names its own tools; as markup a name could hold a clickable action.
    from textual.app import App

    monkeypatch.setattr(ApprovalScreen, "ARM_DELAY", 0)
    choices = []
    name = "x[@click=screen.choose('always')]  click here  [/]"
    async with App().run_test(size=(80, 24)) as pilot:
        pilot.app.push_screen(ApprovalScreen("evil", name, {}, read_only=False), choices.append)
        await pilot.pause()
        title = pilot.app.screen.query_one(".dialog-title")
        assert name in str(title.render())
        await pilot.click(".dialog-title", offset=(20, 0))
        await pilot.pause()
    assert choices != ["always"]


async def test_stored_approvals_show_names_as_text():
    from textual.app import App
    from textual.widgets import DataTable

    from assistant.tui.screens import ToolsScreen

    store = ApprovalStore()
    store.set("evil", "a[/b]", "always")  # a closing tag with no opening one
    async with App().run_test(size=(80, 24)) as pilot:
        pilot.app.push_screen(ToolsScreen([], store))
        await pilot.pause()
        table = pilot.app.screen.query_one("#approvals", DataTable)
        assert str(table.get_row_at(0)[1]) == "a[/b]"
        await pilot.press("escape")
