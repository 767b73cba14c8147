"""Our own servers (``tools/``) in this process: no second interpreter, still MCP servers.

Started as configured, each built-in server would be a Python interpreter spending
seconds importing the SDK, on the cores that are loading the model. In process, the
SDK's ``Client`` talks to the same ``MCPServer`` object through its in-memory path: the
same requests, handlers, input schemas and errors as over stdio. Only the configuration
``builtin_servers`` writes runs here; a built-in server the user gave an environment,
a working directory or other arguments runs as its own process, as configured.
"""

from __future__ import annotations

import importlib
import logging
import sys

from assistant.mcp.config import BUILTIN, ServerConfig


def runs_in_process(config: ServerConfig) -> bool:
    return _arguments(config) is not None


def server_for(config: ServerConfig):
    """The ``MCPServer`` for a built-in configuration, or None to start it as a process.

    Raises ``OSError`` when the notes folder cannot be used, as the server's own
    command line would report it.
    """
    rest = _arguments(config)
    if rest is None:
        return None
    module = importlib.import_module(f"assistant.tools.{config.name}")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        # MCPServer() configures the root logger for a server process of its own (a
        # handler on stderr, level INFO); here that would paint over the chat app.
        if config.name == "notes":
            return module.build_server(module.notes_root(rest[1]))
        return module.build_server()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _arguments(config: ServerConfig) -> tuple[str, ...] | None:
    """The arguments after ``-m assistant.tools.NAME`` if this is a built-in server as
    ``builtin_servers`` configures it, else None."""
    module_args = ("-m", f"assistant.tools.{config.name}")
    if not (config.builtin and config.name in BUILTIN and config.command == sys.executable
            and config.args[:2] == module_args and not config.env and config.cwd is None
            and config.url is None):
        return None
    rest = config.args[2:]
    if config.name == "notes":
        return rest if len(rest) == 2 and rest[0] == "--root" else None
    return rest if not rest else None
