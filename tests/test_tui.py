"""The chat app as a person uses it (TESTING.md §4): Pilot over the real engine with the
fixture model and scripted output, real MCP servers, real SQLite."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import pytest
from mcp_helpers import misbehaving, ours
from scripted import Rounds, Script, ThinkForever
from test_turn import call
from textual.command import CommandList

from assistant.chat.store import ChatStore
from assistant.config import Settings
from assistant.tui.app import create_app
from assistant.tui.screens import ApprovalScreen, ModelProblem, PromptScreen
from assistant.tui.widgets import AssistantMessage, Reasoning, ToolCard

pytestmark = pytest.mark.asyncio


async def until(pilot, condition, timeout: float = 30.0) -> None:
    """Let the app run until ``condition()`` holds (a condition, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.02)


@asynccontextmanager
async def running(app):
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app._engine_ready.is_set()
                        and app._servers_settled.is_set())
            yield pilot
            await pilot.press("ctrl+q")
    finally:
        app.close_backends()  # also when a test fails half-way: no server left behind


async def send(pilot, text: str) -> AssistantMessage:
    app = pilot.app
    app.input.text = text
    await pilot.press("enter")
    await until(pilot, lambda: not app.busy)
    await app.workers.wait_for_complete()
    await pilot.pause()
    return list(app.query(AssistantMessage))[-1]


def app_for(engine, processor, *, thinking=False, servers=None, max_tokens=80):
    return create_app(Settings(thinking_budget=64), engine=engine, thinking=thinking,
                      servers=servers, no_tools=servers is None,
                      options={"logits_processors": [processor], "max_tokens": max_tokens})


async def test_plain_answer_streams_renders_and_is_stored(engine, hf_tokenizer):
    answer = "Here is code:\n\n```python\nprint('hi')\n```"
    app = app_for(engine, Script(hf_tokenizer, answer))
    async with running(app) as pilot:
        await pilot.press(*"Show", "ctrl+j", *"me code")  # ctrl+j: a new line, not sent
        assert app.input.text == "Show\nme code" and not app.busy
        app.input.text = "Show me code"
        view = await send(pilot, "Show me code")
        assert view.answer_text.strip() == answer
        assert view.query("MarkdownFence")  # the code block was rendered as a fence
        assert app.status.decode_tps and app.status.ttft_s is not None
        assert app.status.context_used > 0
        assert ChatStore().messages(app.chat_id)[1].stats["generated_tokens"] > 10
        stored = ChatStore().history(app.chat_id)
        assert stored == [{"role": "user", "content": "Show me code"},
                          {"role": "assistant", "content": answer}]
        assert ChatStore().chat(app.chat_id).title == "Show me code"
        # Copy (OSC 52 through Textual) and export.
        await pilot.press("ctrl+g")
        assert app.clipboard == answer
        app.action_copy_code()
        assert app.clipboard == "print('hi')\n"
        out = app.action_export()
        assert "print('hi')" in out.read_text() and "## You" in out.read_text()


async def test_context_figure_moves_while_the_answer_streams(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "word " * 30))
    shown = []  # the bar's context figure when each round's statistics arrive
    show_stats = app._show_stats

    def record(stats) -> None:
        shown.append(app.status.context_used)
        show_stats(stats)

    app._show_stats = record
    async with running(app) as pilot:
        await send(pilot, "Hello")
        stats = app.last_stats[-1]
        # Already the prompt and most of the answer before the exact count came.
        assert stats.prompt_tokens < shown[0] <= stats.prompt_tokens + stats.generated_tokens
        assert app.status.context_used == stats.prompt_tokens + stats.generated_tokens


async def test_thinking_folds_when_the_answer_starts(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "<think>\nfirst this, then that\n</think>\n\n"
                                               "The answer."), thinking=True)
    async with running(app) as pilot:
        view = await send(pilot, "Think about it")
        (block,) = view.query(Reasoning)
        assert block.collapsed and block.text.strip() == "first this, then that"
        assert "Thought for" in block.title and "tokens" in block.title
        assert view.answer_text.strip() == "The answer."
        assert app.history[-1]["reasoning_content"] == "first this, then that"


