"""The SDK's stdio transport, with a server's process, output and noise kept in hand.

``stdio_client`` starts each server in a session of its own (its own process group) but
signals that group only when the server outlives its closed stdin: a server that exits on
EOF, the normal case, leaves its own children running. It does not give out the process,
so its spawn function is wrapped to hand the process to the server's owner, which signals
the whole group once the transport is closed, whatever way the server ended.

Two more seams of the same module are wrapped. A line on stdout that is not JSON-RPC is
counted for the user and written to the server's log; the SDK would log a traceback for
each to the terminal. A line that fails only because pydantic refuses the JSON escape of a
lone surrogate ("\\ud800"), which a server written in any language may send, is read
with the surrogate as U+FFFD instead of being dropped (its caller would wait out the
timeout). The SDK's own log records go to the log of the server they are about.

Which server a record or a line belongs to is a context variable: the owner task sets it
before entering the transport, and every task the SDK starts for that server inherits it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import mcp_types as types
from mcp.client import stdio as sdk_stdio
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.message import SessionMessage

from assistant.text import scrub, scrub_data

LOG_CAP_BYTES = 2_000_000  # per file; the one before is kept as NAME.1, so 4 MB a server
GROUP_GRACE_S = 2.0  # between SIGTERM and SIGKILL for what the server left behind


class ServerLog:
    """A server's log, capped: past the cap the file moves to NAME.1 and starts afresh,
    so the newest lines (a crash's traceback) are always there and a flood fills no disk."""

    def __init__(self, path: Path, cap: int = LOG_CAP_BYTES):
        self.path, self.cap = path, cap
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > cap:
            self._rotate_file()
        self._file = path.open("ab")
        self._size = self._file.tell()

    def write(self, data: bytes) -> None:
        if self._file.closed:
            return
        if self._size and self._size + len(data) > self.cap:
            self._file.close()
            self._rotate_file()
            self._file = self.path.open("ab")
            self._size = 0
            data = f"--- earlier lines are in {self.path.name}.1\n".encode() + data
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def line(self, text: str) -> None:
        self.write((scrub(text) + "\n").encode("utf-8"))

    def close(self) -> None:
        self._file.close()

    def _rotate_file(self) -> None:
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))


@dataclass
class ServerIO:
    """What the host holds of one stdio server: its process, its log and its noise."""

    log: ServerLog
    process: object | None = None  # anyio Process, once spawned
    bad_lines: int = 0  # lines on stdout that are not JSON-RPC
    _stderr: _StderrPipe | None = field(default=None, repr=False)

    def not_json_rpc(self, line: str) -> None:
        self.bad_lines += 1
        shown = line if len(line) <= 300 else f"{line[:300]}… ({len(line):,} characters)"
        self.log.line(f"[not JSON-RPC on stdout, ignored] {shown}")


_current: ContextVar[ServerIO | None] = ContextVar("assistant_mcp_server", default=None)


def about(io: ServerIO | None) -> None:
    """Mark the running task as working for this server (for the SDK's log records)."""
    _current.set(io)


@asynccontextmanager
async def stdio_transport(params: StdioServerParameters, io: ServerIO):
    """``stdio_client`` for one server: stderr into its capped log, its group ended."""
    params = params.model_copy(update={"encoding_error_handler": "replace"})
    io.log.line(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {params.command} "
                f"{' '.join(params.args)}")
    about(io)
    watch = None
    try:
        io._stderr = await _StderrPipe.open(io.log)
        async with stdio_client(params, errlog=io._stderr.child_end) as streams:
            watch = asyncio.create_task(_end_group_when_server_ends(io.process))
            yield streams
    finally:
        if watch is not None:
            watch.cancel()
        with anyio.CancelScope(shield=True):
            await _end_group(io.process)
            if io._stderr is not None:
                await io._stderr.close()
            io.log.close()


async def _end_group_when_server_ends(process) -> None:
    # A child that inherited the server's stdout keeps the pipe open after the server
    # died, and the session would wait for an end that never comes: end the group as soon
    # as the server is gone. (Polled: asyncio's wait() itself waits for the pipe's end.)
    while process is not None and process.returncode is None:
        await asyncio.sleep(0.25)
    await _end_group(process)


async def _end_group(process) -> None:
    if process is None or os.name != "posix":
        return  # never started; on Windows the SDK's job object ends the tree
    from mcp.os.posix.utilities import terminate_posix_process_tree

    await terminate_posix_process_tree(process, GROUP_GRACE_S)


class _StderrPipe(asyncio.Protocol):
    """The server's stderr, read on the host loop into its capped log."""

    def __init__(self, log: ServerLog):
        self.log = log
        self.done = asyncio.Event()
        self.child_end = None
        self._transport = None

    @classmethod
    async def open(cls, log: ServerLog) -> _StderrPipe:
        read_fd, write_fd = os.pipe()
        pipe = cls(log)
        pipe.child_end = open(write_fd, "wb", buffering=0)
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: pipe, open(read_fd, "rb", buffering=0))
        return pipe

    def spawned(self) -> None:
        # Only the server holds the write end now, so its exit (and its children's)
        # ends the pipe.
        self.child_end.close()

    def connection_made(self, transport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self.log.write(data)

    def connection_lost(self, exc) -> None:
        self.done.set()

    async def close(self) -> None:
        self.child_end.close()
        # Whatever the server wrote before it ended is still in the pipe: read it out,
        # unless something that escaped the group keeps the pipe open.
        with anyio.move_on_after(1.0):
            await self.done.wait()
        if self._transport is not None:
            self._transport.close()


# -- the SDK's seams ----------------------------------------------------------------------

_sdk_spawn = sdk_stdio._create_platform_compatible_process


async def _spawn(*args, **kwargs):
    process = await _sdk_spawn(*args, **kwargs)
    io = _current.get()
    if io is not None:
        io.process = process
        if io._stderr is not None:
            io._stderr.spawned()
    return process


def _parse_line(line: str) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        error = exc
    try:
        data = json.dumps(scrub_data(json.loads(line)), ensure_ascii=False)
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(data, by_name=False))
    except (ValueError, RecursionError):
        pass
    io = _current.get()
    if io is not None:
        io.not_json_rpc(line)
    else:
        logging.getLogger(__name__).warning("not JSON-RPC on a server's stdout: %.300s", line)
    return error


class _ToServerLog(logging.Handler):
    """The SDK's log records go to the log of the server they are about; a record about
    no server in particular is handled as it would have been."""

    def emit(self, record: logging.LogRecord) -> None:
        io = _current.get()
        if io is not None:
            io.log.line(self.format(record))
            return
        root = logging.getLogger()
        for handler in root.handlers or [logging.lastResort]:
            if handler is not None and record.levelno >= handler.level:
                handler.handle(record)


def _install() -> None:
    if getattr(sdk_stdio, "_assistant_seams", False):
        return
    sdk_stdio._create_platform_compatible_process = _spawn
    sdk_stdio._parse_line = _parse_line
    sdk_stdio._assistant_seams = True
    handler = _ToServerLog()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    sdk_logger = logging.getLogger("mcp")
    sdk_logger.addHandler(handler)
    sdk_logger.propagate = False


_install()
