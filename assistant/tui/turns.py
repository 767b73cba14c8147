"""Sending and the turn: the user's message is stored first, the turn runs in a thread
worker, its events are drawn as ``TurnUpdate`` messages arrive; an opened chat's history
is prefilled in idle time; Esc stops."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace

from textual import work

from assistant.chat.store import StoreError, title_from
from assistant.tui.bridge import TurnUpdate, _Bridge
from assistant.tui.widgets import AssistantMessage, ChatInput, UserMessage, Welcome


class Turns:
    """A mixin of ``ChatApp``: from the input to a finished answer."""

    async def on_chat_input_submitted(self, event: ChatInput.Submitted) -> None:
        text = event.text.strip()
        if self.busy:
            self.input.text = event.text
            self.notify("Wait for the answer, or press Esc to stop it.", title="Busy")
            return
        if text.startswith("/summarize"):
            await self._summarize(text)
            return
        if self.attachments:
            await self.send_attached(text)
            return
        await self.send(text)

    async def send(self, text: str) -> None:
        """Store and show the user's message, then run the turn in a worker."""
        await self.send_messages([{"role": "user", "content": text}], text)

    async def send_messages(self, messages: list[dict], shown: str,
                            typed: str | None = None) -> bool:
        """Store the turn's new messages (the user's, or a server prompt's), show
        ``shown`` for them, then run the turn in a worker. If they cannot be stored,
        nothing runs, ``typed`` (what the user typed; ``shown`` if None) goes back into
        the input, and False is returned so that the caller keeps what it holds."""
        for message in messages:
            if not await self._save_user_message(message, shown,
                                                 shown if typed is None else typed):
                return False
            self.history.append(message)
        view = await self._begin(shown)
        self._run_turn(view, self.chat_id)
        return True

    async def _save_user_message(self, message: dict, shown: str | None = None,
                                 typed: str | None = None) -> bool:
        """Store the user's message before anything else runs. Off the UI thread: a store
        locked by another process is waited on for a few seconds. If it cannot be
        stored, nothing is sent and ``typed`` (the message's text if None) goes back
        into the input."""
        self.busy = True
        self._set_busy("saving")
        try:
            title = title_from(shown or message["content"])
            if self.chat_id is None:
                self.chat_id = await asyncio.to_thread(
                    self.store.create_chat, title, model=self.model_ref,
                    thinking=self.thinking)
                if self.chat_list.display:
                    await self._fill_chats()
            elif not self.history:  # an empty chat reused: it takes this first message's name
                await asyncio.to_thread(self.store.rename, self.chat_id, title)
                await asyncio.to_thread(self.store.update_chat, self.chat_id,
                                        model=self.model_ref, thinking=self.thinking)
            await asyncio.to_thread(self.store.add_message, self.chat_id, message)
            return True
        except StoreError as exc:
            self.busy = False
            self._set_busy(None)
            back = message["content"] if typed is None else typed
            if back and not self.input.text.strip():
                self.input.text = back
                self.input.move_cursor(self.input.document.end)
            self._store_failed(exc, "Your message was not sent; it is back in the input."
                               if back else "It was not sent.")
            return False
        finally:
            self._show_store_notices()

    async def _begin(self, text: str) -> AssistantMessage:
        self.busy = True
        self._idle.clear()
        self._stop.clear()
        view = AssistantMessage()
        await self.query(Welcome).remove()  # the start screen gives way to the chat
        await self.conversation.mount_all([UserMessage(text), view])
        if not self._engine_ready.is_set():
            self.status.busy = "waiting for the model"
        else:
            self.status.busy = "generating"
        self._show_status()
        return view

    def _wait_for(self, ready: threading.Event) -> bool:
        """Block a worker until ``ready``; False if the user stopped or the app closes."""
        while not ready.wait(0.05):
            if self._stop.is_set() or self._shutting_down.is_set():
                return False
        return not (self._stop.is_set() or self._shutting_down.is_set())

    @work(thread=True, exit_on_error=False, group="turn")
    def _run_turn(self, view: AssistantMessage, chat_id: int) -> None:
        bridge = _Bridge(self, view, chat_id)
        note, outcome = None, None
        try:
            if not self._wait_for(self._engine_ready) or not self._wait_for(self._host_ready) \
                    or not self._wait_for_tools():
                return
            if self._engine_error:
                note = "The model is not loaded; see the panel above."
                return
            from assistant.chat.turn import Turn
            from assistant.engine import ChatCache

            self._ui(self._set_busy, "generating")
            tools = self._chat_tools()
            if self.cache is None:
                self.cache = ChatCache()
            turn = Turn(self.engine, self._system(tools) + self.history, self._options(),
                        chat=self.cache, observer=bridge, tools=tools)
            self.turn = turn
            if self._stop.is_set():
                turn.cancel()
            outcome = turn.run()
            self.last_stats, self.prefill = outcome.stats, turn.prefill
            if outcome.error:
                note = f"⚠ {outcome.error.error}"
            elif outcome.finish_reason == "length":
                note = "Cut off at the token limit."
            elif outcome.finish_reason == "rounds":
                note = "Stopped after the tool-call limit for one turn."
            self._ui(self._show_server_noise)
        except Exception as exc:  # shown in the chat; the app goes on
            note = f"⚠ {type(exc).__name__}: {exc}"
        finally:
            self.turn = None
            stopped = self._stop.is_set() or (outcome is not None
                                              and outcome.finish_reason == "cancelled")
            bridge.end("⏹ stopped" if stopped and not note else note)
            self._idle.set()

    @work(thread=True, exit_on_error=False, group="prefill")
    def _prepare_history(self, chat_id: int | None) -> None:
        """An opened chat starts with an empty cache: once the model and the servers are
        up, prefill its history in idle time, so its next turn prefills only the new
        message."""
        while not (self._engine_ready.wait(0.05) and self._host_ready.wait(0.05)):
            if self._shutting_down.is_set():
                return
        if self._engine_error or self._shutting_down.is_set():
            return
        # Imported and read here, not on the UI thread: the turn loop brings in the MCP
        # host, and the counter reads the tokenizer.
        import assistant.chat.turn  # noqa: F401

        if self.servers:
            self._token_counter()
        self._ui(self._start_prefill, chat_id)

    def _start_prefill(self, chat_id: int | None) -> None:
        # On the UI thread, like sending: a turn started meanwhile has the cache.
        if self.busy or self.chat_id != chat_id or self.cache is not None or not self.history:
            return
        from assistant.chat.turn import prefill_history
        from assistant.engine import ChatCache

        tools = self._chat_tools()
        self.cache = ChatCache()
        self.prefill = prefill_history(self.engine, self._system(tools) + self.history,
                                       self._options(), self.cache, tools)

    def _drop_prefill(self) -> None:
        if self.prefill is not None:
            self.prefill.cancel()
            self.prefill = None

    def _wait_for_tools(self) -> bool:
        """Block a worker until the tool list is known (servers first seen in this run
        have answered or failed); False if the user stopped or the app closes."""
        if self.host is None or self.host.wait_for_tools(0):
            return True
        self._ui(self._set_busy, "starting MCP servers")
        while not self.host.wait_for_tools(0.05):
            if self._stop.is_set() or self._shutting_down.is_set():
                return False
        return True

    def _options(self):
        from assistant.engine import GenerationOptions

        s = self.settings
        options = GenerationOptions(thinking=self.thinking, max_tokens=s.max_tokens,
                                    thinking_budget=s.thinking_budget,
                                    thinking_sampling=s.sampling_thinking,
                                    direct_sampling=s.sampling_direct,
                                    constrain_tool_calls=s.constrained_tool_calls)
        return replace(options, **self.overrides)

    def _system(self, tools) -> list[dict]:
        from assistant.prompts import load

        parts = [load("system")] + ([load("tools")] if tools else [])
        system = "\n\n".join(p for p in parts if p)
        return [{"role": "system", "content": system}] if system else []

    def _chat_tools(self):
        if self.host is None:
            return None
        revision = self.host.revision
        if not self.host.tools():
            return None
        if self.tools is None:  # one per chat: "allow for this chat" lives in it
            from assistant.chat.tooling import make_tools

            self.tools = make_tools(self.host, self.servers, self._token_counter(),
                                    self._approve)
        elif revision != self._tools_revision:
            # A server answered with other tools than the list kept from its last run:
            # this turn offers the fresh ones.
            from assistant.mcp.catalog import Catalog

            self.tools.catalog = Catalog(self.host.tools(), self._token_counter().count)
        self._tools_revision = revision
        return self.tools

    def _set_busy(self, text: str | None) -> None:
        self.status.busy = text
        self._show_status()

    async def on_turn_update(self, message: TurnUpdate) -> None:
        bridge = message.bridge
        view = bridge.view
        drawable = view.is_attached and not self._shutting_down.is_set()
        for item in bridge.take():
            match item:
                case ("think", text) if drawable:
                    await view.think(text)
                case ("say", text) if drawable:
                    await view.say(text)
                case ("tool", key, call) if drawable:
                    await view.tool_call(key, call)
                case ("context", used, cached) if drawable:
                    self.status.context_used, self.status.cached_tokens = used, cached
                    self._show_status()
                case ("stats", stats) if drawable:
                    await view.end_round(stats.thinking_tokens)
                    self._show_stats(stats)
                case ("end", note):
                    if drawable:
                        await view.finish(note)
                    self.busy = False
                    self.status.busy = self.status.busy_since = None
                    self._show_status()

    def _show_stats(self, stats) -> None:
        s = self.status
        if s.busy == "generating" or s.ttft_s is None:
            s.ttft_s = stats.ttft_s
        s.decode_tps = stats.decode_tps
        s.context_used = stats.prompt_tokens + stats.generated_tokens
        s.cached_tokens = stats.cached_tokens
        s.busy = "tools" if self.busy else None
        self._show_status()

    def action_stop(self) -> None:
        """Esc: stop the generation or tool call now; what was produced stays. Also
        gives up on a resource or prompt still waiting on its server."""
        self.cancel_asking()
        if not self.busy:
            return
        self._stop.set()
        turn = self.turn
        if turn is not None:
            turn.cancel()
        self._dismiss_approval()