async def test_thinking_toggle_and_soft_switch(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Direct."), thinking=True)

    async def turn(pilot, text):
        app.overrides["logits_processors"] = [Script(hf_tokenizer, "Sure.")]
        await send(pilot, text)
        return app.last_stats[-1].thinking_mode

    async with running(app) as pilot:
        assert await turn(pilot, "Answer directly /no_think") is False  # the soft switch
        assert await turn(pilot, "Still direct?") is False  # the latest switch holds
        assert await turn(pilot, "Now think /think") is True
        await pilot.press("ctrl+t")  # the hard switch: off, whatever the soft switches say
        assert app.thinking is False and "no-think" in str(app.status_bar.render())
        assert await turn(pilot, "Once more /think") is False
        assert ChatStore().chat(app.chat_id).thinking is False


@pytest.fixture
def notes(tmp_path):
    root = tmp_path / "notes"
    root.mkdir()
    (root / "todo.md").write_text("# Todo\n\n- call the plumber\n", encoding="utf-8")
    return root


async def answer_approval(pilot, choice: str) -> None:
    """The deliberate way: wait until the modal takes keys, Tab to the button, Enter."""
    await until(pilot, lambda: isinstance(pilot.app.screen, ApprovalScreen)
                and pilot.app.screen.armed)
    while pilot.app.focused.id != f"choice-{choice}":
        await pilot.press("tab")
    await pilot.press("enter")


async def test_tool_call_approved(engine, hf_tokenizer, notes):
    rounds = Rounds(hf_tokenizer, call("read_note", path="todo.md"), "Call the plumber.")
    app = app_for(engine, rounds, servers=ours(notes))
    async with running(app) as pilot:
        assert app.status.servers_up == 3
        app.input.text = "What is on my todo list?"
        await pilot.press("enter")
        await answer_approval(pilot, "once")
        await until(pilot, lambda: not app.busy)
        await pilot.pause()
        view = list(app.query(AssistantMessage))[-1]
        (card,) = view.query(ToolCard)
        assert card.call.status == "ok" and "plumber" in card.call.result
        assert "notes/read_note" in str(card.header.render())
        assert "constrained" in str(card.header.render())  # decoded under the grammar
        assert view.answer_text.strip() == "Call the plumber."
        roles = [m["role"] for m in ChatStore().history(app.chat_id)]
        assert roles == ["user", "assistant", "tool", "assistant"]


async def test_tool_call_denied(engine, hf_tokenizer, notes):
    rounds = Rounds(hf_tokenizer, call("append_note", path="todo.md", text="- hacked"), "OK.")
    app = app_for(engine, rounds, servers=ours(notes))
    app.overrides["constrain_tool_calls"] = False  # as with constrained_tool_calls = false
    async with running(app) as pilot:
        app.input.text = "Add to my list"
        await pilot.press("enter")
        await answer_approval(pilot, "deny")
        await until(pilot, lambda: not app.busy)
        await pilot.pause()
        (card,) = list(app.query(AssistantMessage))[-1].query(ToolCard)
        assert card.call.status == "denied" and card.has_class("failed")
        assert "constrained" not in str(card.header.render())
        assert "hacked" not in (notes / "todo.md").read_text()
        assert "denied" in ChatStore().history(app.chat_id)[2]["content"]


async def test_escape_stops_thinking_and_keeps_it(engine, hf_tokenizer):
    app = app_for(engine, ThinkForever(hf_tokenizer, "never"), thinking=True, max_tokens=4000)
    app.settings = Settings(thinking_budget=4000)
    async with running(app) as pilot:
        app.input.text = "Think forever"
        await pilot.press("enter")
        await until(pilot, lambda: any(len(r.text) > 20 for r in app.query(Reasoning)))
        await pilot.press("escape")
        await until(pilot, lambda: not app.busy)
        await pilot.pause()
        view = list(app.query(AssistantMessage))[-1]
        assert "stopped" in str(view.query(".note").last().render())
        last = ChatStore().messages(app.chat_id)[-1]
        assert last.role == "assistant" and last.status == "stopped" and "hmm" in last.reasoning


async def test_escape_stops_a_tool_call(engine, hf_tokenizer, tmp_path):
    rounds = Rounds(hf_tokenizer, call("work", text="x"), "Never reached.")
    app = app_for(engine, rounds, servers=[misbehaving("hang")])
    async with running(app) as pilot:
        app.input.text = "Do the work"
        await pilot.press("enter")
        await answer_approval(pilot, "once")
        await until(pilot, lambda: any(c.call.status == "running" for c in app.query(ToolCard)))
        started = time.monotonic()
        await pilot.press("escape")
        await until(pilot, lambda: not app.busy)
        assert time.monotonic() - started < 10  # not the 30 s call timeout
        await pilot.pause()
        (card,) = app.query(ToolCard)
        assert card.call.error == "stopped by the user"
        stored = ChatStore().messages(app.chat_id)
        assert stored[-1].role == "tool" and stored[-1].status == "stopped"


def before_new_message(hf_tokenizer, history: list[dict]) -> int:
    """The tokens of a prompt for ``history`` (ending in the user's new message) before
    that message's content: all that could be in the cache when it was sent."""
    from assistant.prompts import load

    system = [{"role": "system", "content": load("system")}]
    rendered = hf_tokenizer.apply_chat_template(system + history, tokenize=False,
                                                add_generation_prompt=True,
                                                enable_thinking=False)
    start = rendered.rindex(history[-1]["content"])
    return len(hf_tokenizer.encode(rendered[:start], add_special_tokens=False))


async def test_resume_a_saved_chat(engine, hf_tokenizer):
    store = ChatStore()
    chat = store.create_chat("Earlier", thinking=False)
    store.add_message(chat, {"role": "user", "content": "My name is Ada."})
    store.add_message(chat, {"role": "assistant", "content": "Hello Ada."})
    store.close()
    app = app_for(engine, Script(hf_tokenizer, "Ada."))
    async with running(app) as pilot:
        await pilot.press("ctrl+b")  # the chat list, focused, with the saved chat
        await pilot.press("enter")
        await until(pilot, lambda: app.chat_id == chat)
        assert "Hello Ada." in list(app.query(AssistantMessage))[0].all_text
        # The saved conversation is prefilled while the user types: the first turn
        # prefills only the new message.
        await until(pilot, lambda: app.prefill is not None and app.prefill.wait(0))
        view = await send(pilot, "What is my name?")
        assert view.answer_text.strip() == "Ada."
        (stats,) = app.last_stats
        assert stats.prompt_tokens > 20
        assert stats.cached_tokens == before_new_message(hf_tokenizer, app.history[:-1])
        assert [m["content"] for m in ChatStore().history(chat)][-2:] == ["What is my name?",
                                                                          "Ada."]
        # And after that turn, the next one too.
        await until(pilot, lambda: app.prefill.wait(0))
        await send(pilot, "Thanks.")
        assert app.last_stats[0].cached_tokens == before_new_message(hf_tokenizer,
                                                                     app.history[:-1])
        app.action_rename_chat()
        await until(pilot, lambda: isinstance(app.screen, PromptScreen)
                    and app.screen.query("Input"))
        app.screen.query_one("Input").value = "About Ada"
        await pilot.press("enter")
        await until(pilot, lambda: ChatStore().chat(chat).title == "About Ada")
        await app.action_delete_chat()
        assert ChatStore().chats() == [] and app.chat_id is None


async def test_a_missing_model_shows_a_panel_not_a_traceback():
    app = create_app(Settings(), model="/nonexistent/model", no_tools=True)
    async with running(app) as pilot:
        await until(pilot, lambda: app.query(ModelProblem))
        text = str(app.query_one(ModelProblem).render())
        assert "no model directory at /nonexistent/model" in text and "--model DIR" in text
        view = await send(pilot, "hello?")
        assert "not loaded" in str(view.query(".note").last().render())


async def test_a_message_sent_while_loading_waits_then_runs(fixture_model, hf_tokenizer):
    app = create_app(Settings(), model=str(fixture_model), no_tools=True, thinking=False,
                     options={"logits_processors": [Script(hf_tokenizer, "Loaded.")],
                              "max_tokens": 20})
    async with app.run_test(size=(80, 24)) as pilot:
        try:
            app.input.text = "Are you there?"
            await pilot.press("enter")  # most likely before the model has loaded
            await until(pilot, lambda: not app.busy, timeout=60)
            await pilot.pause()
            assert list(app.query(AssistantMessage))[-1].answer_text.strip() == "Loaded."
            await pilot.press("ctrl+q")
        finally:
            app.close_backends()
    assert not app._owned_engines  # closed on quit
    await asyncio.sleep(0)


async def test_quit_during_generation_stops_and_keeps_it(engine, hf_tokenizer):
    app = app_for(engine, ThinkForever(hf_tokenizer, "never"), thinking=True, max_tokens=4000)
    app.settings = Settings(thinking_budget=4000)
    async with app.run_test(size=(80, 24)) as pilot:
        try:
            await until(pilot, lambda: app._engine_ready.is_set())
            app.input.text = "Think forever"
            await pilot.press("enter")
            await until(pilot, lambda: any(len(r.text) > 20 for r in app.query(Reasoning)))
            await pilot.press("ctrl+q")
            await until(pilot, lambda: not app.is_running)
        finally:
            app.close_backends()
    assert app._idle.is_set() and app.turn is None
    last = ChatStore().messages(app.chat_id)[-1]
    assert last.role == "assistant" and last.status == "stopped"


async def test_command_palette_new_chat(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Hi."))
    async with running(app) as pilot:
        await send(pilot, "Hello")
        assert app.chat_id is not None
        await pilot.press("ctrl+p")
        await pilot.press(*"New chat")
        await until(pilot, lambda: app.screen.query_one(CommandList).option_count)
        await pilot.press("enter")
        await until(pilot, lambda: app.chat_id is None and not app.query(AssistantMessage))


async def test_switch_model_from_the_palette(engine, hf_tokenizer, fixture_model):
    app = app_for(engine, Rounds(hf_tokenizer, "Back."))
    async with running(app) as pilot:
        await send(pilot, "Hello")
        for ref in ("/nonexistent/model", str(fixture_model)):
            app.action_switch_model()
            await until(pilot, lambda: isinstance(app.screen, PromptScreen)
                        and app.screen.query("Input"))
            app.screen.query_one("Input").value = ref
            await pilot.press("enter")
            await until(pilot, lambda: app._engine_ready.is_set())
            await pilot.pause()
            assert bool(app.query(ModelProblem)) == (ref == "/nonexistent/model")
        assert app.engine is not engine and app.engine in app._owned_engines
        # The new model's cache is filled with the open chat while the user types.
        await until(pilot, lambda: app.prefill is not None and app.prefill.wait(0))
        view = await send(pilot, "Still there?")
        assert view.answer_text.strip() == "Back."
        assert app.last_stats[0].cached_tokens == before_new_message(hf_tokenizer,
                                                                     app.history[:-1])
    assert not app._owned_engines  # the loaded one was closed on quit


async def test_summarize_runs_the_summarizer_and_shows_markdown(engine, hf_tokenizer, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plan.md").write_text("# Plan\n\n- Ship the offline mode on Friday.\n")
    (notes / "购物.md").write_text("# 购物清单\n\n- 牛奶\n- 鸡蛋\n", encoding="utf-8")
    scripted = Rounds(hf_tokenizer, lambda n: f"- point {n}")
    app = app_for(engine, scripted)
    async with running(app) as pilot:
        view = await send(pilot, f"/summarize {notes}")
        shown = view.query_one("Markdown.answer").source
        assert shown.startswith("# Notes") and "## plan.md" in shown and "## 购物.md" in shown
        assert "# Digest\n\n- point 2" in shown  # two notes, then the digest
        stored = ChatStore().history(app.chat_id)[-1]
        assert stored["role"] == "assistant" and stored["content"].strip() == shown.strip()


async def test_a_server_that_writes_garbage_is_one_notification(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Fine."), servers=[misbehaving("garbage")])
    async with running(app) as pilot:
        await until(pilot, lambda: any(n.title == "MCP server noise"
                                       for n in app._notifications))
        noise = [n.message for n in app._notifications if "not JSON-RPC" in n.message]
        assert len(noise) == 1 and "'garbage' wrote 2,000 lines" in noise[0]
        assert app.host.servers["garbage"].status == "ready"
