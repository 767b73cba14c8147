"""Prefill in idle time: after a turn and while a tool call runs, the generation thread
brings the chat's KV cache up to what the next request starts with, and gives way to any
real request between two chunks. The real engine with scripted output (TESTING.md §2),
the fixture's chat template (Qwen3's behaviour: earlier reasoning and the empty think
block dropped once a new user message follows), real MCP servers."""

from __future__ import annotations

import mlx.core as mx
import pytest
from scripted import Rounds, Script
from test_turn import Recorder, call
from test_turn import host as host  # noqa: F401 (fixtures)
from test_turn import notes as notes  # noqa: F401

from assistant.chat.tooling import make_tools
from assistant.chat.turn import Turn
from assistant.engine import ChatCache, Engine, GenerationOptions
from assistant.tokens import counter_for


def cached_before(hf_tokenizer, messages, content, *, tools, thinking) -> int:
    """The prompt's tokens before ``content`` (the request's new message or tool result):
    all that an idle prefill can have put in the cache."""
    rendered = hf_tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                add_generation_prompt=True,
                                                enable_thinking=thinking)
    return len(hf_tokenizer.encode(rendered[:rendered.rindex(content)],
                                   add_special_tokens=False))


class Patient(Recorder):
    """Approves every call, after the idle prefill started for it has finished (a user
    who reads the request for a moment), so the counts below do not depend on timing."""

    turn: Turn

    def approve(self, request):
        assert self.turn.prefill.wait(60)
        return super().approve(request)


@pytest.mark.parametrize("thinking", [False, True], ids=["non-thinking", "thinking"])
def test_each_tool_round_and_the_follow_up_prefill_only_what_is_new(
        engine, hf_tokenizer, fixture_model, host, thinking):
    def think(why: str) -> str:
        return f"<think>\n{why}\n</think>\n\n" if thinking else ""

    recorder = Patient(["once", "once"])
    tools = make_tools(host, [s.config for s in host.servers.values()],
                       counter_for(fixture_model), recorder.approve)
    chat = ChatCache()
    history = [{"role": "user", "content": "What is on my todo list, and what is 19*23?"}]
    offered = [t.schema for t in tools.catalog.tools.values()]  # all: they fit the window

    def options(*scripts):
        return GenerationOptions(thinking=thinking, max_tokens=120,
                                 logits_processors=[Rounds(hf_tokenizer, *scripts)])

    first = Turn(engine, history, options(
        think("Read the todo note.") + call("read_note", path="todo.md"),
        think("Then the product.") + call("calculate", expression="19*23"),
        think("Both known.") + "Call the plumber; 437."), chat=chat, observer=recorder,
        tools=tools)
    recorder.turn = first
    outcome = first.run()
    assert [c.status for c in outcome.calls] == ["ok", "ok"] and len(outcome.stats) == 3
    # Rounds 2 and 3 prefilled only the tool result and what closes it.
    tool_at = [i for i, m in enumerate(first.history) if m["role"] == "tool"]
    for stats, at in zip(outcome.stats[1:], tool_at):
        messages = first.history[:at + 1]
        assert stats.cached_tokens == cached_before(hf_tokenizer, messages,
                                                    messages[-1]["content"], tools=offered,
                                                    thinking=thinking)

    # The turn ended; the user types while the cache catches up with the history as
    # the template renders it now (in thinking mode, without the turn's reasoning).
    assert first.prefill.wait(60) and first.prefill.outcome == "done"
    assert chat.kv[0].offset == len(chat.tokens)
    question = {"role": "user", "content": "Which one first?"}
    second = Turn(engine, [*first.history, question], options(think("Easy.") + "The plumber."),
                  chat=chat, observer=recorder, tools=tools)
    (stats,) = second.run().stats
    assert stats.prompt_tokens == len(hf_tokenizer.apply_chat_template(
        [*first.history, question], tools=offered, add_generation_prompt=True,
        enable_thinking=thinking, return_dict=False))
    assert stats.cached_tokens == cached_before(hf_tokenizer, [*first.history, question],
                                                question["content"], tools=offered,
                                                thinking=thinking)
    assert stats.prefilled_tokens <= 20


