"""Running MCP servers and calling their tools, from synchronous code.

The host runs its own asyncio loop on a thread, so the CLI and the TUI (whose loop must
never wait on a server) use the same blocking calls. Each server has one owner task that
enters its client context, waits for the stop signal and exits that context itself: the
SDK's contexts must be left by the task that entered them (python-sdk #79). Servers start
in parallel; one that fails is reported and skipped while the others work. A server's
stderr goes to its own log file, never to the screen.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import Future
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from assistant.mcp.config import ServerConfig

STARTUP_TIMEOUT = 20.0
SHUTDOWN_TIMEOUT = 15.0
LOG_KEEP_BYTES = 5_000_000  # a log past this is started afresh at the next launch


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
        for state, event in zip(starting, ready):
            state.stop = asyncio.Event()
            self._owners.append(asyncio.create_task(self._own(state, event),
                                                    name=f"mcp:{state.config.name}"))
        await asyncio.gather(*(event.wait() for event in ready))

    async def _own(self, state: ServerState, ready: asyncio.Event) -> None:
        config = state.config
        started = time.perf_counter()
        # A server's own (shorter) timeout bounds its handshake too.
        startup_timeout = min(self.startup_timeout, config.timeout)
        try:
            async with AsyncExitStack() as stack:
                async with asyncio.timeout(startup_timeout):
                    client = await stack.enter_async_context(
                        Client(self._transport(state, stack), read_timeout_seconds=config.timeout,
                               client_info=types.Implementation(name="assistant", version="0.1")))
                    state.tools = await self._list_tools(client, config.name)
                state.client, state.status = client, "ready"
                state.startup_s = time.perf_counter() - started
                ready.set()
                await state.stop.wait()
                state.client = None
        except Exception as exc:  # any way a server can fail to start or die
            state.client = None
            if state.status != "stopped":
                state.status = "failed"
                state.error = state.error or _describe_start_failure(exc, config,
                                                                     startup_timeout)
        finally:
            ready.set()

    def _transport(self, state: ServerState, stack: AsyncExitStack):
        config = state.config
        if config.url:
            http = create_mcp_http_client(headers=config.headers or None)
            stack.push_async_callback(http.aclose)
            return streamable_http_client(config.url, http_client=http)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        state.log_file = self.log_dir / f"mcp-{config.name}.log"
        if state.log_file.exists() and state.log_file.stat().st_size > LOG_KEEP_BYTES:
            state.log_file.unlink()
        log = stack.enter_context(state.log_file.open("a", encoding="utf-8"))
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {config.command} "
                  f"{' '.join(config.args)}\n")
        log.flush()
        params = StdioServerParameters(command=config.command, args=list(config.args),
                                       env=config.env or None, cwd=config.cwd)
        return stdio_client(params, errlog=log)

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
        timeout = timeout or state.config.timeout
        try:
            result = await state.client.call_tool(tool, arguments, read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.error.code == REQUEST_TIMEOUT:
                return failed(f"{server}/{tool} did not answer within {timeout:g} s; the call "
                              "was cancelled")
            if exc.error.code == CONNECTION_CLOSED:
                return failed(self._lost(state))
            return failed(f"{server}/{tool} failed: {exc.error.message}")
        except asyncio.CancelledError:
            raise  # the SDK has sent notifications/cancelled
        except Exception as exc:
            if state.client is None or _is_disconnect(exc):
                return failed(self._lost(state))
            return failed(f"{server}/{tool} failed: {_first_line(exc)}")
        text = result_text(result)
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


