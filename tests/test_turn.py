"""The turn loop with tools: the real engine with scripted output (TESTING.md §2) calls
real MCP servers over stdio, with approval, validation, bounds and an audit trail."""

from __future__ import annotations

import json

import pytest

from assistant.chat.tooling import make_tools
from assistant.chat.turn import RESULT_TOKENS, ROUNDS_NOTE, Turn
from assistant.engine import ChatCache, GenerationOptions, TextDelta
from assistant.mcp.audit import audit_file
from assistant.mcp.config import ServerConfig
from assistant.mcp.host import McpHost
from assistant.tokens import counter_for
from mcp_helpers import misbehaving, ours, raw, time_server
from scripted import Rounds


def call(name, **arguments):
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


class Recorder:
    def __init__(self, answers=()):
        self.answers = list(answers)
        self.asked, self.updates, self.text = [], [], ""

    def on_event(self, event):
        if isinstance(event, TextDelta):
            self.text += event.text

    def on_tool_call(self, call):
        self.updates.append((call.name, call.status))

    def approve(self, request):
        self.asked.append((request.tool.server, request.tool.name, request.arguments))
        return self.answers.pop(0) if self.answers else "deny"


@pytest.fixture
def notes(tmp_path):
    root = tmp_path / "notes"
    (root / "work").mkdir(parents=True)
    (root / "todo.md").write_text("# Todo\n\n- call the plumber\n- 买牛奶\n", encoding="utf-8")
    (root / "work" / "plan.md").write_text("# Plan\n\nShip the offline mode.\n")
    return root


@pytest.fixture
def host(notes, tmp_path):
    host = McpHost(ours(notes), log_dir=tmp_path / "logs")
    host.start()
    yield host
    host.close()


def turn(engine, hf_tokenizer, fixture_model, host, scripts, *, answers=(), servers=None,
         question="Help me", max_rounds=6, constrain=True):
    recorder = Recorder(answers)
    tools = make_tools(host, servers or [s.config for s in host.servers.values()],
                       counter_for(fixture_model), recorder.approve)
    # ``constrain=False`` for scripts that write calls the grammar would not let through.
    options = GenerationOptions(thinking=False, max_tokens=120, constrain_tool_calls=constrain,
                                logits_processors=[Rounds(hf_tokenizer, *scripts)])
    messages = [{"role": "user", "content": question}]
    t = Turn(engine, messages, options, chat=ChatCache(), observer=recorder, tools=tools,
             max_rounds=max_rounds)
    return t.run(), recorder, t


def tool_messages(outcome):
    return [m["content"] for m in outcome.messages if m["role"] == "tool"]


def test_model_reads_a_note_and_answers(engine, hf_tokenizer, fixture_model, host):
    outcome, rec, _ = turn(engine, hf_tokenizer, fixture_model, host,
                           [call("read_note", path="todo.md"), "You need to call the plumber."],
                           answers=["once"])
    assert rec.asked == [("notes", "read_note", {"path": "todo.md"})]
    assert outcome.text == "You need to call the plumber."
    assert outcome.finish_reason == "stop"
    (result,) = tool_messages(outcome)
    assert "买牛奶" in result and "plumber" in result
    assert [c.status for c in outcome.calls] == ["ok"]
    assert ("read_note", "running") in rec.updates and ("read_note", "ok") in rec.updates
    # The tool result went back to the model inside <tool_response>.
    assert outcome.messages[0]["tool_calls"][0]["function"]["name"] == "read_note"
    assert len(outcome.stats) == 2 and outcome.stats[1].cached_tokens > 0


def test_two_calls_in_one_reply(engine, hf_tokenizer, fixture_model, host):
    both = call("calculate", expression="19*23") + "\n" + call("days_between", start="2026-01-01",
                                                              end="2026-03-01")
    outcome, rec, _ = turn(engine, hf_tokenizer, fixture_model, host, [both, "437 and 59."],
                           answers=["once", "once"])
    assert [c.tool for c in outcome.calls] == ["calculate", "days_between"]
    assert [r.strip() for r in tool_messages(outcome)][0] == "437"
    assert "59" in tool_messages(outcome)[1]
    assert outcome.text == "437 and 59."


