"""Running MCP servers and calling their tools, from synchronous code.

The host runs its own asyncio loop on a thread, so the CLI and the TUI (whose loop must
never wait on a server) use the same blocking calls. Each server has one owner task that
enters its client context, waits for the stop signal and exits that context itself: the
SDK's contexts must be left by the task that entered them (python-sdk #79). Servers start
in parallel, a few at a time; one that fails is reported and skipped while the others work.
A server's stderr goes to its own log file, never to the screen (see ``stdio``). Text
crosses this boundary only as valid Unicode: arguments going out and results coming in are
scrubbed, since one lone surrogate makes the SDK's writer drop the whole connection.

Start-up costs the user nothing it need not. The SDK is imported on the host's thread
(``session``) and only once a server starts; our own servers run in this process
(``inprocess``); a server whose tool list is known from an earlier run (``toolcache``) is
offered with that list at once: only a server never seen before is waited for before the
first prompt. With ``lazy`` (one-shot commands) such a server is not even started until a
tool of it is called, unless its list is older than ``LAZY_MAX_AGE_S``: importing the SDK
holds the GIL for most of a second that the model's loading needs. A call to a server not
up yet waits for its start, which has the start-up limit. When a server answers, its
fresh list replaces the cached one, and ``revision`` moves if the tools changed.

While it runs, a server may say its tools changed (``notifications/tools/list_changed``):
the host lists them again and, if they differ, replaces the list (and the cached one) and
moves ``revision``; a front end offers the new set from its next turn, never mid-turn.
During a call a server may report progress (``start_call(on_progress=...)``) and ask the
user questions, which go to ``elicit`` (set by the front end; declined without one).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import Future
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from assistant.mcp.config import ServerConfig
from assistant.mcp.elicit import Elicitor
from assistant.mcp.toolcache import ToolListCache
from assistant.mcp.toolinfo import (CallResult, PromptInfo, PromptMessage, RequestFailed,
                                    ResourceContent, ResourceInfo, ToolInfo)

__all__ = ["CallResult", "McpHost", "RequestFailed", "ServerState", "ToolInfo"]

# A handshake has its own limit, never a server's call timeout: a Python server spends
# 2-4 s importing the SDK on a loaded 2-core machine, an npx server may first download.
STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 15.0
# Starting a server is mostly CPU (an interpreter importing its SDK): more starts at once
# than cores only stretch every handshake (33 at once all missed a 20 s limit), so each
# core takes one at a time; the handshake clock runs from when a server gets its turn.
START_AT_ONCE = max(2, os.cpu_count() or 2)
# A cached list older than this is checked at start-up even by a one-shot command.
LAZY_MAX_AGE_S = 24 * 3600.0


@dataclass
class ServerState:
    config: ServerConfig
    # idle (tools known from an earlier run, not started until called) | starting |
    # ready | failed | disabled | stopped
    status: str = "starting"
    error: str | None = None
    tools: list[ToolInfo] = field(default_factory=list)
    cached: bool = False  # ``tools`` is the list from an earlier run, not yet confirmed
    in_process: bool = False  # one of ours, run in this process
    startup_s: float | None = None
    log_file: Path | None = None
    client: object | None = field(default=None, repr=False)  # mcp.Client, once ready
    stop: asyncio.Event | None = field(default=None, repr=False)
    io: object | None = field(default=None, repr=False)  # stdio.ServerIO
    auth: object | None = field(default=None, repr=False)  # oauth.Provider, remote only
    # Set once the start is over, whatever its outcome: one for threads, one for the loop.
    settled: threading.Event = field(default_factory=threading.Event, repr=False)
    started: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    relist: asyncio.Task | None = field(default=None, repr=False)  # after a list_changed
    relist_again: bool = field(default=False, repr=False)  # another came meanwhile

    @property
    def bad_lines(self) -> int:
        """Lines the server wrote on stdout that are not JSON-RPC (they are in its log)."""
        return self.io.bad_lines if self.io else 0


class McpHost:
    def __init__(self, servers: list[ServerConfig], *, log_dir: Path,
                 startup_timeout: float = STARTUP_TIMEOUT,
                 tool_cache: ToolListCache | None = None):
        self.log_dir = log_dir
        self.startup_timeout = startup_timeout
        self.cache = tool_cache
        self.servers: dict[str, ServerState] = {
            s.name: ServerState(s, status="disabled" if s.disabled else "starting")
            for s in servers}
        self._ages: dict[str, float] = {}  # seconds since each cached list was written
        for state in self.servers.values():
            cached = tool_cache.get(state.config) if tool_cache and state.status == "starting" \
                else None
            if cached is not None:
                state.tools, state.cached = cached, True
                self._ages[state.config.name] = tool_cache.age_s(state.config)
            if state.status != "starting":
                self._settle(state)
        self.revision = 0  # moves whenever the tools on offer change
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-host",
                                        daemon=True)
        self._owners: dict[str, asyncio.Task] = {}
        self._starting: asyncio.Semaphore | None = None
        self._session = None  # the module that speaks to the SDK, once imported
        self._closed = False
        # The front end's way to put a server's question to the user (on a worker thread).
        self.elicit: Elicitor | None = None

    # -- synchronous API --------------------------------------------------------------

    def start(self, wait: bool = True, lazy: bool = False) -> None:
        """Start every enabled server in parallel. With ``wait``, return when each is
        ready or failed; without, at once (see ``wait_for_tools``). With ``lazy``, a
        server whose tool list is cached (and recent) starts when a tool of it is called."""
        if lazy and not wait:
            for state in self.servers.values():
                if state.cached and self._ages.get(state.config.name, 1e99) < LAZY_MAX_AGE_S:
                    state.status = "idle"
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start_all(), self._loop)
        if wait:
            future.result()
            self.wait_all()

    def tools(self) -> list[ToolInfo]:
        """The tools to offer: those of ready servers, and the cached lists of servers
        not up yet."""
        return [t for s in list(self.servers.values())
                if s.status == "ready" or (s.status in ("idle", "starting") and s.cached)
                for t in s.tools]

    def wait_for_tools(self, timeout: float | None = None) -> bool:
        """Wait until every server that has no cached list has started or failed, so
        ``tools()`` is complete; False if ``timeout`` ran out first."""
        return self._wait([s for s in self.servers.values() if not s.cached], timeout)

    def wait_all(self, timeout: float | None = None) -> bool:
        """Wait until every server has started or failed (idle ones aside)."""
        return self._wait([s for s in self.servers.values() if s.status != "idle"], timeout)

    def _wait(self, states: list[ServerState], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for state in states:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not state.settled.wait(left):
                return False
        return True

    def call(self, server: str, tool: str, arguments: dict, timeout: float | None = None,
             on_progress=None) -> CallResult:
        return self.start_call(server, tool, arguments, timeout, on_progress).result()

    def start_call(self, server: str, tool: str, arguments: dict,
                   timeout: float | None = None, on_progress=None) -> Future:
        """Begin a call; the future's ``cancel()`` sends the protocol's cancellation.
        ``on_progress(Progress)`` is called on the host's thread for each progress
        notification the server sends about this call."""
        return asyncio.run_coroutine_threadsafe(
            self._call(server, tool, arguments, timeout, on_progress), self._loop)

    # Resources and prompts: each raises ``RequestFailed`` with a line for the user.

    def resources(self, server: str) -> list[ResourceInfo]:
        """The server's resources, then its resource templates."""
        return self._run(self._ask(server, "list_resources"))

    def read_resource(self, server: str, uri: str) -> list[ResourceContent]:
        return self._run(self._ask(server, "read_resource", uri))

    def prompts(self, server: str) -> list[PromptInfo]:
        return self._run(self._ask(server, "list_prompts"))

    def get_prompt(self, server: str, name: str, arguments: dict[str, str]
                   ) -> list[PromptMessage]:
        return self._run(self._ask(server, "get_prompt", name, arguments))

    def complete(self, server: str, prompt: str, argument: str, value: str = "",
                 known: dict[str, str] | None = None) -> list[str]:
        """Values the server suggests for a prompt's argument (none if it offers none)."""
        return self._run(self._ask(server, "complete", prompt, argument, value, known or {}))

    def close(self) -> None:
        """Stop every server (stdin closed, then SIGTERM, then SIGKILL) and the loop.
        A server still in its handshake is abandoned at once."""
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
        for state in [s for s in self.servers.values() if s.status == "starting"]:
            self._begin(state)

    def _begin(self, state: ServerState) -> None:
        """Start one server's owner task (on the loop; the first imports the SDK)."""
        if self._closed or state.config.name in self._owners:
            return
        if self._session is None:
            from assistant.mcp import session  # the SDK: most of a second, on this thread

            self._session = session
            self._starting = asyncio.Semaphore(START_AT_ONCE)
        state.status = "starting"
        state.stop = asyncio.Event()
        self._owners[state.config.name] = asyncio.create_task(
            self._own(state), name=f"mcp:{state.config.name}")

    async def _own(self, state: ServerState) -> None:
        config, session = state.config, self._session
        try:
            async with AsyncExitStack() as stack:
                async with self._starting:
                    started = time.perf_counter()
                    async with asyncio.timeout(self.startup_timeout):
                        client = await session.connect(state, stack, self.log_dir,
                                                       self.startup_timeout, host=self)
                        fresh = await session.list_tools(client, config.name)
                    state.startup_s = time.perf_counter() - started
                self._confirm(state, fresh)
                state.client, state.status = client, "ready"
                self._settle(state)
                # Ours never change their tools: no stream to keep open for them.
                follow = None if state.in_process else asyncio.create_task(
                    session.follow_tool_changes(state), name=f"mcp-follow:{config.name}")
                try:
                    await state.stop.wait()
                finally:
                    for task in (follow, state.relist):
                        if task is not None and not task.done():
                            task.cancel()
                            await asyncio.gather(task, return_exceptions=True)
                state.client = None
        except Exception as exc:  # any way a server can fail to start or die
            state.client = None
            if state.status != "stopped":
                if state.status == "starting" and state.cached:
                    self._forget(state)
                state.status = "failed"
                state.error = state.error or session.describe_start_failure(
                    exc, config, self.startup_timeout)
        finally:
            self._settle(state)

    def _confirm(self, state: ServerState, fresh: list[ToolInfo]) -> None:
        """The server has answered: its list replaces the cached one."""
        if state.cached and fresh != state.tools:
            self.revision += 1
        if self.cache is not None:
            self.cache.put(state.config, fresh)  # written even if the same: it is recent
        state.tools, state.cached = fresh, False

    def tools_changed(self, state: ServerState) -> None:
        """The server said its tools changed (on the loop): list them again, once at a
        time; a notice that comes during a re-list makes one more."""
        state.relist_again = True
        if state.relist is None or state.relist.done():
            state.relist = asyncio.get_running_loop().create_task(self._relist(state))

    async def _relist(self, state: ServerState) -> None:
        while state.relist_again and state.status == "ready" and state.client is not None:
            state.relist_again = False
            try:
                async with asyncio.timeout(state.config.timeout):
                    fresh = await self._session.list_tools(state.client, state.config.name,
                                                           refresh=True)
            except Exception as exc:  # the old list stays on offer; say why in its log
                if state.io is not None:
                    state.io.log.line("--- could not list the changed tools: "
                                      f"{self._session.first_line(exc)}")
                return
            if fresh != state.tools:
                state.tools = fresh  # one assignment: readers see the old or the new list
                self.revision += 1
                if self.cache is not None:
                    self.cache.put(state.config, fresh)

    def _forget(self, state: ServerState) -> None:
        """A server offered from the cache did not start: its tools leave the offer."""
        self.revision += 1
        if self.cache is not None:
            self.cache.drop(state.config)

    @staticmethod
    def _settle(state: ServerState) -> None:
        state.started.set()
        state.settled.set()

    async def _call(self, server: str, tool: str, arguments: dict,
                    timeout: float | None, on_progress=None) -> CallResult:
        state = self.servers.get(server)
        started = time.perf_counter()

        def failed(message: str) -> CallResult:
            return CallResult("", message, time.perf_counter() - started)

        if state is not None and state.status == "idle":
            self._begin(state)  # its tools were offered from the cache: start it now
        if state is not None and state.status == "starting":
            await state.started.wait()  # bounded by the start-up limit
        if state is None or state.status != "ready" or state.client is None:
            why = f" ({state.error})" if state and state.error else ""
            status = state.status if state else "unknown"
            return failed(f"server {server!r} is not running: {status}{why}")
        try:
            text, error = await self._session.call_tool(state, tool, arguments,
                                                        timeout or state.config.timeout,
                                                        on_progress)
        except self._session.Lost:
            return failed(self._lost(state))
        return CallResult(text, error, time.perf_counter() - started)

    async def _ask(self, server: str, request: str, *args):
        """A resource or prompt request to a server, started first if it is idle."""
        state = self.servers.get(server)
        if state is None:
            raise RequestFailed(f"no MCP server named {server!r}")
        if state.status == "idle":
            self._begin(state)
        if state.status == "starting":
            await state.started.wait()
        if state.status != "ready" or state.client is None:
            why = f" ({state.error})" if state.error else ""
            raise RequestFailed(f"MCP server {server!r} is not running: {state.status}{why}")
        try:
            return await getattr(self._session, request)(state, *args, state.config.timeout)
        except self._session.Lost:
            raise RequestFailed(self._lost(state)) from None

    def _lost(self, state: ServerState) -> str:
        state.status = "failed"
        state.error = "the server exited or closed its connection"
        where = f"; its log is {state.log_file}" if state.log_file else ""
        return f"server {state.config.name!r} stopped responding{where}"

    async def _stop_all(self) -> None:
        for state in self.servers.values():
            if state.status in ("idle", "starting"):  # in its handshake, or never begun
                state.status = "stopped"
                owner = self._owners.get(state.config.name)
                if owner is not None:
                    owner.cancel()
                else:
                    self._settle(state)
            elif state.stop is not None:
                if state.status == "ready":
                    state.status = "stopped"
                state.stop.set()
        owners = list(self._owners.values())
        if owners:
            _, stuck = await asyncio.wait(owners, timeout=SHUTDOWN_TIMEOUT)
            for task in stuck:  # e.g. an HTTP server that never answers the session DELETE
                task.cancel()
            if stuck:
                await asyncio.wait(stuck, timeout=3)

