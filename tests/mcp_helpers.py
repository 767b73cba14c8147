"""Server configs as a user's mcp.json would give them, for the MCP tests."""

from __future__ import annotations

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
