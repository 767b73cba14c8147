"""``assistant tune data`` and ``tune eval``: examples only from calls the user approved
and that ran well, in a format mlx-lm's own loader takes; eval's two shares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import run

from assistant.chat.store import ChatStore, store_file
from assistant.chat.tooling import tool_cache
from assistant.mcp.audit import AuditLog, audit_file
from assistant.mcp.config import ServerConfig
from assistant.mcp.toolinfo import ToolInfo

SCHEMA = {"type": "object", "properties": {"path": {"type": "string"},
                                           "text": {"type": "string"}},
          "required": ["path", "text"], "additionalProperties": False}


def _call(name: str, arguments) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


class Chats:
    """A real store, audit log and tool cache, filled the way a turn fills them."""

    def __init__(self):
        self.store = ChatStore(store_file())
        self.audit = AuditLog(audit_file())
        tool_cache().put(ServerConfig(name="notes", command="x"), [
            ToolInfo("notes", "append_note", "Append text to a note.", SCHEMA, False, False)])

    def chat(self, title: str, *turns) -> int:
        chat_id = self.store.create_chat(title)
        for turn in turns:
            turn(self, chat_id)
        return chat_id

    def close(self):
        self.store.close()


def ask(text):
    return lambda c, chat: c.store.add_message(chat, {"role": "user", "content": text})


def answer(text, status="complete"):
    return lambda c, chat: c.store.add_message(
        chat, {"role": "assistant", "content": text, "reasoning_content": "hmm"}, status=status)


def call(arguments, *, decision="once", outcome="ok", result="done", status="ok",
         name="append_note", audit=True):
    def turn(c, chat):
        c.store.add_message(chat, {"role": "assistant", "content": "",
                                   "tool_calls": [_call(name, arguments)]})
        if audit:
            c.audit.record(server="notes", tool=name, arguments=arguments, decision=decision,
                           duration_s=0.1, outcome=outcome, result_bytes=4)
        c.store.add_message(chat, {"role": "tool", "name": name, "content": result},
                            status=status)
    return turn


GOOD = {"path": "todo.md", "text": "- milk"}


def malformed_beside_good(c, chat):
    """A reply with one good call and one whose JSON did not parse (kept as raw text)."""
    arguments = {"path": "todo.md", "text": "- soap"}
    c.store.add_message(chat, {"role": "assistant", "content": "<tool_call>\n{bad\n</tool_call>",
                               "tool_calls": [_call("append_note", arguments)]})
    c.audit.record(server="notes", tool="append_note", arguments=arguments, decision="once",
                   duration_s=0.1, outcome="ok", result_bytes=4)
    for result in ("done", "Error: Expecting value. Write the call as ..."):
        c.store.add_message(chat, {"role": "tool", "name": "append_note", "content": result})


@pytest.fixture
def chats():
    c = Chats()
    yield c
    c.close()


def data(*args):
    result = run("tune", "data", *args)
    return result, result.stdout.decode(), result.stderr.decode()


def rows(folder: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]


def test_only_approved_valid_successful_calls_and_kept_answers(chats, tmp_path):
    # the user's own `assistant tools call` with the same arguments is not the chat's call
    chats.audit.record(server="notes", tool="append_note", arguments=GOOD,
                       decision="user: tools call", duration_s=0.1, outcome="error",
                       result_bytes=0)
    chats.chat("good", ask("add milk"), call(GOOD), answer("Added milk."))
    chats.chat("bad", ask("add eggs"),
               call({"path": "todo.md", "text": "- eggs"}, decision="deny", outcome="denied",
                    result="Cancelled: the user denied this tool call.", status="denied"),
               call({"path": "todo.md", "text": "- tea"}, outcome="error",
                    result="Error: disk full", status="error"),
               call({"path": "todo.md"}, audit=False, status="error",
                    result="Error: invalid arguments for append_note: 'text' is required"),
               call({"x": 1}, name="no_such_tool", audit=False, status="error",
                    result="Error: unknown tool 'no_such_tool'"),
               call({"path": "todo.md", "text": "- rice"}, outcome="cancelled",
                    result="Cancelled: the user stopped this tool call.", status="error"),
               answer("half an ans", status="stopped"), answer("  "), malformed_beside_good)
    chats.chat("hostile", ask("say <|im_end|> please"), answer("Sure."),
               call({"path": "a.md", "text": "<tool_call>"}))
    out = tmp_path / "out"
    result, stdout, stderr = data("--out", str(out))
    assert result.returncode == 0, stderr
    train, valid = rows(out, "train"), rows(out, "valid")
    examples = train + valid
    assert len(examples) == 2 and len(valid) == 1
    learned = sorted(json.dumps(e["messages"][-1], sort_keys=True) for e in examples)
    assert learned == sorted([
        json.dumps({"role": "assistant", "content": "",
                    "tool_calls": [_call("append_note", GOOD)]}, sort_keys=True),
        json.dumps({"role": "assistant", "content": "Added milk."}, sort_keys=True)])
    tool_example = next(e for e in examples if "tool_calls" in e["messages"][-1])
    assert tool_example["tools"] == [{"type": "function", "function": {
        "name": "append_note", "description": "Append text to a note.", "parameters": SCHEMA}}]
    assert all("reasoning_content" not in m for e in examples for m in e["messages"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["left_out"] == {"denied": 1, "failed": 1, "invalid call": 3,
                                   "cancelled": 2, "empty answer": 1,
                                   "control-token text": 2}
    assert stdout.index("chats used: 3") < stdout.index(str(out))


def test_written_data_loads_and_tokenizes_with_mlx_lm(chats, tmp_path, fixture_model):
    from mlx_lm.tuner.datasets import load_dataset
    from mlx_lm.utils import load_tokenizer
    from types import SimpleNamespace

    chats.chat("one", ask("add milk"), call(GOOD), answer("Added milk."),
               ask("and eggs"), call({"path": "todo.md", "text": "- eggs"}))
    out = tmp_path / "out"
    assert data("--out", str(out))[0].returncode == 0
    tokenizer = load_tokenizer(fixture_model)
    args = SimpleNamespace(data=str(out), train=True, test=False, mask_prompt=True,
                           hf_dataset=False, chat_feature="messages",
                           prompt_feature="prompt", completion_feature="completion",
                           text_feature="text")
    train, valid, _ = load_dataset(args, tokenizer)
    assert len(train) + len(valid) == 3
    for dataset in (train, valid):
        for i in range(len(dataset)):
            tokens, offset = dataset.process(dataset[i])
            assert 0 < offset < len(tokens)


def test_exclude_dedupe_list_and_dry_run(chats, tmp_path):
    first = chats.chat("groceries", ask("add milk"), call(GOOD))
    chats.chat("again", ask("add milk"), call(GOOD))  # the same example: kept once
    chats.chat("other", ask("hi"), answer("Hello."))
    result, stdout, _ = data("--list")
    assert result.returncode == 0
    assert sorted(line.split()[:2] for line in stdout.splitlines()) == [
        [str(first), "1"], [str(first + 1), "1"], [str(first + 2), "1"]]
    out = tmp_path / "out"
    result, stdout, _ = data("--dry-run", "--out", str(out))
    assert "1 duplicate dropped" in stdout and not out.exists()
    result, stdout, _ = data("--exclude", "other", "--out", str(out))
    assert result.returncode == 0
    assert len(rows(out, "train") + rows(out, "valid")) == 1
    assert "chats used: 2" in stdout


def test_errors_are_one_line(tmp_path):
    result, _, stderr = data()
    assert result.returncode == 2 and "no saved chats" in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not store_file().exists()  # looking did not create a store
    chats = Chats()
    chats.chat("denied", ask("x"), call(GOOD, decision="deny", outcome="denied",
                                        status="denied", result="Cancelled: denied"))
    result, stdout, stderr = data()
    assert result.returncode == 2 and "no usable examples" in stderr, stderr
    assert "denied: 1" in stdout
    result, _, stderr = data("--exclude", "nope")
    assert result.returncode == 2 and "--list" in stderr
    result, _, stderr = data("--valid-share", "1.5")
    assert result.returncode == 2 and "--valid-share" in stderr
    chats.close()


def test_damaged_store_is_one_line(tmp_path):
    store_file().parent.mkdir(parents=True, exist_ok=True)
    store_file().write_bytes(b"not a database" * 100)
    result, _, stderr = data()
    assert result.returncode == 2 and "is damaged" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


# -- tune eval ------------------------------------------------------------------------

TOOL = {"type": "function", "function": {"name": "append_note",
                                         "description": "Append text to a note.",
                                         "parameters": SCHEMA}}


def _eval_example(item: str) -> dict:
    return {"messages": [{"role": "user", "content": f"Add {item} to todo.md"},
                         {"role": "assistant", "content": "", "tool_calls": [
                             _call("append_note", {"path": "todo.md", "text": f"- {item}"})]}],
            "tools": [TOOL]}


def _said(arguments) -> str:
    return ('<tool_call>\n' + json.dumps({"name": "append_note", "arguments": arguments})
            + '\n</tool_call>')


def test_eval_counts_matching_and_valid_calls(engine, hf_tokenizer):
    """Scripted answers whose scores are known: one exact call, one valid but different,
    one against the schema, one plain answer -> matching 1 of 4, valid 2 of 4."""
    from scripted import Script

    from assistant.tune.evaluate import evaluate

    examples = [_eval_example(i) for i in ("milk", "eggs", "tea", "rice")]
    said = {"milk": _said({"path": "todo.md", "text": "- milk"}),
            "eggs": _said({"path": "todo.md", "text": "- bread"}),
            "tea": _said({"path": "todo.md"}),
            "rice": "Done."}

    def processors(example):
        item = example["messages"][0]["content"].split()[1]
        return [Script(hf_tokenizer, said[item])]

    score = evaluate(engine, examples, processors=processors)
    assert (score.examples, score.matching, score.valid) == (4, 1, 2)
    assert score.as_dict()["matching_share"] == 0.25
    assert score.as_dict()["valid_share"] == 0.5


@pytest.fixture
def eval_data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps(_eval_example("milk")) + "\n")
    plain = {"messages": [{"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "Hello."}], "tools": []}
    (folder / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        _eval_example("eggs"), plain, _eval_example("tea"))))
    return folder


def test_eval_json_shape(fixture_model, eval_data, tmp_path):
    from adapters import make_adapter

    adapter = make_adapter(fixture_model, tmp_path / "adapter")
    result = run("tune", "eval", "--model", str(fixture_model), "--data", str(eval_data),
                 "--adapter", str(adapter), "--json", "--limit", "1", "--max-tokens", "48")
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    assert report["adapter_path"] == str(adapter)
    for label in ("base", "adapter"):
        assert report[label]["examples"] == 1  # the plain answer is not a tool call
        assert set(report[label]) == {"examples", "matching", "valid", "matching_share",
                                      "valid_share"}
        assert report[label]["matching"] in (0, 1) and report[label]["valid"] in (0, 1)
        assert report[label]["valid_share"] == report[label]["valid"]


def test_eval_bad_inputs_are_one_line(fixture_model, eval_data, tmp_path):
    def error(*args, needle):
        result = run("tune", "eval", *args)
        err = result.stderr.decode()
        assert result.returncode == 2 and needle in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err

    model = ("--model", str(fixture_model))
    error("--model", "http://127.0.0.1:9/v1", "--data", str(eval_data), needle="local-only")
    error(*model, "--data", str(eval_data), needle="tune run")  # no adapter yet
    error(*model, "--data", str(tmp_path / "none"), "--adapter", str(tmp_path),
          needle="tune data")
    error(*model, "--data", str(eval_data), "--limit", "0", needle="--limit")
    error(*model, "--data", str(eval_data), "--max-tokens", "0", needle="--max-tokens")
    error(*model, "--data", str(eval_data), "--adapter", str(tmp_path / "no"),
          needle="no adapter folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "valid.jsonl").write_text(json.dumps(
        {"messages": [{"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "Hello."}]}) + "\n")
    error(*model, "--data", str(empty), "--adapter", str(tmp_path), needle="no tool-call")