def test_a_three_round_chain(engine, hf_tokenizer, fixture_model, host, notes):
    scripts = [call("search_notes", query="plan"), call("read_note", path="work/plan.md"),
               call("append_note", path="todo.md", text="- ship the offline mode"),
               "Added it to your todo list."]
    outcome, rec, _ = turn(engine, hf_tokenizer, fixture_model, host, scripts,
                           answers=["chat", "chat", "once"])
    assert [c.tool for c in outcome.calls] == ["search_notes", "read_note", "append_note"]
    assert all(c.status == "ok" for c in outcome.calls)
    assert "ship the offline mode" in (notes / "todo.md").read_text()
    assert outcome.text == "Added it to your todo list."
    assert len(outcome.stats) == 4


def test_denial_reaches_the_model_as_a_result(engine, hf_tokenizer, fixture_model, host, notes):
    outcome, rec, _ = turn(engine, hf_tokenizer, fixture_model, host,
                           [call("append_note", path="todo.md", text="- hacked"), "OK, I won't."],
                           answers=["deny"])
    assert "hacked" not in (notes / "todo.md").read_text()
    assert outcome.calls[0].status == "denied"
    assert tool_messages(outcome)[0].startswith("Cancelled: the user denied")
    assert outcome.text == "OK, I won't."
    entry = json.loads(audit_file().read_text().splitlines()[-1])
    assert (entry["tool"], entry["outcome"], entry["decision"]) == ("append_note", "denied", "deny")


def test_errors_the_model_can_correct(engine, hf_tokenizer, fixture_model, host):
    scripts = ["<tool_call>\n{\"name\": \"read_note\", \"arguments\": {path: 1}}\n</tool_call>",
               call("read_notes", path="todo.md"),
               call("read_note", file="todo.md"),
               call("read_note", path="../../etc/passwd"),
               "Sorry."]
    outcome, rec, _ = turn(engine, hf_tokenizer, fixture_model, host, scripts,
                           answers=["once"], constrain=False)
    results = tool_messages(outcome)
    assert "not valid JSON" in results[0]
    assert "unknown tool 'read_notes'" in results[1] and "read_note" in results[1]
    assert "invalid arguments" in results[2] and "path" in results[2]
    assert results[3].startswith("Error:") and "must not contain '..'" in results[3]
    assert [c.status for c in outcome.calls] == ["error"] * 4
    assert rec.asked == [("notes", "read_note", {"path": "../../etc/passwd"})]  # only the valid one
    assert outcome.text == "Sorry."


def test_identical_call_is_not_run_twice(engine, hf_tokenizer, fixture_model, host):
    again = call("calculate", expression="1+1")
    outcome, rec, _ = turn(engine, hf_tokenizer, fixture_model, host, [again, again, "2"],
                           answers=["once", "once"])
    assert [c.status for c in outcome.calls] == ["ok", "skipped"]
    assert "Not run again" in tool_messages(outcome)[1]
    assert len(rec.asked) == 1


def test_rounds_are_bounded(engine, hf_tokenizer, fixture_model, host):
    scripts = [call("calculate", expression=f"{i}+1") for i in range(10)]
    outcome, rec, _ = turn(engine, hf_tokenizer, fixture_model, host, scripts,
                           answers=["chat"], max_rounds=2)
    assert outcome.finish_reason == "rounds"
    assert [c.status for c in outcome.calls] == ["ok", "ok", "skipped"]
    assert ROUNDS_NOTE in tool_messages(outcome)[1]


def test_stored_and_chat_approvals(engine, hf_tokenizer, fixture_model, host):
    first, rec, _ = turn(engine, hf_tokenizer, fixture_model, host,
                         [call("calculate", expression="2*2"), "4"], answers=["always"])
    assert len(rec.asked) == 1
    # "always" is stored: the next chat does not ask.
    second, rec, _ = turn(engine, hf_tokenizer, fixture_model, host,
                          [call("calculate", expression="3*3"), "9"])
    assert rec.asked == [] and second.calls[0].status == "ok"
    assert second.calls[0].decision == "stored: allow"


