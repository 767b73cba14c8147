"""Constrained tool calls: the real engine and llguidance, with output steered toward
calls that leave the grammar (scripted.Steer pushes each token of a script; the grammar
masks the ones it forbids). Whatever the script tries, the reply holds a valid call to
an offered tool or no call, and the test shows which of the script's tokens were masked.
"""

from __future__ import annotations

import json
import logging

import jsonschema
import pytest

from assistant.engine import ChatCache, GenerationOptions, ToolCallParsed, TurnStats
from scripted import THINK_END, Steer, ThinkForever


def tool(name, properties, required=(), **extra):
    return {"type": "function", "function": {
        "name": name, "description": f"{name} for tests",
        "parameters": {"type": "object", "properties": properties,
                       "required": list(required), **extra}}}


READ = tool("read_note", {"path": {"type": "string"}}, ["path"])
APPEND = tool("append_note", {"path": {"type": "string"}, "text": {"type": "string"}},
              ["path", "text"])
DATE_ADD = tool("date_add", {"date": {"type": "string"}, "days": {"type": "integer"}}, ["date"])
ALARM = tool("set_alarm", {
    "when": {"type": "object", "properties": {
        "hour": {"type": "integer", "minimum": 0, "maximum": 23},
        "minute": {"type": "integer", "minimum": 0, "maximum": 59}},
        "required": ["hour", "minute"], "additionalProperties": False},
    "sound": {"type": "string", "enum": ["bell", "chime", "radio"]},
    "days": {"type": "array", "items": {"type": "string", "enum": ["mon", "tue", "wed"]},
             "maxItems": 3},
    "volume": {"type": "number", "minimum": 0, "maximum": 1},
    "label": {"type": "string", "maxLength": 12}}, ["when", "sound"])
TOOLS = [READ, APPEND, DATE_ADD, ALARM]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def call(name, **arguments):
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


def run(engine, hf_tokenizer, script, *, tools=TOOLS, thinking=False, max_tokens=120,
        seed=0, constrain=True, end=True, **opts):
    steer = Steer(hf_tokenizer, script, end=end)
    options = GenerationOptions(thinking=thinking, max_tokens=max_tokens, tools=tools, seed=seed,
                                constrain_tool_calls=constrain, logits_processors=[steer],
                                **opts)
    events = list(engine.generate([{"role": "user", "content": "Use a tool."}], options,
                                  ChatCache()))
    calls = [e for e in events if isinstance(e, ToolCallParsed)]
    return calls, steer, events


def masked_text(hf_tokenizer, steer) -> list[str]:
    return [hf_tokenizer.decode([t]) for t in steer.masked()]


def assert_valid(calls, schemas=SCHEMAS):
    """A valid call to an offered tool, or no call: never a malformed one."""
    for c in calls:
        assert c.error is None, c.raw
        assert c.name in schemas, c.raw
        jsonschema.validate(c.arguments, schemas[c.name])
        assert c.constrained


def test_a_valid_call_passes_untouched(engine, hf_tokenizer):
    script = call("set_alarm", when={"hour": 7, "minute": 30}, sound="chime",
                  days=["mon", "wed"], volume=0.5, label="gym")
    calls, steer, _ = run(engine, hf_tokenizer, script)
    assert steer.masked() == []
    assert [(c.name, c.arguments, c.constrained) for c in calls] == [
        ("set_alarm", {"when": {"hour": 7, "minute": 30}, "sound": "chime",
                       "days": ["mon", "wed"], "volume": 0.5, "label": "gym"}, True)]


@pytest.mark.parametrize("script, refused", [
    # A tool that was not offered: its name cannot be written.
    (call("delete_everything"), "delete"),
    # A key the schema does not have.
    (call("read_note", path="a.md", mode="w"), ","),
    # A required key left out: the object cannot close.
    ('<tool_call>\n{"name": "append_note", "arguments": {"path": "a.md"}}\n</tool_call>', "}}"),
    # A string where an integer is due.
    (call("date_add", date="2026-01-01", days="3"), ' "'),
    # A value outside the enum.
    (call("set_alarm", when={"hour": 7, "minute": 0}, sound="siren"), "s"),
    # A number past its bound.
    (call("set_alarm", when={"hour": 99, "minute": 0}, sound="bell"), "9"),
    # The call ends the turn with its object still open.
    ('<tool_call>\n{"name": "read_note", "arguments": {', "<|im_end|>"),
])
def test_output_that_leaves_the_grammar_is_masked(engine, hf_tokenizer, script, refused):
    calls, steer, _ = run(engine, hf_tokenizer, script)
    masked = masked_text(hf_tokenizer, steer)
    assert masked, "the script should have tried a token the grammar forbids"
    # (The grammar also holds forced text to its canonical tokens: " {" before '"path"'
    # is refused for the one token ' {"'. So look for the refusal among all masked.)
    assert any(refused in m for m in masked), masked
    assert len(calls) <= 1
    assert_valid(calls)


def test_the_same_scripts_unconstrained_give_broken_calls(engine, hf_tokenizer):
    # The comparison: without the grammar each of these reaches the turn loop malformed.
    calls, steer, _ = run(engine, hf_tokenizer, call("delete_everything"), constrain=False)
    assert steer.masked() == [] and calls[0].name == "delete_everything"
    calls, _, _ = run(engine, hf_tokenizer, call("date_add", date="x", days="3"), constrain=False)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(calls[0].arguments, SCHEMAS["date_add"])
    assert not calls[0].constrained


