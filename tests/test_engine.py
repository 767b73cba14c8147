"""The engine, driven for real: the fixture model, MLX generation, scripted output."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from assistant.engine import (ChatCache, Engine, Failed, Finished, GenerationOptions,
                              PromptReady, TextDelta, ThinkingDelta, ToolCallParsed, TurnStats)
from assistant.engine.engine import BUDGET_CLOSE
from assistant.errors import ModelError
from mlx_lm.utils import common_prefix_len
from scripted import Script, ThinkForever


def ask(engine, tokenizer, text, script, *, thinking=True, chat=None, history=(), **opts):
    messages = [*history, {"role": "user", "content": text}]
    options = GenerationOptions(thinking=thinking, max_tokens=opts.pop("max_tokens", 200),
                                logits_processors=[Script(tokenizer, script)], **opts)
    generation = engine.generate(messages, options, chat)
    events = list(generation)
    return events


def collect(events):
    thinking = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return thinking, text


def test_thinking_mode_splits_reasoning_from_answer(engine, hf_tokenizer):
    events = ask(engine, hf_tokenizer, "What time is it?",
                 "<think>\nThe user wants the time.\n</think>\n\nIt is noon.")
    thinking, text = collect(events)
    assert thinking.strip() == "The user wants the time."
    assert text == "It is noon."
    assert "<think>" not in text and "</think>" not in thinking
    assert isinstance(events[-1], Finished) and events[-1].reason == "stop"
    stats = next(e for e in events if isinstance(e, TurnStats))
    assert stats.thinking_tokens >= 5
    assert stats.thinking_mode is True
    # Reasoning streams before the answer, in several pieces.
    kinds = [type(e) for e in events if isinstance(e, (ThinkingDelta, TextDelta))]
    assert kinds.index(TextDelta) > kinds.index(ThinkingDelta)
    assert kinds.count(ThinkingDelta) > 1


def test_non_thinking_mode_has_no_think_block_anywhere(engine, hf_tokenizer):
    # The template closes an empty think block; the model answers after it.
    events = ask(engine, hf_tokenizer, "Hi", "Hello there!", thinking=False)
    thinking, text = collect(events)
    assert (thinking, text) == ("", "Hello there!")
    # A model that emits an empty think block itself (a known Qwen3 habit).
    events = ask(engine, hf_tokenizer, "Hi", "<think>\n\n</think>\n\nHello again.",
                 thinking=False)
    assert not [e for e in events if isinstance(e, ThinkingDelta)]
    assert collect(events)[1] == "Hello again."


def test_soft_switches_pick_the_mode_of_the_last_instruction(engine, hf_tokenizer):
    events = ask(engine, hf_tokenizer, "Quick one /no_think", "<think>\n\n</think>\n\nSure.")
    stats = next(e for e in events if isinstance(e, TurnStats))
    assert collect(events) == ("", "Sure.")
    assert stats.thinking_mode is False  # sampled with the non-thinking preset

    history = [{"role": "user", "content": "Be brief /no_think"},
               {"role": "assistant", "content": "OK."}]
    events = ask(engine, hf_tokenizer, "Now think it through /think",
                 "<think>\nStep one.\n</think>\n\nDone.", history=history)
    stats = next(e for e in events if isinstance(e, TurnStats))
    assert collect(events) == ("Step one.\n", "Done.")
    assert stats.thinking_mode is True

    # The hard switch wins: with thinking off, /think cannot turn it on.
    events = ask(engine, hf_tokenizer, "Think? /think", "Direct.", thinking=False)
    assert next(e for e in events if isinstance(e, TurnStats)).thinking_mode is False


@pytest.fixture(scope="module")
def opened_think_engine(fixture_model, tmp_path_factory):
    """A model whose template opens <think> itself (as Qwen3-*-Thinking-2507 does)."""
    model = tmp_path_factory.mktemp("opened") / "model"
    shutil.copytree(fixture_model, model)
    config_file = model / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["chat_template"] = config["chat_template"].replace(
        "{{- '<|im_start|>assistant\\n' }}", "{{- '<|im_start|>assistant\\n<think>\\n' }}")
    assert "assistant\\n<think>" in config["chat_template"]
    config_file.write_text(json.dumps(config))
    with Engine(model) as engine:
        engine.wait_loaded()
        yield engine


def test_thinking_opened_by_the_template(opened_think_engine, hf_tokenizer):
    events = ask(opened_think_engine, hf_tokenizer, "Why?", "Because of physics.\n</think>\n\n42")
    assert collect(events) == ("Because of physics.\n", "42")


def test_thinking_budget_closes_the_block_and_the_model_answers(engine, hf_tokenizer):
    chat = ChatCache()
    options = GenerationOptions(thinking=True, max_tokens=100, thinking_budget=12,
                                logits_processors=[ThinkForever(hf_tokenizer, "Forty-two.")])
    generation = engine.generate([{"role": "user", "content": "Meaning of life?"}], options, chat)
    events = list(generation)
    thinking, text = collect(events)
    stats = next(e for e in events if isinstance(e, TurnStats))
    assert text == "Forty-two."
    assert "hmm" in thinking and "</think>" not in thinking + text
    assert stats.thinking_tokens == 12
    assert events[-1] == Finished("stop")
    # The closing text went into the KV cache, not just the screen.
    close = hf_tokenizer.encode(BUDGET_CLOSE, add_special_tokens=False)
    start = len(chat.tokens) - len(close)
    assert any(chat.tokens[i:i + len(close)] == close for i in range(start, 0, -1))
    assert chat.kv[0].offset == len(chat.tokens)


def test_cancel_in_the_middle_of_a_generation(engine, hf_tokenizer):
    chat = ChatCache()
    options = GenerationOptions(thinking=False, max_tokens=400,
                                logits_processors=[Script(hf_tokenizer, " word" * 400)])
    generation = engine.generate([{"role": "user", "content": "Go on and on."}], options, chat)
    seen = []
    for event in generation:
        seen.append(event)
        if len([e for e in seen if isinstance(e, TextDelta)]) == 5:
            generation.cancel()
    assert seen[-1] == Finished("cancelled")
    stats = next(e for e in seen if isinstance(e, TurnStats))
    assert 5 <= stats.generated_tokens < 20
    # What was produced stays, and the cache holds exactly the tokens it says.
    assert collect(seen)[1].startswith("word word word")
    assert chat.kv[0].offset == len(chat.tokens)
    # The engine goes on with the next request.
    events = ask(engine, hf_tokenizer, "Still there?", "Yes.", thinking=False, chat=chat)
    assert collect(events)[1] == "Yes."


def test_the_prompt_size_comes_first(engine, hf_tokenizer):
    chat = ChatCache()
    ask(engine, hf_tokenizer, "Hi", "Hello.", thinking=False, chat=chat)
    events = ask(engine, hf_tokenizer, "Again", "Hello again.", thinking=False, chat=chat,
                 history=[{"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello."}])
    stats = next(e for e in events if isinstance(e, TurnStats))
    assert events[0] == PromptReady(stats.prompt_tokens, stats.cached_tokens)
    assert 0 < stats.cached_tokens < stats.prompt_tokens


def test_closing_the_engine_cancels_what_is_running_and_queued(fixture_model, hf_tokenizer):
    options = GenerationOptions(thinking=False, max_tokens=2000,
                                logits_processors=[Script(hf_tokenizer, " word" * 2000)])
    with Engine(fixture_model) as engine:
        engine.wait_loaded()
        running = engine.generate([{"role": "user", "content": "Go on."}], options)
        queued = engine.generate([{"role": "user", "content": "And then?"}], options)
        first = next(e for e in running if not isinstance(e, PromptReady))
        assert isinstance(first, TextDelta)
    # close() has returned: both ended as cancelled, long before 2,000 tokens.
    rest = list(running)
    assert rest[-1] == Finished("cancelled")
    assert next(e for e in rest if isinstance(e, TurnStats)).generated_tokens < 2000
    assert list(queued)[-1] == Finished("cancelled")


def test_cancel_before_start(engine, hf_tokenizer):
    options = GenerationOptions(logits_processors=[Script(hf_tokenizer, "never")])
    generation = engine.generate([{"role": "user", "content": "x"}], options)
    generation.cancel()
    assert list(generation)[-1] == Finished("cancelled")


def test_cache_reuse_prefills_only_the_new_tokens(engine, hf_tokenizer):
    chat = ChatCache()
    history: list[dict] = []
    stats_by_turn = []
    turns = [("What is MLX?", "<think>\nRecall it.\n</think>\n\nAn array framework."),
             ("Who makes it?", "<think>\nApple's research team.\n</think>\n\nApple."),
             ("Is it fast?", "<think>\nYes.\n</think>\n\nOn Apple silicon, yes.")]
    for question, script in turns:
        before = list(chat.tokens)
        messages = [*history, {"role": "user", "content": question}]
        prompt = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  enable_thinking=True, return_dict=False)
        events = ask(engine, hf_tokenizer, question, script, chat=chat, history=history)
        stats = next(e for e in events if isinstance(e, TurnStats))
        stats_by_turn.append(stats)
        assert stats.prompt_tokens == len(prompt)
        # Reused exactly the part of the cache that the new prompt starts with...
        assert stats.cached_tokens == min(common_prefix_len(before, prompt), len(prompt) - 1)
        assert chat.kv[0].offset == len(chat.tokens)
        history = [*messages, {"role": "assistant", "content": collect(events)[1]}]

    # ...which, on the third turn, is everything up to the last answer: the template
    # dropped the second turn's reasoning, and the cache was trimmed rather than reset.
    third = stats_by_turn[2]
    answer = hf_tokenizer.encode("Apple.<|im_end|>\n", add_special_tokens=False)
    question = hf_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Is it fast?"}], add_generation_prompt=True,
        enable_thinking=True, return_dict=False)
    assert third.prefilled_tokens == len(answer) + len(question)
    assert third.cached_tokens > stats_by_turn[1].prompt_tokens - 5


def test_tool_calls_are_parsed_from_the_stream(engine, hf_tokenizer):
    tools = [{"type": "function", "function": {
        "name": "now", "description": "Current time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}]
    script = ('<think>\nneed the time\n</think>\n\n<tool_call>\n{"name": "now", '
              '"arguments": {"tz": "UTC"}}\n</tool_call>\n<tool_call>\n{"name": "now", '
              '"arguments": {}}\n</tool_call>')
    events = ask(engine, hf_tokenizer, "Time?", script, tools=tools)
    calls = [e for e in events if isinstance(e, ToolCallParsed)]
    assert [(c.name, c.arguments, c.error) for c in calls] == [
        ("now", {"tz": "UTC"}, None), ("now", {}, None)]
    assert collect(events) == ("need the time\n", "")

    events = ask(engine, hf_tokenizer, "Time?", "<tool_call>\n{not json}\n</tool_call>",
                 tools=tools, thinking=False, constrain_tool_calls=False)
    (bad,) = [e for e in events if isinstance(e, ToolCallParsed)]
    assert bad.name is None and "not valid JSON" in bad.error and bad.raw == "{not json}"


def test_max_tokens_ends_with_length(engine, hf_tokenizer):
    events = ask(engine, hf_tokenizer, "Count", " one two three four five six seven",
                 thinking=False, max_tokens=4)
    assert events[-1] == Finished("length")
    assert next(e for e in events if isinstance(e, TurnStats)).generated_tokens == 4
    assert collect(events)[1] == "one two three four"


def test_prompt_longer_than_the_context_window(fixture_model, hf_tokenizer):
    with Engine(fixture_model, context_limit=64) as small:
        small.wait_loaded()
        events = list(small.generate([{"role": "user", "content": "word " * 100}]))
        assert len(events) == 1 and isinstance(events[0], Failed)
        assert events[0].kind == "context" and "context window" in events[0].error
        # Still usable afterwards.
        events = ask(small, hf_tokenizer, "Hi", "Hello.", thinking=False, max_tokens=10)
        assert collect(events)[1] == "Hello."


def test_a_model_that_cannot_load_is_a_model_error(fixture_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(fixture_model, broken)
    config = json.loads((broken / "config.json").read_text())
    config["model_type"] = "no_such_architecture"
    (broken / "config.json").write_text(json.dumps(config))
    with Engine(broken) as engine:
        # A request sent before loading finished is answered, not left hanging.
        early = engine.generate([{"role": "user", "content": "hi"}])
        with pytest.raises(ModelError, match="cannot load the model"):
            engine.wait_loaded()
        (event,) = list(early)
        assert isinstance(event, Failed) and event.kind == "model"
        assert "cannot load the model" in event.error


def test_a_token_limit_never_ends_in_a_broken_character(engine, hf_tokenizer):
    # Find a cut that falls inside a multi-byte character of the scripted answer.
    answer = "Notes: 𝒜𝒷𝒸 and 龘龘 done"
    encoding = engine.prompts.counter.encoding
    ids = engine.prompts.counter.encode_plain(answer)
    cut = next(n for n in range(1, len(ids)) if not _is_utf8(encoding.decode_bytes(ids[:n])))
    events = ask(engine, hf_tokenizer, "Go", answer, thinking=False, max_tokens=cut)
    text = collect(events)[1]
    assert events[-1] == Finished("length")
    assert "\ufffd" not in text
    assert answer.startswith(text) and len(text) > 0


def test_a_token_limit_after_an_unused_vocabulary_row(engine):
    # Qwen3's embedding has rows past its last token (151669-151935); a model can sample
    # one (the fixture's random weights do), and the answer cut there must still end.
    from scripted import force

    options = GenerationOptions(thinking=False, max_tokens=3,
                                logits_processors=[lambda tokens, logits: force(logits, 151801)])
    events = list(engine.generate([{"role": "user", "content": "Go"}], options))
    assert events[-1] == Finished("length"), events[-3:]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_a_lone_surrogate_escape_in_tool_call_arguments_is_replaced(engine, hf_tokenizer):
    events = ask(engine, hf_tokenizer, "Call it",
                 '<tool_call>\n{"name": "echo\\udfff", "arguments": {"text": "a\\ud800b",'
                 ' "k\\udc00": ["\\ud83d\\ude00"]}}\n</tool_call>', thinking=False)
    call = next(e for e in events if isinstance(e, ToolCallParsed))
    assert call.error is None
    assert call.name == "echo\ufffd"
    assert call.arguments == {"text": "a\ufffdb", "k\ufffd": ["😀"]}
    json.dumps(call.arguments, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize("levels, error", [
    (1500, "nested too deeply"),  # past json's own depth: RecursionError, not ValueError
    (200, "nested more than 32 levels")])  # parses, but would break every later prompt
def test_tool_call_arguments_nested_too_deep_are_a_malformed_call(engine, hf_tokenizer,
                                                                   levels, error):
    deep = '{"a": ' + "[" * levels + "]" * levels + "}"
    events = ask(engine, hf_tokenizer, "Call it",
                 f'<tool_call>\n{{"name": "echo", "arguments": {deep}}}\n</tool_call>',
                 thinking=False, max_tokens=4000)
    call = next(e for e in events if isinstance(e, ToolCallParsed))
    assert call.arguments is None and error in call.error
    assert isinstance(events[-1], Finished)


def test_tool_call_arguments_nested_a_little_are_kept(engine, hf_tokenizer):
    ok = ask(engine, hf_tokenizer, "Call it",
             '<tool_call>\n{"name": "echo", "arguments": {"a": [[{"b": [1]}]]}}\n</tool_call>',
             thinking=False)
    assert next(e for e in ok if isinstance(e, ToolCallParsed)).arguments == {"a": [[{"b": [1]}]]}


class ForceIds:
    """The model says exactly these token ids."""

    def __init__(self, ids):
        self.ids, self.step = list(ids), 0

    def __call__(self, tokens, logits):
        from scripted import force

        token = self.ids[min(self.step, len(self.ids) - 1)]
        self.step += 1
        return force(logits, token)


@pytest.mark.parametrize("thinking", [True, False])
def test_markers_spelled_in_ordinary_tokens_stay_text(engine, thinking):
    # A model echoing a tool result or a user's words writes these as plain text tokens:
    # only the control tokens themselves open a call or a reasoning block.
    text = '<think>\nnot reasoning\n</think>\n<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>'
    ids = engine.prompts.counter.encode_plain(text) + [151645]
    assert not set(ids) & engine.prompts.marker_ids
    options = GenerationOptions(thinking=thinking, max_tokens=len(ids) + 5,
                                logits_processors=[ForceIds(ids)])
    events = list(engine.generate([{"role": "user", "content": "Echo it"}], options))
    assert not [e for e in events if isinstance(e, (ToolCallParsed, ThinkingDelta))]
    assert collect(events)[1] == text
    # The same text as control tokens is a reasoning block and a call, as before.
    real = engine.prompts.counter.encode(text) + [151645]
    events = list(engine.generate([{"role": "user", "content": "Echo it"}], replace(
        options, logits_processors=[ForceIds(real)])))
    assert collect(events)[0].strip() == "not reasoning"
    assert [e.name for e in events if isinstance(e, ToolCallParsed)] == ["now"]
