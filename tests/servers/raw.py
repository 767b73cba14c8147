"""An MCP server written by hand, without the SDK, that says things the SDK cannot.

    python raw.py MODE [RECORD]

It speaks the 2025-11-25 handshake over stdio, starts in a blink (no SDK import) and
answers ``tools/call`` for one tool, ``work``, according to MODE:

surrogate  the result text holds a lone surrogate as a JSON escape ("\\ud800"), and the
           server is still there for the next call
bytes      the result line holds bytes that are not UTF-8
echo       the result is the arguments as the server received them, as JSON
slowlist   like echo, but takes 3 s to list its tools (a slow handshake, after discovery)
gated      like echo, but answers nothing until the file RECORD exists (a server slow
           to start, for as long as a test wants); its tools are named by that file's
           lines, so a test can change them between runs
slowlists  like echo, and offers a resource (raw://note) and a prompt (note), but
           answers resources/list, resources/templates/list and prompts/list only once
           the file RECORD exists, and resources/read only once RECORD.read exists (a
           server that answers late, for as long as a test wants); the handshake is at
           once
legacy     as a 2025-11-25 server does it, mid-call: reports progress, asks the user a
           question (an elicitation/create request to the client), then adds the tool
           "extra" and says so unasked (notifications/tools/list_changed); the result is
           the client's answer, as JSON

With RECORD, a file (but in the gated modes), the server appends "start" when it starts and "ready" when it has
listed its tools, each with its pid.
"""

import json
import os
import sys
import time

MODE = sys.argv[1]
RECORD = sys.argv[2] if len(sys.argv) > 2 else None
VERSION = "2025-11-25"
WORK = {"name": "work", "description": "Answers in its own way.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}


def record(what: str) -> None:
    if RECORD and MODE not in ("gated", "slowlists"):
        with open(RECORD, "a") as f:
            f.write(f"{what} {os.getpid()}\n")


def send(message: dict) -> None:
    write_line(json.dumps(message).encode())


def write_line(data: bytes) -> None:
    os.write(1, data + b"\n")


def result(id_, text: str) -> dict:
    return {"jsonrpc": "2.0", "id": id_,
            "result": {"content": [{"type": "text", "text": text}], "isError": False}}


def answer(request: dict) -> None:
    id_, method = request.get("id"), request.get("method")
    if id_ is None:
        return  # a notification
    if method == "initialize":
        tools = {"listChanged": True} if MODE == "legacy" else {}
        capabilities = {"tools": tools}
        if MODE == "slowlists":
            capabilities.update(resources={}, prompts={})
        send({"jsonrpc": "2.0", "id": id_, "result": {
            "protocolVersion": VERSION, "capabilities": capabilities,
            "serverInfo": {"name": f"raw-{MODE}", "version": "1"}}})
    elif method == "tools/list":
        if MODE == "slowlist":
            time.sleep(3)
        tools = [WORK]
        if MODE == "gated":
            with open(RECORD) as f:
                tools = [{**WORK, "name": name} for name in f.read().split()]
        if EXTRA:
            tools = tools + [{**WORK, "name": "extra"}]
        send({"jsonrpc": "2.0", "id": id_, "result": {"tools": tools}})
        record("ready")
    elif MODE == "slowlists" and method in LISTS:
        while not os.path.exists(RECORD):
            time.sleep(0.05)
        send({"jsonrpc": "2.0", "id": id_, "result": LISTS[method]})
    elif MODE == "slowlists" and method == "resources/read":
        while not os.path.exists(RECORD + ".read"):
            time.sleep(0.05)
        send({"jsonrpc": "2.0", "id": id_, "result": {"contents": [
            {"uri": NOTE["uri"], "mimeType": "text/plain", "text": "A note, read at once."}]}})
    elif method == "tools/call":
        arguments = request["params"].get("arguments") or {}
        if MODE == "surrogate":
            # json.dumps writes the lone surrogate as the escape "\ud800".
            send(result(id_, "before \ud800 after"))
        elif MODE == "legacy":
            send(result(id_, json.dumps(legacy_call(request["params"]))))
        elif MODE == "bytes":
            line = json.dumps(result(id_, "before MARK after")).encode()
            write_line(line.replace(b"MARK", b"\xff\xfe"))
        else:
            send(result(id_, json.dumps(arguments)))
    else:
        send({"jsonrpc": "2.0", "id": id_,
              "error": {"code": -32601, "message": f"method not found: {method}"}})


NOTE = {"uri": "raw://note", "name": "note", "mimeType": "text/plain"}
LISTS = {  # "slowlists": what it answers once the gate is open
    "resources/list": {"resources": [NOTE]},
    "resources/templates/list": {"resourceTemplates": []},
    "prompts/list": {"prompts": [{"name": "note", "description": "Ask about the note."}]},
}
EXTRA = []  # "legacy": the tool added during a call


def legacy_call(params: dict) -> dict:
    token = (params.get("_meta") or {}).get("progressToken")
    if token is not None:
        send({"jsonrpc": "2.0", "method": "notifications/progress",
              "params": {"progressToken": token, "progress": 1, "total": 2,
                         "message": "asking"}})
    send({"jsonrpc": "2.0", "id": "ask-1", "method": "elicitation/create", "params": {
        "mode": "form", "message": "Which shelf?", "requestedSchema": {
            "type": "object", "properties": {"shelf": {"type": "string"}},
            "required": ["shelf"]}}})
    for line in sys.stdin.buffer:  # until the client's answer to that request
        message = json.loads(line)
        if message.get("id") == "ask-1" and "method" not in message:
            break
        answer(message)
    EXTRA.append("extra")
    send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    return message.get("result") or message.get("error")


record("start")
if MODE == "gated":
    while not os.path.exists(RECORD):
        time.sleep(0.05)
for raw in sys.stdin.buffer:
    try:
        answer(json.loads(raw))
    except ValueError:
        continue
