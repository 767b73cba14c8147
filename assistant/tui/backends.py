"""The model and the MCP servers, started in thread workers after the first frame (mlx
and mcp are imported there), with a sign of life in the status bar while they come up;
and their shutdown."""

from __future__ import annotations

import time
from functools import partial

from textual import work

from assistant.tui.screens import ModelProblem


class Backends:
    """A mixin of ``ChatApp``: loads the engine, starts the servers, closes both."""

    def _start_backends(self) -> None:
        self._load_engine(self.model_ref)
        if self.servers:
            self._start_servers()

    @work(thread=True, exit_on_error=False, group="engine")
    def _load_engine(self, model: str) -> None:
        from assistant.errors import ModelError

        started = time.monotonic()
        try:
            if self._injected is not None:
                engine, self._injected = self._injected, None
            else:
                from assistant.engine import open_engine
                from assistant.engine.model import download_reporter

                # A first run downloads here: bytes and percentage in the status bar.
                shown = download_reporter(model, partial(self._ui, self._set_loading), 0.25)
                engine = open_engine(model, self.settings,
                                     tool_calls=any(not s.disabled for s in self.servers)
                                     and self.settings.constrained_tool_calls,
                                     progress=shown)
                self._owned_engines.append(engine)
            while not engine.wait_loaded(0.25):
                if self._shutting_down.is_set():
                    return
                self._ui(self._set_loading, f"loading model {time.monotonic() - started:.0f} s")
        except ModelError as exc:
            return self._model_failed(str(exc), model)
        except Exception as exc:  # a broken model directory: still a panel, not a crash
            return self._model_failed(f"cannot load the model {model}: {exc}", model)
        old, self.engine = self.engine, engine
        self.cache, self.tools, self._counter, self._engine_error = None, None, None, None
        self.prefill = None  # it was the old engine's
        if old is not None and old in self._owned_engines:
            self._owned_engines.remove(old)
            old.close()
        self._engine_ready.set()
        self._ui(self._model_loaded, engine.context_window, time.monotonic() - started)
        if self.servers:
            self._token_counter()  # ready before the first turn that offers tools

    def _model_failed(self, error: str, model: str) -> None:
        self._engine_error = error
        self._engine_ready.set()  # waiting turns wake up and see the error
        self._ui(self._show_model_problem, error, model)

    def _set_loading(self, text: str | None) -> None:
        self.status.loading = text
        self._show_status()

    def _model_loaded(self, window: int, seconds: float) -> None:
        self.status.loading = None
        self.status.model = self.engine.label
        self.status.context_window = window
        for panel in self.query(ModelProblem):
            panel.remove()
        self._show_status()
        self.call_later(self._show_welcome, create=not self.history)
        if self.history:  # a model switched under an open chat: its cache is gone
            self._prepare_history(self.chat_id)

    async def _show_model_problem(self, error: str, model: str) -> None:
        self.status.loading = "no model"
        self._show_status()
        for panel in self.query(ModelProblem):
            await panel.remove()
        await self.query("Welcome").remove()  # what to fix comes first
        await self.conversation.mount(ModelProblem(error, model))

    @work(thread=True, exit_on_error=False, group="mcp")
    def _start_servers(self) -> None:
        """Start the servers and return the host at once: a turn waits only for servers
        whose tools are not known from an earlier run. The status bar counts them up."""
        try:
            from assistant.chat.tooling import start_host

            self.host = start_host(self.servers, wait=False)
            self.host.elicit = self._elicit
        except Exception as exc:  # chat goes on without tools
            self._ui(self._servers_started, 0, [f"MCP servers could not start: {exc}"])
            return
        finally:
            self._host_ready.set()
        from assistant.chat.tooling import server_problems

        started = time.monotonic()
        while not self.host.wait_all(0.5):  # a sign of life while a slow one starts
            up = sum(s.status == "ready" for s in self.host.servers.values())
            self._ui(self._servers_starting, up, time.monotonic() - started)
        problems = server_problems(self.host)
        up = sum(s.status == "ready" for s in self.host.servers.values())
        self._ui(self._servers_started, up, problems)
        self._ui(self._show_server_noise)

    def _show_server_noise(self) -> None:
        """One notice per server that wrote non-JSON-RPC output since the last look."""
        from assistant.chat.tooling import server_noise

        lines = server_noise(self.host) if self.host is not None else []
        for line in lines:
            if line not in self._noise_seen:
                self.notify(line, title="MCP server noise", severity="warning", timeout=10)
        self._noise_seen.update(lines)

    def _servers_starting(self, up: int, seconds: float) -> None:
        self.status.servers_up = up
        self.status.servers_note = f"starting {seconds:.0f} s"
        self._show_status()

    def _servers_started(self, up: int, problems: list[str]) -> None:
        self.status.servers_up = up
        self.status.servers_note = None
        self._show_status()
        for line in problems:
            self.notify(line, title="MCP server failed", severity="warning", timeout=10)
        self._servers_settled.set()

    def _ui(self, fn, *args) -> None:
        """Run ``fn`` on the UI thread from a worker; nothing to do once the app is gone."""
        if self._backends_closed and not self.is_running:
            return
        try:
            self.call_from_thread(fn, *args)
        except RuntimeError:
            pass

    def _token_counter(self):
        if self._counter is None:
            self._counter = self.engine.counter
        return self._counter

    def close_backends(self) -> None:
        """Stop the turn, shut the MCP servers down, close the engine. Idempotent."""
        if self._backends_closed:
            return
        self._shutting_down.set()
        self._stop.set()
        if self.turn is not None:
            self.turn.cancel()
        self._idle.wait(30)  # the turn stores what it produced before the store closes
        if self.servers:
            self._host_ready.wait(30)
        if self.host is not None:
            self.host.close()
        for engine in self._owned_engines:
            engine.close()
        self._owned_engines.clear()
        if self._own_store:
            self.store.close()
        self._backends_closed = True
