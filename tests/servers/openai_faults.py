"""A small OpenAI-compatible server on loopback that misbehaves on purpose.

    with FaultServer("cut") as server:
        ... --model server.url ...

It runs in a thread of the test process (it imports nothing heavy and starts at once) and
answers ``GET /v1/models`` and ``POST /v1/chat/completions`` according to its mode:

unauthorized   401 with an OpenAI-style error body, for every request
unknown-model  lists only "qwen3-8b"; a chat request for anything else gets a 404
error          lists its model; every chat request gets a 500
hang           lists its model; a chat request gets nothing at all until the server stops
cut            streams the start of an answer over chunked HTTP/1.1, then drops the
               connection in the middle of a chunk
quiet-end      streams the start of an answer and ends the response cleanly, with no
               finish_reason and no [DONE]
text           answers as a server that does not parse Qwen3's markers: reasoning and
               tool calls come as <think> and <tool_call> in the text ("replies", one per
               request, the last one repeating)

Every request body is kept in ``requests`` (parsed JSON), for the test to read.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "qwen3-8b"


def _chunk(content: str | None = None, finish: str | None = None, **delta) -> bytes:
    if content is not None:
        delta["content"] = content
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


class FaultServer:
    def __init__(self, mode: str, replies: list[str] | None = None):
        self.mode, self.replies = mode, list(replies or ["Hello."])
        self.requests: list[dict] = []
        self.stopping = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.handle(self, None)

            def do_POST(self):
                size = int(self.headers.get("Content-Length") or 0)
                outer.handle(self, json.loads(self.rfile.read(size) or b"{}"))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- answers ------------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler, body: dict | None) -> None:
        if body is not None:
            self.requests.append(body)
        if self.mode == "unauthorized":
            return self.json(h, 401, {"error": {"message": "Incorrect API key provided",
                                                "type": "invalid_request_error"}})
        if body is None:
            return self.json(h, 200, {"object": "list",
                                      "data": [{"id": MODEL, "object": "model"}]})
        if self.mode == "unknown-model" and body.get("model") != MODEL:
            return self.json(h, 404, {"error": {"message": f"The model `{body.get('model')}` "
                                                           "does not exist."}})
        if self.mode == "error":
            return self.json(h, 500, {"error": {"message": "CUDA out of memory"}})
        if self.mode == "hang":
            self.stopping.wait()
            return
        self.stream(h, body)

    def json(self, h, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def stream(self, h, body: dict) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def send(data: bytes) -> None:
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        if self.mode in ("cut", "quiet-end"):
            for word in ("The ", "answer ", "is "):
                send(_chunk(word))
                time.sleep(0.02)
            if self.mode == "cut":
                h.wfile.write(b"40\r\ndata: {\"choi")  # half a chunk, then the line drops
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(2)
                return
            h.wfile.write(b"0\r\n\r\n")
            return
        reply = self.replies[0] if len(self.replies) == 1 else self.replies.pop(0)
        for at in range(0, len(reply), 7):
            send(_chunk(reply[at:at + 7]))
        send(_chunk(finish="stop"))
        usage = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                 "choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": 9,
                                          "total_tokens": 51}}
        send(f"data: {json.dumps(usage)}\n\n".encode())
        send(b"data: [DONE]\n\n")
        h.wfile.write(b"0\r\n\r\n")
