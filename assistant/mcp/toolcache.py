"""Each server's tool list as it last answered, kept between runs.

A server written in Python needs seconds to start on a busy machine; the first prompt
of a run need not wait for it when the same server, configured the same way, has
answered before. The list is kept per configuration: a hash of everything that decides
which program runs and how (command, args, env, cwd, url, headers), and of this app's
version, whose built-in servers may change with it. Only the hash names the file:
environment values and headers, which may hold secrets, are never written. The host
checks the list when the server answers and keeps the fresh one.

A damaged, foreign or oversized file counts as no list at all: that server is waited
for, as if there were no cache. (The SDK's response cache, ``mcp.client.caching``,
serves a connected session within a server's freshness hint; it cannot stand in for a
server that is not up yet.)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import suppress
from dataclasses import asdict
from pathlib import Path

from assistant import __version__
from assistant.mcp.config import ServerConfig
from assistant.mcp.toolinfo import ToolInfo

MAX_FILE_BYTES = 4_000_000  # a tool list this large is not one we wrote
FORMAT = 1


def config_key(config: ServerConfig) -> str:
    """A name for the configuration that runs this server: equal configs, equal keys."""
    identity = {"format": FORMAT, "app": __version__, "name": config.name,
                "command": config.command, "args": list(config.args),
                "env": dict(sorted(config.env.items())), "cwd": config.cwd,
                "url": config.url, "headers": dict(sorted(config.headers.items()))}
    text = json.dumps(identity, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class ToolListCache:
    def __init__(self, directory: Path):
        self.directory = directory

    def path(self, config: ServerConfig) -> Path:
        return self.directory / f"{config_key(config)}.json"

    def get(self, config: ServerConfig) -> list[ToolInfo] | None:
        """The list this configuration answered with last time, or None."""
        found = self.read(self.path(config))
        return found[1] if found is not None and found[0] == config.name else None

    def lists(self) -> dict[str, list[ToolInfo]]:
        """Every kept list by server name; of two for one server, the newer."""
        try:
            files = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
        except OSError:
            return {}
        return dict(found for found in map(self.read, files) if found is not None)

    @staticmethod
    def read(path: Path) -> tuple[str, list[ToolInfo]] | None:
        """One kept list: its server's name and tools, or None if absent or damaged."""
        try:
            with path.open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                return None
            stored = json.loads(data.decode("utf-8"))
        except (OSError, ValueError, RecursionError):  # absent, unreadable, not JSON
            return None
        if not isinstance(stored, dict) or stored.get("format") != FORMAT:
            return None
        server, entries = stored.get("server"), stored.get("tools")
        if not isinstance(server, str) or not isinstance(entries, list):
            return None
        tools = [_tool(server, entry) for entry in entries]
        return None if any(t is None for t in tools) else (server, tools)

    def age_s(self, config: ServerConfig) -> float:
        """Seconds since the list was written (infinite when there is none)."""
        try:
            return max(0.0, time.time() - self.path(config).stat().st_mtime)
        except OSError:
            return float("inf")

    def put(self, config: ServerConfig, tools: list[ToolInfo]) -> None:
        """Keep ``tools`` for the next run; a cache that cannot be written is no error."""
        path = self.path(config)
        entries = [{k: v for k, v in asdict(t).items() if k != "server"} for t in tools]
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            text = json.dumps({"format": FORMAT, "server": config.name, "tools": entries},
                              ensure_ascii=False)
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text, encoding="utf-8", errors="replace")
            tmp.replace(path)  # readers see the old list or the new one, never half
        except (OSError, ValueError, RecursionError):
            with suppress(OSError):
                tmp.unlink(missing_ok=True)

    def drop(self, config: ServerConfig) -> None:
        """Forget the list: the server did not start, so its tools are not offered
        again before it answers."""
        with suppress(OSError):
            self.path(config).unlink(missing_ok=True)


def _tool(server: str, entry: object) -> ToolInfo | None:
    if not isinstance(entry, dict):
        return None
    name, description = entry.get("name"), entry.get("description")
    schema = entry.get("input_schema")
    read_only, destructive = entry.get("read_only"), entry.get("destructive")
    if not (isinstance(name, str) and name and isinstance(description, str)
            and isinstance(schema, dict)
            and all(v is None or isinstance(v, bool) for v in (read_only, destructive))):
        return None
    return ToolInfo(server=server, name=name, description=description, input_schema=schema,
                    read_only=read_only, destructive=destructive)