def test_trust_lets_annotations_shape_the_default(engine, hf_tokenizer, fixture_model, host):
    trusted = [ServerConfig(**{**vars(s.config), "trust": True}) for s in host.servers.values()]
    outcome, rec, _ = turn(engine, hf_tokenizer, fixture_model, host,
                           [call("list_notes"), call("append_note", path="x.md", text="y"), "ok"],
                           servers=trusted, answers=["deny"])
    # read-only list_notes ran without asking; append_note still asked.
    assert [a[1] for a in rec.asked] == ["append_note"]
    assert [c.status for c in outcome.calls] == ["ok", "denied"]


def test_huge_result_is_cut_for_the_model_but_kept_for_the_user(
        engine, hf_tokenizer, fixture_model, tmp_path):
    with McpHost([misbehaving("huge")], log_dir=tmp_path / "logs") as host:
        outcome, rec, _ = turn(engine, hf_tokenizer, fixture_model, host,
                               [call("work"), "That was a lot."], answers=["once"])
    sent = tool_messages(outcome)[0]
    assert "tokens cut here" in sent
    assert counter_for(fixture_model).count(sent) < RESULT_TOKENS + 50
    assert len(outcome.calls[0].result) > 5_000_000
    assert outcome.text == "That was a lot."


def test_timeout_and_crash_are_results(engine, hf_tokenizer, fixture_model, tmp_path, notes):
    servers = [misbehaving("hang", timeout=2), misbehaving("crash"), *ours(notes)[2:]]
    with McpHost(servers, log_dir=tmp_path / "logs") as host:
        # Both servers name their tool "work": the model sees hang_work and crash_work.
        outcome, rec, _ = turn(engine, hf_tokenizer, fixture_model, host,
                               [call("hang_work"), call("crash_work"),
                                call("calculate", expression="7*6"), "42, eventually."],
                               answers=["chat", "chat", "chat"])
    results = tool_messages(outcome)
    assert "did not answer within 2 s" in results[0]
    assert "stopped responding" in results[1]
    assert results[2].strip() == "42"
    assert outcome.text == "42, eventually."


def test_a_server_nobody_here_wrote_through_the_turn(engine, hf_tokenizer, fixture_model,
                                                     tmp_path):
    with McpHost([time_server()], log_dir=tmp_path / "logs") as host:
        outcome, rec, _ = turn(engine, hf_tokenizer, fixture_model, host,
                               [call("get_current_time", timezone="Europe/Paris"), "Done."],
                               answers=["once"])
    assert outcome.calls[0].status == "ok"
    assert json.loads(tool_messages(outcome)[0])["timezone"] == "Europe/Paris"


def test_invalid_unicode_in_a_call_is_replaced(engine, hf_tokenizer, fixture_model, tmp_path):
    # The model writes the JSON escape of a lone surrogate; json.loads makes it a str that
    # no UTF-8 writer takes (the SDK's pipe, the audit log).
    with McpHost([raw("echo")], log_dir=tmp_path / "logs") as host:
        outcome, rec, _ = turn(engine, hf_tokenizer, fixture_model, host,
                               [call("work", text="a\ud800b"), call("work", text="next"),
                                "Both went through."], answers=["chat"], constrain=False)
        assert host.servers["echo"].status == "ready"
    assert [c.status for c in outcome.calls] == ["ok", "ok"]
    assert json.loads(outcome.calls[0].result) == {"text": "a\ufffdb"}
    assert json.loads(outcome.calls[1].result) == {"text": "next"}
    assert outcome.text == "Both went through."
    entries = [json.loads(line) for line in audit_file().read_text(encoding="utf-8").splitlines()]
    assert [e["arguments"] for e in entries] == [{"text": "a\ufffdb"}, {"text": "next"}]
