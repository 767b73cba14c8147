"""Server configs as a user's mcp.json would give them, for the MCP tests."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from assistant.mcp.config import ServerConfig, builtin_servers

SERVERS = Path(__file__).parent / "servers"


def misbehaving(mode: str, name: str | None = None, timeout: float = 30.0) -> ServerConfig:
    return ServerConfig(name or mode, command=sys.executable,
                        args=(str(SERVERS / "misbehaving.py"), mode), timeout=timeout)


def ours(notes_root: Path) -> list[ServerConfig]:
    return list(builtin_servers(notes_root).values())


def time_server() -> ServerConfig:
    """mcp-server-time from PyPI: a server nobody here wrote."""
    command = shutil.which("mcp-server-time") or str(Path(sys.executable).with_name("mcp-server-time"))
    return ServerConfig("time", command=command, args=("--local-timezone", "UTC"))


def raw(mode: str, name: str | None = None, *extra: str, timeout: float = 30.0) -> ServerConfig:
    """A server written without the SDK (tests/servers/raw.py): it starts in a blink."""
    return ServerConfig(name or mode, command=sys.executable,
                        args=(str(SERVERS / "raw.py"), mode, *extra), timeout=timeout)


def with_child(server: ServerConfig, pid_file: Path) -> ServerConfig:
    """The server started by a shell that first starts a child of its own (its pid in
    ``pid_file``), as many launch scripts do."""
    command = " ".join(shlex.quote(a) for a in (server.command, *server.args))
    script = f"sleep 999 & echo $! > {shlex.quote(str(pid_file))}; exec {command}"
    return ServerConfig(server.name, command="sh", args=("-c", script), timeout=server.timeout)


def features(name: str = "features", timeout: float = 30.0) -> ServerConfig:
    """tests/servers/features.py: progress, structured results, images, links, questions
    to the user and a tool list that changes."""
    return ServerConfig(name, command=sys.executable, args=(str(SERVERS / "features.py"),),
                        timeout=timeout)


def library(name: str = "library") -> ServerConfig:
    """tests/servers/library.py: resources (text, binary, too big), a template, prompts."""
    return ServerConfig(name, command=sys.executable, args=(str(SERVERS / "library.py"),))