def long_history() -> list[dict]:
    lines = "\n".join(f"- item {i}: check the build machines and the sync service"
                      for i in range(300))
    return [{"role": "user", "content": f"Summarize these notes.\n\n{lines}"},
            {"role": "assistant", "content": "Three hundred checks of the same two things."}]


def request(engine, hf_tokenizer, chat):
    messages = [*long_history(), {"role": "user", "content": "Shorter, please."}]
    options = GenerationOptions(thinking=False, max_tokens=40,
                                logits_processors=[Script(hf_tokenizer, "Two things, often.")])
    return engine.generate(messages, options, chat)


def same_cache(engine, chat: ChatCache, reference: ChatCache) -> None:
    """The same tokens, and (on the thread whose MLX stream holds them) the same keys and
    values in every layer, up to float rounding."""
    assert chat.tokens == reference.tokens
    assert chat.kv[0].offset == len(chat.tokens)

    def compare(model, tokenizer) -> bool:
        return all(mx.allclose(ours, theirs, atol=1e-4).item()
                   for layer, ref in zip(chat.kv, reference.kv)
                   for ours, theirs in zip(layer.keys_and_values(), ref.keys_and_values()))

    assert engine.call(compare)


def test_a_request_in_the_middle_of_idle_prefill_starts_at_once(engine, hf_tokenizer):
    reference_chat = ChatCache()
    reference = request(engine, hf_tokenizer, reference_chat).result()

    chat, chunks, queued = ChatCache(), [], []

    def progress(done: int, total: int) -> None:  # on the generation thread, between chunks
        chunks.append(done)
        if not queued:
            queued.append(request(engine, hf_tokenizer, chat))

    idle = engine.prefill(long_history(), GenerationOptions(thinking=False), chat,
                          progress=progress)
    assert idle.wait(60)
    result = queued[0].result()
    # Idle work stopped at the first check after the request arrived: not one more chunk.
    assert idle.outcome == "yielded" and len(chunks) == 1
    assert idle.prefilled == chunks[0] < idle.target
    # The request carried on from what was there, and came out as without idle work.
    assert result.stats.cached_tokens == chunks[0]
    assert result.stats.prompt_tokens == reference.stats.prompt_tokens
    assert (result.text, result.finish_reason) == (reference.text, reference.finish_reason)
    same_cache(engine, chat, reference_chat)


def test_a_cancelled_idle_prefill_leaves_a_consistent_cache(engine, hf_tokenizer):
    chat, chunks = ChatCache(), []
    options = GenerationOptions(thinking=False)

    def progress(done: int, total: int) -> None:
        chunks.append(done)
        if len(chunks) == 2:
            idle.cancel()

    idle = engine.prefill(long_history(), options, chat, progress=progress)
    assert idle.wait(60) and idle.outcome == "cancelled" and len(chunks) == 2
    prefix = engine.prompts.next_prefix(long_history(), "user", enable_thinking=False)
    assert chat.tokens == prefix[:chunks[-1]] and chat.kv[0].offset == len(chat.tokens)

    reference_chat = ChatCache()
    reference = request(engine, hf_tokenizer, reference_chat).result()
    result = request(engine, hf_tokenizer, chat).result()
    assert result.stats.cached_tokens == chunks[-1]
    assert result.text == reference.text
    same_cache(engine, chat, reference_chat)


def test_idle_prefill_already_done_or_too_long_does_nothing(engine):
    options = GenerationOptions(thinking=False)
    chat = ChatCache()
    assert engine.prefill(long_history(), options, chat).wait(60)
    again = engine.prefill(long_history(), options, chat)
    assert again.wait(60) and again.outcome == "done" and again.prefilled == 0
    assert again.cached == again.target == len(chat.tokens)

    huge = [{"role": "user", "content": "word " * (engine.context_window + 10)}]
    skipped = engine.prefill(huge, options, chat)
    assert skipped.wait(60) and skipped.outcome == "skipped"
    assert len(chat.tokens) == again.target  # untouched


def test_closing_the_engine_ends_idle_work(fixture_model):
    with Engine(fixture_model) as engine:
        engine.wait_loaded()
        handles = [engine.prefill(long_history(), GenerationOptions(), ChatCache())
                   for _ in range(3)]
    # Queued behind the end or cut short by it: every handle is finished, none hangs.
    assert all(h.wait(0) for h in handles)
    assert {h.outcome for h in handles} <= {"done", "yielded", "skipped"}