def test_a_call_cannot_open_inside_reasoning(engine, hf_tokenizer):
    script = ("<think>\nI should <tool_call> now\n</think>\n\n"
              + call("read_note", path="todo.md"))
    calls, steer, events = run(engine, hf_tokenizer, script, thinking=True)
    open_id = hf_tokenizer.convert_tokens_to_ids("<tool_call>")
    # The first <tool_call> (inside <think>) was masked; the one after </think> was not.
    pushed = [token for token, _ in steer.steps]
    first, second = [i for i, t in enumerate(pushed) if t == open_id]
    assert steer.steps[first][1] is True and steer.steps[second][1] is False
    assert pushed.index(THINK_END) < second
    assert [(c.name, c.arguments) for c in calls] == [("read_note", {"path": "todo.md"})]
    assert_valid(calls)


def test_two_calls_in_one_reply(engine, hf_tokenizer):
    script = (call("read_note", path="a.md") + "\n"
              + call("date_add", date="2026-01-01", days=3))
    calls, steer, _ = run(engine, hf_tokenizer, script)
    assert steer.masked() == []
    assert [c.name for c in calls] == ["read_note", "date_add"]
    assert_valid(calls)


def test_two_calls_in_thinking_mode_after_reasoning(engine, hf_tokenizer):
    script = ("<think>\nTwo lookups.\n</think>\n\n" + call("read_note", path="a.md") + "\n"
              + call("read_notes", path="b.md"))  # the second name is wrong
    calls, steer, _ = run(engine, hf_tokenizer, script, thinking=True)
    assert steer.masked(), "the wrong name should have been masked"
    assert calls[0].arguments == {"path": "a.md"}
    assert len(calls) == 2
    assert_valid(calls)


@pytest.mark.parametrize("seed", range(6))
def test_the_models_own_calls_are_always_valid(engine, hf_tokenizer, seed):
    # Only "<tool_call>" is pushed: the random-weight model chooses every other token, so
    # names, nested objects, enums, arrays and bounds are all its own (blind) choice.
    calls, steer, _ = run(engine, hf_tokenizer, "<tool_call>", max_tokens=80, seed=seed,
                          end=False)
    assert steer.masked() == []
    assert len(calls) == 1
    assert_valid(calls)


def test_the_token_limit_closes_a_call_that_would_not_end(engine, hf_tokenizer):
    # A string that runs on past the limit: the grammar closes the call in time.
    script = call("append_note", path="a.md", text="word " * 200)
    calls, steer, events = run(engine, hf_tokenizer, script, max_tokens=60)
    assert len(calls) == 1 and calls[0].name == "append_note"
    assert_valid(calls)
    assert calls[0].arguments["text"].startswith("word word")
    stats = next(e for e in events if isinstance(e, TurnStats))
    assert stats.generated_tokens <= 60


class ThinkThenSteer:
    """Reasons forever (forced filler); once the engine has closed the block, steers."""

    def __init__(self, hf_tokenizer, answer):
        self.think = ThinkForever(hf_tokenizer, "")
        self.steer = Steer(hf_tokenizer, answer)

    def __call__(self, tokens, logits):
        if THINK_END in tokens.tolist():
            return self.steer(tokens, logits)
        return self.think(tokens, logits)


def test_the_thinking_budget_cut_then_a_constrained_call(engine, hf_tokenizer):
    # Reasoning never ends on its own; the engine closes it at the budget, and the guard
    # knows reasoning is over, so the call that follows opens and is held to the grammar.
    script = ThinkThenSteer(hf_tokenizer, call("read_note", path="x.md", extra=1))
    options = GenerationOptions(thinking=True, max_tokens=120, thinking_budget=10, tools=TOOLS,
                                logits_processors=[script])
    events = list(engine.generate([{"role": "user", "content": "Go."}], options, ChatCache()))
    calls = [e for e in events if isinstance(e, ToolCallParsed)]
    assert "," in masked_text(hf_tokenizer, script.steer)[0]  # the extra key
    assert len(calls) == 1 and calls[0].name == "read_note"
    assert calls[0].arguments["path"].startswith("x.md")
    assert_valid(calls)


def test_a_schema_llguidance_cannot_express_degrades_for_that_tool_only(
        engine, hf_tokenizer, caplog):
    tags = tool("tag", {"tags": {"type": "array", "items": {"type": "string"},
                                 "uniqueItems": True}}, ["tags"])
    tools = [tags, READ]
    with caplog.at_level(logging.WARNING, logger="assistant.engine.constrain"):
        # The degraded tool: its name is enforced, its arguments are any JSON object.
        calls, steer, _ = run(engine, hf_tokenizer, call("tag", tags=["a", "a"], more=True),
                              tools=tools)
    assert any("'tag'" in r.getMessage() and "uniqueItems" in r.getMessage()
               for r in caplog.records)
    assert steer.masked() == []
    assert [(c.name, c.arguments, c.constrained) for c in calls] == [
        ("tag", {"tags": ["a", "a"], "more": True}, True)]
    # The other tool keeps its whole schema.
    calls, steer, _ = run(engine, hf_tokenizer, call("read_note", path="a.md", mode="w"),
                          tools=tools)
    assert "," in masked_text(hf_tokenizer, steer)[0]
    assert_valid(calls, {"read_note": SCHEMAS["read_note"]})
