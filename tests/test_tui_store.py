"""The chat app over its store when things go wrong (TESTING.md §4, §7): Pilot over the
real engine with scripted output, real SQLite files damaged on disk, real second
processes holding locks or dying mid-answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mcp_helpers import ours
from scripted import Rounds, Script, ThinkForever
from test_store import _STREAM, _chat_with, _damage_chat_page, _hold_lock, unprivileged
from test_store import open_home as open_home  # noqa: F401 (a fixture)
from test_tui import app_for, running, send, until
from test_turn import call

from assistant.chat.store import ChatStore, store_file
from assistant.config import Settings
from assistant.mcp.approval import ApprovalStore
from assistant.tui.app import create_app
from assistant.tui.bridge import _Bridge
from assistant.tui.widgets import AssistantMessage, Reasoning, ToolCard

pytestmark = pytest.mark.asyncio


def notices(app) -> list[tuple[str, str]]:
    return [(n.title, n.message) for n in app._notifications]


def has_notice(app, title: str) -> bool:
    return any(t == title for t, _ in notices(app))


async def test_the_answer_is_saved_while_it_streams(engine, hf_tokenizer, monkeypatch):
    app = app_for(engine, ThinkForever(hf_tokenizer, "never"), thinking=True, max_tokens=4000)
    app.settings = Settings(thinking_budget=4000)
    writes = []
    real = app.store.save_partial
    monkeypatch.setattr(app.store, "save_partial",
                        lambda *a: writes.append(time.monotonic()) or real(*a))
    reader = ChatStore()  # another connection, as a crash-surviving file would be read
    async with running(app) as pilot:
        app.input.text = "Think out loud"
        started = time.monotonic()
        await pilot.press("enter")

        def saved() -> str:
            rows = reader.messages(app.chat_id) if app.chat_id else []
            return rows[-1].reasoning or "" if rows and rows[-1].role == "assistant" else ""

        await until(pilot, lambda: saved().count("hmm") >= 10)
        row = reader.messages(app.chat_id)[-1]
        assert row.status == "streaming"  # live in this app: not read as interrupted
        shown = list(app.query(Reasoning))[-1].text
        # The same stream: one is a prefix of the other (either may be a moment ahead).
        assert shown.startswith(row.reasoning) or row.reasoning.startswith(shown)
        await pilot.press("escape")
        await until(pilot, lambda: not app.busy)
        await app.workers.wait_for_complete()
        elapsed = time.monotonic() - started
    # One row, finished in place; and a bounded number of writes: one per SAVE_EVERY.
    rows = reader.messages(app.chat_id)
    assert [(m.role, m.status) for m in rows] == [("user", "complete"),
                                                  ("assistant", "stopped")]
    assert rows[-1].reasoning.count("hmm") > 10
    assert 2 <= len(writes) <= 1 + elapsed / _Bridge.SAVE_EVERY


async def test_resume_shows_an_answer_cut_off_by_a_crash(engine, hf_tokenizer):
    writer = subprocess.Popen([sys.executable, "-c", _STREAM], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    chat = int(writer.stdout.readline())
    app = app_for(engine, Script(hf_tokenizer, "The end."))
    try:
        async with running(app) as pilot:
            await app.resume(chat)  # its writer is alive: a stream, not an interruption
            view = list(app.query(AssistantMessage))[-1]
            assert "another window" in str(view.query(".note").last().render())
            writer.stdin.write("die\n")
            writer.stdin.flush()
            assert writer.wait(timeout=60) == -signal.SIGKILL
            await app.action_new_chat()
            await pilot.press("ctrl+b", "enter")  # the chat list: resume it
            await until(pilot, lambda: app.chat_id == chat)
            view = list(app.query(AssistantMessage))[-1]
            assert "Once upon a time" in view.all_text
            assert "interrupted" in str(view.query(".note").last().render())
            assert app.history[-1] == {"role": "assistant", "content": "Once upon a time",
                                       "reasoning_content": "plan it"}
            view = await send(pilot, "Go on")  # the chat goes on from what was saved
            assert view.answer_text.strip() == "The end."
    finally:
        writer.kill()
        writer.wait()


async def test_resume_shows_each_tool_outcome(engine, hf_tokenizer, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.md").write_text("# Todo\n\n- call the plumber\n", encoding="utf-8")
    approvals = ApprovalStore()
    approvals.set("notes", "append_note", "never")
    approvals.set("notes", "read_note", "always")
    rounds = Rounds(hf_tokenizer,
                    call("append_note", path="todo.md", text="- x") + "\n" + call("no_such"),
                    call("read_note", path="todo.md") + "\n" + call("read_note", path="todo.md"),
                    "Done.")
    app = app_for(engine, rounds, servers=ours(notes))
    async with running(app) as pilot:
        await send(pilot, "Tidy my list")
        live = [c.call.status for c in app.query(ToolCard)]
        assert live == ["denied", "error", "ok", "skipped"]
        chat = app.chat_id
        await app.action_new_chat()
        await app.resume(chat)
        await pilot.pause()
        cards = list(app.query(ToolCard))
        assert [c.call.status for c in cards] == live
        headers = [str(c.header.render()) for c in cards]
        assert [h[0] for h in headers] == ["⊘", "✗", "✓", "–"]
        assert cards[0].has_class("failed") and not cards[2].has_class("failed")
        assert "plumber" in cards[2].call.result


async def test_a_locked_store_keeps_the_typed_message(engine, hf_tokenizer):
    store = ChatStore()
    chat = _chat_with(store, "earlier", "hello")
    store.close()
    app = create_app(Settings(), engine=engine, thinking=False, no_tools=True,
                     options={"logits_processors": [Script(hf_tokenizer, "Hi again.")]},
                     store=ChatStore(timeout=1))  # a short wait, the same code path
    holder = _hold_lock(store_file())
    try:
        async with running(app) as pilot:
            await app.resume(chat)
            app.input.text = "do not lose me"
            await pilot.press("enter")
            await until(pilot, lambda: has_notice(app, "Chats locked") and not app.busy)
            assert app.input.text == "do not lose me"  # back in the input, not sent
            (line,) = [m for t, m in notices(app) if t == "Chats locked"]
            assert "locked by another program" in line and "back in the input" in line
            assert "\n" not in line and not app.query(AssistantMessage)  # nothing ran
            holder.stdin.close()
            holder.wait(timeout=60)
            view = await send(pilot, app.input.text)
            assert view.answer_text.strip() == "Hi again."
            assert [m["content"] for m in ChatStore().history(chat)] == [
                "hello", "do not lose me", "Hi again."]
    finally:
        holder.kill()
        holder.wait()


async def test_a_locked_store_keeps_the_attachments_and_the_typed_text(engine, hf_tokenizer):
    """A message with a resource attached that cannot be stored: the chip stays, what
    was typed (not a made-up "[attached: …]" line) is back in the input, and sending
    again once the lock is gone sends both."""
    from mcp_helpers import library
    from test_tui_resources import README, chips, pick

    from assistant.chat.resources import attachment

    store = ChatStore()
    chat = _chat_with(store, "earlier", "hello")
    store.close()
    app = create_app(Settings(), engine=engine, thinking=False, servers=[library()],
                     options={"logits_processors": [Script(hf_tokenizer, "Three shelves.")]},
                     store=ChatStore(timeout=1))
    holder = None
    try:
        async with running(app) as pilot:
            await app.resume(chat)
            await pick(pilot, "@", "readme")
            await until(pilot, lambda: chips(app) == ["library:library://readme"])
            holder = _hold_lock(store_file())
            await pilot.press(*"What is in it?", "enter")
            await until(pilot, lambda: has_notice(app, "Chats locked") and not app.busy)
            assert app.input.text == "What is in it?"
            assert chips(app) == ["library:library://readme"]
            assert [a.ref for a in app.attachments] == ["library:library://readme"]
            holder.stdin.close()
            holder.wait(timeout=60)
            view = await send(pilot, app.input.text)
            assert view.answer_text.strip() == "Three shelves."
            sent = attachment("library:library://readme", README) + "\n\nWhat is in it?"
            assert ChatStore().history(chat)[1:] == [
                {"role": "user", "content": sent}, {"role": "assistant",
                                                    "content": "Three shelves."}]
            assert chips(app) == []
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()


async def test_a_damaged_file_is_moved_aside_at_start(engine, hf_tokenizer):
    path = store_file()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage, not a database\n" * 500)
    app = app_for(engine, Script(hf_tokenizer, "Fresh."))
    async with running(app) as pilot:
        await until(pilot, lambda: has_notice(app, "Chats file damaged"))
        (aside,) = path.parent.glob("chats.db.damaged-*")
        assert aside.read_bytes().startswith(b"\x00garbage")
        (line,) = [m for t, m in notices(app) if t == "Chats file damaged"]
        assert aside.name in line
        view = await send(pilot, "Start again")
        assert view.answer_text.strip() == "Fresh."
        assert ChatStore().history(app.chat_id)[-1]["content"] == "Fresh."


async def test_a_damaged_chat_fails_to_open_and_the_app_goes_on(engine, hf_tokenizer):
    store = ChatStore()
    good = _chat_with(store, "good", "fine")
    bad = _chat_with(store, "bad", "y" * 40_000)
    store.close()
    _damage_chat_page(store_file(), bad)
    app = app_for(engine, Script(hf_tokenizer, "Still here."))
    async with running(app) as pilot:
        await app.resume(bad)
        await until(pilot, lambda: has_notice(app, "Chat cannot be opened"))
        assert app.chat_id is None and app.is_running
        (line,) = [m for t, m in notices(app) if t == "Chat cannot be opened"]
        assert "damaged" in line and "the others still can" in line
        await app.resume(good)
        assert app.chat_id == good
        view = await send(pilot, "Are you there?")
        assert view.answer_text.strip() == "Still here."


async def test_a_read_only_data_folder_goes_on_unsaved(engine, hf_tokenizer, open_home):
    data = open_home / "data"
    store = ChatStore()
    chat = _chat_with(store, "saved before", "old message")
    store.close()
    data.chmod(0o555)
    kept = (data / "chats.db").read_bytes()
    with unprivileged():  # the app opens its store as a user the folder refuses
        app = app_for(engine, Script(hf_tokenizer, "Not saved, but here."))
    async with running(app) as pilot:
        await until(pilot, lambda: has_notice(app, "Chats not saved"))
        (line,) = [m for t, m in notices(app) if t == "Chats not saved"]
        assert str(data) in line and "writable" in line
        assert "UNSAVED" in str(app.status_bar.render())
        await app.resume(chat)  # what was saved can still be read
        assert "old message" in str(app.query(".user").first().render())
        view = await send(pilot, "Go on")
        assert view.answer_text.strip() == "Not saved, but here."
        assert app.history[-1]["content"] == "Not saved, but here."
    assert (data / "chats.db").read_bytes() == kept
    data.chmod(0o755)
    assert [m.content for m in ChatStore().messages(chat)] == ["old message"]
    assert os.access(data, os.W_OK)
