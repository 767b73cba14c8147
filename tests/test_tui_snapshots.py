"""Snapshots of the main screens and error states at 80x24 (pytest-textual-snapshot).

Only these use a layout-only stand-in for the engine (TESTING.md §2 allows it for pure
layout), so no model output or timing ever reaches a snapshot. Update them with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from test_store import TURN

from assistant.chat.store import ChatStore
from assistant.config import Settings
from assistant.mcp.approval import ApprovalStore
from assistant.mcp.config import ServerConfig
from assistant.mcp.host import ServerState, ToolInfo
from assistant.tui.app import create_app
from assistant.tui.screens import ApprovalScreen, ModelProblem


class LayoutEngine:
    """Loaded at once, never asked to generate."""

    model_path = Path("Qwen3-0.6B-4bit")
    context_window = 32768
    local = True  # create_app names a local engine by its model_path
    label = "Qwen3-0.6B-4bit"  # the status bar's name for it

    def wait_loaded(self, timeout=None) -> bool:
        return True

    def close(self) -> None:
        pass


@pytest.fixture
def app():
    app = create_app(Settings(thinking=True), engine=LayoutEngine(), no_tools=True)
    yield app
    app.close_backends()


async def settle(pilot) -> None:
    pilot.app.input.cursor_blink = False
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_main_screen(snap_compare, app):
    store = ChatStore()
    older = store.create_chat("Trip to Lisbon")
    store.add_message(older, {"role": "user", "content": "Plan a day"})
    chat = store.create_chat("What is 19*23?")
    for message in TURN:
        store.add_message(chat, message)

    async def run_before(pilot):
        await settle(pilot)
        await pilot.app.resume(chat)
        await pilot.press("ctrl+b")
        await settle(pilot)

    assert snap_compare(app, run_before=run_before)


def test_approval_modal(snap_compare, app, monkeypatch):
    monkeypatch.setattr(ApprovalScreen, "ARM_DELAY", 0)  # awake, as the user answers it

    async def run_before(pilot):
        await settle(pilot)
        pilot.app.push_screen(ApprovalScreen(
            "notes", "append_note", {"path": "todo.md", "text": "- call the plumber\n- milk"},
            read_only=False, description="Append text to a note, creating it if needed."))
        await pilot.pause()

    assert snap_compare(app, run_before=run_before)


def test_tools_screen(snap_compare, app):
    def tool(server, name):
        return ToolInfo(server, name, "", {}, read_only=True, destructive=False)

    app.host = SimpleNamespace(close=lambda: None, servers={
        "notes": ServerState(ServerConfig("notes"), "ready",
                             tools=[tool("notes", t) for t in ("list_notes", "read_note",
                                                                "search_notes", "append_note")]),
        "clock": ServerState(ServerConfig("clock"), "ready", tools=[tool("clock", "now")]),
        "files": ServerState(ServerConfig("files"), "failed",
                             error="exited at start-up (code 1)"),
    })
    store = ApprovalStore()
    store.set("clock", "now", "always")
    store.set("notes", "append_note", "never")

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()

    assert snap_compare(app, run_before=run_before)


def test_model_missing_panel(snap_compare):
    app = create_app(Settings(), model="/nonexistent/model", no_tools=True)

    async def run_before(pilot):
        await settle(pilot)
        while not pilot.app.query(ModelProblem):
            await pilot.pause(0.02)
        await pilot.pause()

    try:
        assert snap_compare(app, run_before=run_before)
    finally:
        app.close_backends()


def test_resource_picker(snap_compare, app):
    from assistant.mcp.toolinfo import ResourceInfo
    from assistant.tui.mcp_screens import PickerScreen, resource_choices

    resources = [
        ResourceInfo("library", "library://readme", "readme", "What the library holds",
                     "text/plain", None),
        ResourceInfo("library", "library://logo.png", "logo", "The library's logo",
                     "image/png", 1032),
        ResourceInfo("library", "library://shelf/{name}", "shelf", "One shelf's books",
                     "text/plain", None, template=True),
        ResourceInfo("notes", "notes:///{+path}", "note", "A note by its path", None, None,
                     template=True),
    ]

    async def run_before(pilot):
        await settle(pilot)
        pilot.app.push_screen(PickerScreen("Attach a resource", resource_choices(resources),
                                           widths=(9, 10, 30, 10)))
        await pilot.pause()
        await pilot.press(*"lib")
        await pilot.pause()

    assert snap_compare(app, run_before=run_before)


def test_prompt_form(snap_compare, app):
    from assistant.tui.mcp_screens import Field, FormScreen

    fields = [Field("topic", "What the poem is about", True, ("rain", "the sea")),
              Field("style", "", False, ("haiku", "limerick", "sonnet"))]

    async def run_before(pilot):
        await settle(pilot)
        pilot.app.push_screen(FormScreen("library: /poem", fields,
                                         "Ask for a poem about a topic"))
        await pilot.pause()
        await pilot.press(*"ra")  # the server's suggestion completes inline
        await pilot.pause()

    assert snap_compare(app, run_before=run_before)


def test_elicitation_form(snap_compare, app):
    from assistant.mcp.elicit import Elicitation, fields_from_schema
    from assistant.tui.screens import ElicitScreen

    schema = {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "title": "Your name"},
        "guests": {"type": "integer", "title": "Guests", "minimum": 1, "maximum": 8},
        "vegetarian": {"type": "boolean", "title": "Vegetarian", "default": False},
        "table": {"type": "string", "title": "Table", "enum": ["window", "terrace"]}}}
    request = Elicitation("bookings", "Who is the table for?", fields_from_schema(schema))

    async def run_before(pilot):
        await settle(pilot)
        pilot.app.push_screen(ElicitScreen(request))
        await pilot.pause()
        await pilot.press(*"Ada")
        await pilot.pause()

    # Taller than the others: every kind of field in view at once.
    assert snap_compare(app, run_before=run_before, terminal_size=(80, 40))


def test_start_screen(snap_compare, app):
    """What a new user sees first: the model, the mode, what to try, where help is."""

    async def run_before(pilot):
        await settle(pilot)
        for _ in range(500):  # bounded: without it the snapshot shows what is missing
            if pilot.app.query("Welcome"):
                break
            await pilot.pause(0.02)
        await pilot.pause()

    assert snap_compare(app, run_before=run_before)


async def open_chat_list(pilot):
    await settle(pilot)
    await pilot.press("ctrl+b")
    await settle(pilot)


def test_chat_list(snap_compare, app):
    """A header, one line per chat (a long title cut with …), the open chat selected."""
    store = ChatStore()
    for title in ("Trip to Lisbon", "A very long title about a whole week of walks in the "
                  "hills", "What is 19*23?"):
        chat = store.create_chat(title)
        store.add_message(chat, {"role": "user", "content": title})

    assert snap_compare(app, run_before=open_chat_list)


def test_chat_list_empty(snap_compare, app):
    assert snap_compare(app, run_before=open_chat_list)


def test_tools_screen_empty(snap_compare, app):
    """No servers and no stored approvals: each says what would fill it."""

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()

    assert snap_compare(app, run_before=run_before)
