"""``assistant tune data``: training examples from what the user already approved.

An adapter learns whatever it is shown, so only turns the user stood behind are kept:
tool calls that were allowed, valid against the tool's schema, and that ran without
error (the audit log says how each call went; the chat store says what the model wrote),
and plain answers that completed. Each example is mlx-lm's chat format with tools,
``{"messages": [...], "tools": [...]}``, whose last message is the one to learn
(``ChatDataset(mask_prompt=True)`` masks the rest).

Text that spells a control token is left out: training tokenizes with special tokens
parsed, so ``<|im_end|>`` in a tool result would become a real end of turn.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from assistant.errors import UserError

ALLOWED = {"once", "always", "chat", "stored: allow"}  # decisions that let a call run
CONTROL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>",
                  "</tool_call>", "<think>", "</think>", "<tool_response>",
                  "</tool_response>", "<|fim_", "<|vision_", "<|object_ref", "<|box_",
                  "<|quad_", "<|image_pad|>", "<|video_pad|>", "<|file_sep|>",
                  "<|repo_name|>")
NO_CHATS = ("no saved chats yet: chat with tools (assistant chat) first, then run "
            "assistant tune data again")


@dataclass
class Dataset:
    examples: list[dict] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)  # kept, by kind: tool call | answer
    left_out: Counter = field(default_factory=Counter)  # by reason
    per_chat: dict[int, int] = field(default_factory=dict)


def run_data(args, settings) -> int:
    from assistant.tune import data_dir
    from assistant.chat.store import ChatStore, store_file
    from assistant.chat.tooling import tool_cache
    from assistant.mcp.audit import audit_file

    if not 0 <= args.valid_share < 1:
        raise UserError("--valid-share must be at least 0 and below 1 (0.1 is a good start)")
    if not store_file().exists():  # reading must not create one
        raise UserError(NO_CHATS)
    store = ChatStore(store_file())
    try:
        chats = store.chats()
        if store.moved_aside is not None:
            raise UserError(f"{store_file()} is damaged (kept as {store.moved_aside.name}): "
                            "nothing to learn from; restore a backup of it, then run tune "
                            "data again")
        excluded = _excluded(chats, args.exclude)
        used = [c for c in chats if c.id not in excluded]
        if not chats:
            raise UserError(NO_CHATS)
        schemas = read_schemas(tool_cache().directory)
        audit = read_audit(audit_file())
        data = build(store, used, audit, schemas)
    finally:
        store.close()
    if args.list:
        for chat in chats:
            mark = "  (excluded)" if chat.id in excluded else ""
            print(f"{chat.id:>5}  {data.per_chat.get(chat.id, 0):>4}  {chat.title}{mark}")
        return 0
    unique = dedupe(data.examples)
    train, valid = split(unique, args.valid_share)
    print(describe(data, len(used), len(unique), len(train), len(valid)))
    if not unique:
        raise UserError("no usable examples: approve and run some tool calls in "
                        "assistant chat (or drop --exclude), then run tune data again")
    if args.dry_run:
        return 0
    out = Path(args.out or data_dir()).expanduser()
    summary = {"chats": len(used), "train": len(train), "valid": len(valid),
               "kinds": dict(data.kinds), "left_out": dict(data.left_out),
               "duplicates": len(data.examples) - len(unique)}
    write(out, train, valid, summary)
    print(out)
    return 0


def _excluded(chats, names: list[str]) -> set[int]:
    ids = set()
    for name in names:
        found = [c.id for c in chats if c.title == name or str(c.id) == name.strip()]
        if not found:
            raise UserError(f"no saved chat has the id or title {name!r}: see "
                            "assistant tune data --list")
        ids.update(found)
    return ids


# -- inputs ---------------------------------------------------------------------------


def read_schemas(directory: Path) -> dict[str, dict[str, dict]]:
    """server -> tool name -> input schema, from the tool lists servers last answered."""
    from assistant.mcp.toolcache import ToolListCache

    return {server: {t.name: {"description": t.description, "parameters": t.input_schema}
                     for t in tools}
            for server, tools in ToolListCache(directory).lists().items()}


def read_audit(path: Path) -> list[dict]:
    """The audit log's entries, in order; unreadable lines are skipped."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        # ``assistant tools call`` runs (decision "user: ...") are no model's calls
        if isinstance(entry, dict) and isinstance(entry.get("tool"), str) \
                and not str(entry.get("decision", "")).startswith("user:"):
            entries.append(entry)
    return entries


def _public(server: str, tool: str) -> set[str]:
    """Names the model may have called this tool by (plain, or qualified by its server)."""
    return {tool, re.sub(r"[^A-Za-z0-9_.-]", "_", f"{server}_{tool}")}


