"""A tool call's progress on its card, and a server's questions as a modal, in the chat
app: Pilot over the real engine with scripted calls to tests/servers/features.py over
stdio."""

from __future__ import annotations

import json

import pytest
from mcp_helpers import features
from scripted import Rounds
from test_tui import app_for, running, until
from test_turn import call

from assistant.mcp.approval import ApprovalStore
from assistant.tui.screens import ElicitScreen
from assistant.tui.widgets import ToolCard

pytestmark = pytest.mark.asyncio


def allowed(*tools: str) -> None:
    for tool in tools:
        ApprovalStore().set("features", tool, "always")


async def finished(pilot) -> ToolCard:
    app = pilot.app
    await until(pilot, lambda: not app.busy)
    await app.workers.wait_for_complete()
    await pilot.pause()
    return list(app.query(ToolCard))[-1]


async def test_progress_moves_the_tool_card(engine, hf_tokenizer, monkeypatch):
    monkeypatch.setattr("assistant.chat.turn.PROGRESS_EVERY_S", 0)  # every report shown
    allowed("slow_count")
    headers = []
    show = ToolCard.show

    def recording(card, shown):
        show(card, shown)
        headers.append(str(card.header.render()))

    monkeypatch.setattr(ToolCard, "show", recording)
    app = app_for(engine, Rounds(hf_tokenizer, call("slow_count", n=3), "Done."),
                  servers=[features()])
    async with running(app) as pilot:
        app.input.text = "Count to three"
        await pilot.press("enter")
        card = await finished(pilot)
        assert card.call.status == "ok" and card.call.result == "counted to 3"
    running_states = [h for h in headers if "running" in h]
    assert any("running… 2/3 step 2" in h for h in running_states), headers
    assert "running…" not in headers[-1]  # the finished card shows its outcome


async def test_a_form_modal_answers_the_server(engine, hf_tokenizer):
    allowed("sign_up")
    app = app_for(engine, Rounds(hf_tokenizer, call("sign_up"), "Signed up.",
                                 call("sign_up"), "Declined."),
                  servers=[features()])
    async with running(app) as pilot:
        app.input.text = "Sign me up"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ElicitScreen))
        modal = app.screen
        await until(pilot, lambda: getattr(app.focused, "id", None) == "field-0")
        await pilot.click("#elicit-accept")  # the name is required: not sent
        await pilot.pause()
        assert app.screen is modal and app.focused.id == "field-0"  # where to fix it
        assert "Your name is required" in str(modal.query_one("#elicit-problem").render())
        await pilot.press(*"Ann", "enter")  # Enter moves on, never sends
        assert app.screen is modal and app.focused.id == "field-1"
        await pilot.press(*"x41")  # an integer box takes digits only
        await pilot.click("#elicit-accept")
        card = await finished(pilot)
        assert json.loads(card.call.result) == {"action": "accept",
                                                "content": {"name": "Ann", "age": 41,
                                                            "subscribe": False}}

        app.input.text = "Sign me up again"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ElicitScreen))
        await pilot.press("escape")  # cancels
        card = await finished(pilot)
        assert json.loads(card.call.result) == {"action": "cancel"}


async def test_a_page_opens_only_when_asked(engine, hf_tokenizer, monkeypatch):
    allowed("connect_account")
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url))
    app = app_for(engine, Rounds(hf_tokenizer, call("connect_account"), "No.",
                                 call("connect_account"), "Yes."),
                  servers=[features()])
    async with running(app) as pilot:
        app.input.text = "Connect my account"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ElicitScreen))
        await until(pilot, lambda: getattr(app.focused, "id", None) == "elicit-decline")
        assert "https://example.com/connect?x=1" in str(
            app.screen.query_one("#elicit-url").render())
        await pilot.press("enter")  # on Decline
        card = await finished(pilot)
        assert json.loads(card.call.result) == {"action": "decline"} and opened == []

        app.input.text = "Connect it now"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ElicitScreen))
        await pilot.click("#elicit-accept")
        card = await finished(pilot)
        assert json.loads(card.call.result) == {"action": "accept"}
        assert opened == ["https://example.com/connect?x=1"]


async def test_the_call_timeout_takes_the_form_down(engine, hf_tokenizer):
    allowed("sign_up")
    app = app_for(engine, Rounds(hf_tokenizer, call("sign_up"), "Too late."),
                  servers=[features(timeout=2)])
    async with running(app) as pilot:
        app.input.text = "Sign me up"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ElicitScreen))
        card = await finished(pilot)  # nobody answers
        assert not isinstance(app.screen, ElicitScreen)
        assert card.call.status == "error" and "did not answer within 2 s" in card.call.error


async def test_a_changed_tool_list_is_offered_from_the_next_turn(engine, hf_tokenizer):
    allowed("add_tool", "new_tool")
    # The grammar lets the model name only tools on offer: the second turn's call to
    # new_tool runs only if the fresh list was offered.
    app = app_for(engine, Rounds(hf_tokenizer, call("add_tool"), "Added.",
                                 call("new_tool", text="hi"), "Used it."),
                  servers=[features()])
    async with running(app) as pilot:
        revision = app.host.revision
        app.input.text = "Add a tool"
        await pilot.press("enter")
        card = await finished(pilot)
        assert card.call.result == "added new_tool"
        await until(pilot, lambda: app.host.revision != revision)
        app.input.text = "Use it"
        await pilot.press("enter")
        card = await finished(pilot)
        assert (card.call.tool, card.call.status, card.call.result) == (
            "new_tool", "ok", "new tool says hi")
