"""A Hugging Face Hub on a loopback port that serves one folder as a model repo, for
testing a real download with ``HF_ENDPOINT`` pointing at it.

It answers what ``huggingface_hub.snapshot_download`` asks: the repo's revision
(``/api/models/REPO/revision/REV``), its file tree (``/api/models/REPO/tree/REV``), and
each file's metadata (HEAD) and bytes (GET) at ``/REPO/resolve/SHA/FILE``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

SHA = "1" * 40


class FakeHub:
    """``with FakeHub(folder, "someone/model") as hub:`` then ``HF_ENDPOINT=hub.url``."""

    def __init__(self, folder: Path, repo: str, *, hold: threading.Event | None = None):
        """``hold``: each file's second half waits until the event is set, so a test can
        see a download part way."""
        self.folder, self.repo, self.hold = folder, repo, hold
        self.files = {p.name: p for p in sorted(folder.iterdir()) if p.is_file()}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: the test reads hub.requests
                pass

            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files.values())

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlparse(handler.path).path)
        self.requests.append(f"{handler.command} {path}")
        api = f"/api/models/{self.repo}/"
        resolve = f"/{self.repo}/resolve/{SHA}/"
        if path.startswith(api + "revision/"):
            self._json(handler, {"id": self.repo, "sha": SHA,
                                 "siblings": [{"rfilename": n} for n in self.files]}, body)
        elif path.startswith(api + "tree/"):
            self._json(handler, [{"type": "file", "path": n, "size": p.stat().st_size,
                                  "oid": _etag(p)} for n, p in self.files.items()], body)
        elif path.startswith(resolve) and path[len(resolve):] in self.files:
            file = self.files[path[len(resolve):]]
            handler.send_response(200)
            handler.send_header("Content-Length", str(file.stat().st_size))
            handler.send_header("ETag", f'"{_etag(file)}"')
            handler.send_header("X-Repo-Commit", SHA)
            handler.end_headers()
            if body:
                data = file.read_bytes()
                half = len(data) // 2
                handler.wfile.write(data[:half])
                handler.wfile.flush()
                if self.hold is not None:
                    self.hold.wait(60)
                handler.wfile.write(data[half:])
        else:
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.send_header("X-Error-Code", "EntryNotFound")
            handler.end_headers()

    @staticmethod
    def _json(handler: BaseHTTPRequestHandler, value, body: bool) -> None:
        data = json.dumps(value).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)


def _etag(file: Path) -> str:
    return hashlib.sha1(f"{file.name}:{file.stat().st_size}".encode()).hexdigest()