def _same(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# -- examples -------------------------------------------------------------------------


def build(store, chats, audit: list[dict], schemas: dict[str, dict[str, dict]]) -> Dataset:
    data = Dataset()
    used = [False] * len(audit)
    for chat in sorted(chats, key=lambda c: (c.created, c.id)):
        before = len(data.examples)
        _chat_examples(store.messages(chat.id), audit, used, schemas, data)
        data.per_chat[chat.id] = len(data.examples) - before
    return data


def _match(name: str, arguments, audit: list[dict], used: list[bool]) -> dict | None:
    key = _same(arguments)
    for i, entry in enumerate(audit):
        if not used[i] and name in _public(str(entry.get("server")), entry["tool"]) \
                and _same(entry.get("arguments")) == key:
            used[i] = True
            return entry
    return None


def _chat_examples(messages, audit, used, schemas, data: Dataset) -> None:
    history: list[dict] = []
    for i, m in enumerate(messages):
        message = {"role": m.role, "content": m.content}  # earlier reasoning is dropped
        if m.tool_calls:
            message["tool_calls"] = m.tool_calls
        if m.name is not None and m.role == "tool":
            message["name"] = m.name
        if m.role == "assistant":
            example, reason = _judge(m, messages[i + 1:], audit, used, schemas)
            if reason:
                data.left_out[reason] += 1
            else:
                text = _same([history, message, example["tools"]])
                if any(token in text for token in CONTROL_TOKENS):
                    data.left_out["control-token text"] += 1
                else:
                    data.examples.append({"messages": [*history, message], **example})
                    data.kinds["tool call" if m.tool_calls else "answer"] += 1
        history.append(message)


def _judge(m, after, audit, used, schemas) -> tuple[dict, str | None]:
    """The example's tools, or why this assistant message is left out."""
    if m.status != "complete":
        return {}, "cancelled" if m.status in ("stopped", "interrupted", "streaming") \
            else "failed"
    if "<tool_call>" in m.content:  # a call the model wrote but that did not parse
        return {}, "invalid call"
    if not m.tool_calls:
        if not m.content.strip():
            return {}, "empty answer"
        return {"tools": []}, None
    results = [t for t in after[:len(m.tool_calls)] if t.role == "tool"]
    reason, servers = None, []
    for n, call in enumerate(m.tool_calls):
        fn = call.get("function", call) if isinstance(call, dict) else {}
        name, arguments = fn.get("name"), fn.get("arguments")
        result = results[n] if n < len(results) else None
        entry = _match(name, arguments, audit, used) if isinstance(name, str) else None
        why = _call_problem(name, arguments, result, entry, schemas)
        reason = reason or why
        if entry is not None:
            servers.append(str(entry.get("server")))
    if reason:
        return {}, reason
    tools = []
    for server in dict.fromkeys(servers):
        for tool, schema in schemas[server].items():
            tools.append({"type": "function", "function": {"name": tool, **schema}})
    # a qualified name the model called is offered under that name
    offered = {t["function"]["name"] for t in tools}
    for call in m.tool_calls:
        fn = call.get("function", call)
        if fn["name"] not in offered:
            entry_tool = next(t for s in dict.fromkeys(servers) for t in schemas[s]
                              if fn["name"] in _public(s, t))
            schema = next(schemas[s][entry_tool] for s in dict.fromkeys(servers)
                          if entry_tool in schemas[s])
            tools.append({"type": "function", "function": {"name": fn["name"], **schema}})
            offered.add(fn["name"])
    return {"tools": tools}, None


def _call_problem(name, arguments, result, entry, schemas) -> str | None:
    from assistant.chat.turn import schema_problem

    text = result.content if result is not None else ""
    if result is None or result.status == "stopped" or text.startswith("Cancelled: the user "
                                                                       "stopped"):
        return "cancelled"
    if not isinstance(name, str) or not isinstance(arguments, dict):
        return "invalid call"
    if entry is None:
        if result.status == "denied":
            return "denied"
        if text.startswith("Error:"):
            return "invalid call"  # refused before it ran: unknown tool or bad arguments
        return "no audit entry"
    if entry.get("decision") not in ALLOWED or entry.get("outcome") == "denied":
        return "denied"
    if entry.get("outcome") == "cancelled" or text.startswith("Cancelled:"):
        return "cancelled"
    if entry.get("outcome") != "ok" or text.startswith("Error:") or result.status == "error":
        return "failed"
    schema = schemas.get(str(entry.get("server")), {}).get(entry["tool"])
    if schema is None:
        return "no known schema"
    if schema_problem(schema["parameters"], arguments):
        return "invalid call"
    return None


# -- output ---------------------------------------------------------------------------


def dedupe(examples: list[dict]) -> list[dict]:
    seen, unique = set(), []
    for example in examples:
        key = _same(example)
        if key not in seen:
            seen.add(key)
            unique.append(example)
    return unique


def split(examples: list[dict], share: float) -> tuple[list[dict], list[dict]]:
    """The same examples always split the same way: by a hash of each one's text."""
    n = len(examples)
    count = min(n - 1, max(1, round(n * share))) if n >= 2 else 0
    ranked = sorted(range(n), key=lambda i: hashlib.sha256(
        _same(examples[i]).encode("utf-8", "surrogatepass")).hexdigest())
    valid = set(ranked[:count])
    return ([e for i, e in enumerate(examples) if i not in valid],
            [e for i, e in enumerate(examples) if i in valid])


def describe(data: Dataset, chats: int, unique: int, train: int, valid: int) -> str:
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(data.kinds.items())) or "none"
    left = ", ".join(f"{k}: {v}" for k, v in sorted(data.left_out.items())) or "none"
    duplicates = len(data.examples) - unique
    return (f"chats used: {chats}\nexamples: {kinds}"
            f" ({duplicates} duplicate{'s' if duplicates != 1 else ''} dropped)\n"
            f"left out: {left}\ntrain: {train}, valid: {valid}")


def write(out: Path, train: list[dict], valid: list[dict], summary: dict) -> None:
    """Each file appears whole or not at all."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in (("train.jsonl", _jsonl(train)), ("valid.jsonl", _jsonl(valid)),
                           ("summary.json", json.dumps(summary, indent=1) + "\n")):
            tmp = out / f".{name}.{os.getpid()}.tmp"
            tmp.write_text(text, encoding="utf-8", errors="replace")
            tmp.replace(out / name)
    except OSError as exc:
        raise UserError(f"cannot write the data to {out}: {exc.strerror or exc}") from None


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

