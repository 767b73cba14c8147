"""Running MCP servers and calling their tools, from synchronous code.

The host runs its own asyncio loop on a thread, so the CLI and the TUI (whose loop must
never wait on a server) use the same blocking calls. Each server has one owner task that
enters its client context, waits for the stop signal and exits that context itself: the
SDK's contexts must be left by the task that entered them (python-sdk #79). Servers start
in parallel, a few at a time; one that fails is reported and skipped while the others work.
A server's stderr goes to its own log file, never to the screen (see ``stdio``). Text
crosses this boundary only as valid Unicode: arguments going out and results coming in are
scrubbed, since one lone surrogate makes the SDK's writer drop the whole connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from concurrent.futures import Future
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from assistant.mcp.config import ServerConfig
from assistant.mcp.stdio import ServerIO, ServerLog, about, stdio_transport
from assistant.text import scrub, scrub_data

# A handshake has its own limit, never a server's call timeout: a Python server spends
# 2-4 s importing the SDK on a loaded 2-core machine, an npx server may first download.
STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 15.0
# Starting a server is mostly CPU (an interpreter importing its SDK): more starts at once
# than cores only stretch every handshake (33 at once all missed a 20 s limit), so each
# core takes one at a time; the handshake clock runs from when a server gets its turn.
START_AT_ONCE = max(2, os.cpu_count() or 2)


@dataclass(frozen=True)
class ToolInfo:
    server: str
    name: str  # the server's own name for the tool
    description: str
    input_schema: dict
    read_only: bool | None  # the server's annotations: claims, not facts
    destructive: bool | None


@dataclass
class ServerState:
    config: ServerConfig
    status: str = "starting"  # starting | ready | failed | disabled | stopped
    error: str | None = None
    tools: list[ToolInfo] = field(default_factory=list)
    startup_s: float | None = None
    log_file: Path | None = None
    client: Client | None = field(default=None, repr=False)
    stop: asyncio.Event | None = field(default=None, repr=False)
    io: ServerIO | None = field(default=None, repr=False)

    @property
    def bad_lines(self) -> int:
        """Lines the server wrote on stdout that are not JSON-RPC (they are in its log)."""
        return self.io.bad_lines if self.io else 0


@dataclass(frozen=True)
class CallResult:
    text: str  # everything the server returned, as text
    error: str | None  # set when the call failed or the tool reported an error
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.error is None


class McpHost:
    def __init__(self, servers: list[ServerConfig], *, log_dir: Path,
                 startup_timeout: float = STARTUP_TIMEOUT):
        self.log_dir = log_dir
        self.startup_timeout = startup_timeout
        self.servers: dict[str, ServerState] = {
            s.name: ServerState(s, status="disabled" if s.disabled else "starting")
            for s in servers}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-host",
                                         daemon=True)
        self._owners: list[asyncio.Task] = []
        self._starting: asyncio.Semaphore | None = None
        self._closed = False

    # -- synchronous API --------------------------------------------------------------

    def start(self) -> None:
        """Start every enabled server in parallel; return when each is ready or failed."""
        self._thread.start()
        self._run(self._start_all())

    def tools(self) -> list[ToolInfo]:
        return [t for s in self.servers.values() if s.status == "ready" for t in s.tools]

    def call(self, server: str, tool: str, arguments: dict, timeout: float | None = None
             ) -> CallResult:
        return self.start_call(server, tool, arguments, timeout).result()

    def start_call(self, server: str, tool: str, arguments: dict,
                   timeout: float | None = None) -> Future:
        """Begin a call; the future's ``cancel()`` sends the protocol's cancellation."""
        return asyncio.run_coroutine_threadsafe(self._call(server, tool, arguments, timeout),
                                                self._loop)

    def close(self) -> None:
        """Stop every server (stdin closed, then SIGTERM, then SIGKILL) and the loop."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            try:
                self._run(self._stop_all(), timeout=SHUTDOWN_TIMEOUT + 5)
            except TimeoutError:
                pass  # _stop_all gave up on a server first; the loop is stopped below
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> McpHost:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- on the host loop ---------------------------------------------------------------

    async def _start_all(self) -> None:
        starting = [s for s in self.servers.values() if s.status == "starting"]
        ready = [asyncio.Event() for _ in starting]
        self._starting = asyncio.Semaphore(START_AT_ONCE)
        for state, event in zip(starting, ready):
            state.stop = asyncio.Event()
            self._owners.append(asyncio.create_task(self._own(state, event),
                                                    name=f"mcp:{state.config.name}"))
        await asyncio.gather(*(event.wait() for event in ready))

    async def _own(self, state: ServerState, ready: asyncio.Event) -> None:
        config = state.config
        try:
            async with AsyncExitStack() as stack:
                async with self._starting:
                    started = time.perf_counter()
                    async with asyncio.timeout(self.startup_timeout):
                        client = await stack.enter_async_context(Client(
                            # Requests of the handshake get the start-up limit; each
                            # call passes the server's own timeout.
                            self._transport(state, stack),
                            read_timeout_seconds=self.startup_timeout,
                            client_info=types.Implementation(name="assistant", version="0.1")))
                        state.tools = await self._list_tools(client, config.name)
                    state.startup_s = time.perf_counter() - started
                state.client, state.status = client, "ready"
                ready.set()
                await state.stop.wait()
                state.client = None
        except Exception as exc:  # any way a server can fail to start or die
            state.client = None
            if state.status != "stopped":
                state.status = "failed"
                state.error = state.error or _describe_start_failure(
                    exc, config, self.startup_timeout)
        finally:
            ready.set()

    def _transport(self, state: ServerState, stack: AsyncExitStack):
        config = state.config
        if config.url:
            http = create_mcp_http_client(headers=config.headers or None)
            stack.push_async_callback(http.aclose)
            return streamable_http_client(config.url, http_client=http)
        state.log_file = self.log_dir / f"mcp-{config.name}.log"
        state.io = ServerIO(ServerLog(state.log_file))
        params = StdioServerParameters(command=config.command, args=list(config.args),
                                       env=config.env or None, cwd=config.cwd)
        return stdio_transport(params, state.io)

    @staticmethod
    async def _list_tools(client: Client, server: str) -> list[ToolInfo]:
        tools, cursor = [], None
        for _ in range(100):  # a server that pages forever cannot hang start-up
            page = await client.list_tools(cursor=cursor)
            for tool in page.tools:
                notes = tool.annotations
                tools.append(ToolInfo(
                    server=server, name=tool.name, description=tool.description or "",
                    input_schema=tool.input_schema or {"type": "object"},
                    read_only=notes.read_only_hint if notes else None,
                    destructive=notes.destructive_hint if notes else None))
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def _call(self, server: str, tool: str, arguments: dict,
                    timeout: float | None) -> CallResult:
        state = self.servers.get(server)
        started = time.perf_counter()

        def failed(message: str) -> CallResult:
            return CallResult("", message, time.perf_counter() - started)

        if state is None or state.status != "ready" or state.client is None:
            why = f" ({state.error})" if state and state.error else ""
            status = state.status if state else "unknown"
            return failed(f"server {server!r} is not running: {status}{why}")
        about(state.io)
        timeout = timeout or state.config.timeout
        try:
            result = await state.client.call_tool(tool, scrub_data(arguments),
                                                  read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.error.code == REQUEST_TIMEOUT:
                return failed(f"{server}/{tool} did not answer within {timeout:g} s; the call "
                              "was cancelled")
            if exc.error.code == CONNECTION_CLOSED:
                return failed(self._lost(state))
            return failed(f"{server}/{tool} failed: {scrub(exc.error.message)}")
        except asyncio.CancelledError:
            raise  # the SDK has sent notifications/cancelled
        except Exception as exc:
            if state.client is None or _is_disconnect(exc):
                return failed(self._lost(state))
            return failed(f"{server}/{tool} failed: {scrub(_first_line(exc))}")
        text = scrub(result_text(result))
        if result.is_error:
            return CallResult(text, text or f"{server}/{tool} reported an error",
                              time.perf_counter() - started)
        return CallResult(text, None, time.perf_counter() - started)

    def _lost(self, state: ServerState) -> str:
        state.status = "failed"
        state.error = "the server exited or closed its connection"
        where = f"; its log is {state.log_file}" if state.log_file else ""
        return f"server {state.config.name!r} stopped responding{where}"

    async def _stop_all(self) -> None:
        for state in self.servers.values():
            if state.stop is not None:
                if state.status == "ready":
                    state.status = "stopped"
                state.stop.set()
        if self._owners:
            _, stuck = await asyncio.wait(self._owners, timeout=SHUTDOWN_TIMEOUT)
            for task in stuck:  # e.g. an HTTP server that never answers the session DELETE
                task.cancel()
            if stuck:
                await asyncio.wait(stuck, timeout=3)


def result_text(result: types.CallToolResult) -> str:
    """A tool result as text: text blocks as they are, anything else described."""
    parts = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent):
            parts.append(f"[image, {block.mime_type}]")
        elif isinstance(block, types.AudioContent):
            parts.append(f"[audio, {block.mime_type}]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            parts.append(getattr(resource, "text", None) or f"[resource {resource.uri}]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[link {block.uri}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def _describe_start_failure(exc: BaseException, config: ServerConfig, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"did not finish the handshake within {timeout:g} s"
    if isinstance(exc, FileNotFoundError) or (isinstance(exc, OSError) and exc.errno == 2):
        if config.cwd and not Path(config.cwd).is_dir():
            return f"working directory not found: {config.cwd}"
        return f"command not found: {config.command}"
    if isinstance(exc, BaseExceptionGroup):
        return _describe_start_failure(exc.exceptions[0], config, timeout)
    if _is_disconnect(exc):
        return "the server exited during the handshake"
    return _first_line(exc)


def _is_disconnect(exc: BaseException) -> bool:
    import anyio

    if isinstance(exc, MCPError):
        return exc.error.code == CONNECTION_CLOSED
    return isinstance(exc, (anyio.ClosedResourceError, anyio.BrokenResourceError,
                            anyio.EndOfStream, BrokenPipeError, ConnectionError))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


