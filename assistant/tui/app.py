"""The chat app: ``assistant`` / ``assistant chat``.

The UI thread only draws. The engine loads, MCP servers start and every turn runs in
thread workers; a turn's events come back through ``_Bridge``, which batches them into
one ``TurnUpdate`` message at a time, so a fast model never floods the event loop.
mlx, mlx-lm and mcp are imported inside those workers, after the first frame.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, ListView

from assistant.chat.store import DEFAULT_TITLE, ChatStore, StoreError, title_from
from assistant.config import Settings, paths
from assistant.tui.bridge import TurnUpdate, _Bridge
from assistant.tui.backends import Backends
from assistant.tui.mcp_use import ResourcesAndPrompts
from assistant.tui.screens import (ApprovalScreen, ElicitScreen, ModelProblem, PromptScreen,
                                   ToolsScreen)
from assistant.tui.widgets import (
    AssistantMessage,
    AttachmentBar,
    ChatInput,
    ChatList,
    Status,
    StatusBar,
    UserMessage,
)

_CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)


@dataclass
class _Approval:
    done: threading.Event
    choice: str = "deny"


class ChatApp(Backends, ResourcesAndPrompts, App):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "assistant"
    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+t", "toggle_thinking", "Think"),
        Binding("ctrl+n", "new_chat", "New"),
        Binding("ctrl+b", "toggle_chats", "Chats"),
        Binding("ctrl+o", "tools", "Tools"),
        Binding("ctrl+g", "copy_answer", "Copy"),
        Binding("ctrl+s", "export", "Export"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, *, model: str, settings: Settings, thinking: bool,
                 servers: list | None, problems: Iterable[str] = (), engine: Any = None,
                 options: dict | None = None, store: ChatStore | None = None) -> None:
        super().__init__()
        self.model_ref, self.settings, self.thinking = model, settings, thinking
        self.servers = servers or []
        self.config_problems = list(problems)
        self.overrides = dict(options or {})  # extra GenerationOptions fields (tests, bench)
        self._injected = engine
        self.store = store or ChatStore()
        self._own_store = store is None
        self.engine: Any = None
        self.host: Any = None
        self.tools: Any = None  # chat.turn.Tools for the current chat
        self.cache: Any = None  # engine.ChatCache for the current chat
        self.prefill: Any = None  # the chat's latest idle prefill (engine.Prefill)
        self.chat_id: int | None = None
        self.history: list[dict] = []
        self.turn: Any = None
        self.busy = False
        self.last_stats: Any = None
        self.status = Status(model=_short_name(model), thinking=thinking,
                             servers_total=len([s for s in self.servers if not s.disabled]))
        self._engine_ready = threading.Event()
        self._engine_error: str | None = None
        self._host_ready = threading.Event()  # the host exists (its servers may still start)
        self._servers_settled = threading.Event()  # every server is up or failed, and shown
        self._stop = threading.Event()
        self._idle = threading.Event()  # no turn worker running
        self._idle.set()
        self._shutting_down = threading.Event()
        self._backends_closed = False
        self._owned_engines: list = []
        self._approval: _Approval | None = None
        self._noise_seen: set[str] = set()
        self._counter: Any = None
        self._tools_revision = 0  # the host's revision the current chat's tools were built at
        self.attachments = []  # resources going with the next message (mcp_use.Attachment)

    # -- layout -----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield ChatList(id="chats")
            with Vertical(id="chat"):
                yield VerticalScroll(id="conversation")
                yield AttachmentBar(id="attachments")
                yield ChatInput(id="input", soft_wrap=True, show_line_numbers=False,
                                compact=True, placeholder="Message (Enter sends, "
                                "ctrl+j new line, /summarize PATH)")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.conversation = self.query_one("#conversation", VerticalScroll)
        self.conversation.anchor()
        self.input = self.query_one(ChatInput)
        self.chat_list = self.query_one(ChatList)
        self.chat_list.display = False
        self.status_bar = self.query_one(StatusBar)
        self.input.focus()
        self._show_status()
        for line in self.config_problems:
            self.notify(line, title="MCP config problem", severity="warning", timeout=10)
        self._show_store_notices()
        if not self.servers:
            self._host_ready.set()
            self._servers_settled.set()
        # After the first frame: importing mlx and mcp holds the GIL for a while.
        self.call_after_refresh(self._start_backends)

    def _show_status(self) -> None:
        self.status_bar.show(self.status)

    # -- engine and servers, in the background ---------------------------------------------

    # -- sending ------------------------------------------------------------------------

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

    async def send_messages(self, messages: list[dict], shown: str) -> None:
        """Store the turn's new messages (the user's, or a server prompt's), show
        ``shown`` for them, then run the turn in a worker."""
        for message in messages:
            if not await self._save_user_message(message, shown):
                return
            self.history.append(message)
        view = await self._begin(shown)
        self._run_turn(view, self.chat_id)

    async def _save_user_message(self, message: dict, shown: str | None = None) -> bool:
        """Store the user's message before anything else runs. Off the UI thread: a store
        locked by another process is waited on for a few seconds. If it cannot be
        stored, nothing is sent and the text goes back into the input."""
        self.busy = True
        self._set_busy("saving")
        try:
            if self.chat_id is None:
                self.chat_id = await asyncio.to_thread(
                    self.store.create_chat, title_from(shown or message["content"]),
                    model=self.model_ref, thinking=self.thinking)
                if self.chat_list.display:
                    await self._fill_chats()
            await asyncio.to_thread(self.store.add_message, self.chat_id, message)
            return True
        except StoreError as exc:
            self.busy = False
            self._set_busy(None)
            if not self.input.text.strip():
                self.input.text = shown or message["content"]
                self.input.move_cursor(self.input.document.end)
            self._store_failed(exc, "Your message was not sent; it is back in the input.")
            return False
        finally:
            self._show_store_notices()

    async def _begin(self, text: str) -> AssistantMessage:
        self.busy = True
        self._idle.clear()
        self._stop.clear()
        view = AssistantMessage()
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

    def _approve(self, request) -> str:
        """The approval callback, on the turn's worker: show the modal, wait for the user."""
        approval = self._approval = _Approval(threading.Event())
        tool = request.tool

        def ask() -> None:
            def answered(choice: str | None) -> None:
                approval.choice = choice or "deny"
                approval.done.set()

            self.push_screen(ApprovalScreen(tool.server, tool.name, request.arguments,
                                            read_only=tool.read_only,
                                            description=tool.description), answered)

        self._ui(ask)
        while not approval.done.wait(0.05):
            if self._stop.is_set() or self._shutting_down.is_set():
                self._ui(self._dismiss_approval)
                approval.choice = "deny"
                break
        self._approval = None
        return approval.choice

    def _elicit(self, request, given_up: threading.Event):
        """A server's question during a call, on a worker: show the form, wait for the
        user; the call's time limit, Esc and quitting take the form down (cancel)."""
        from assistant.mcp.elicit import CANCEL

        done, answer = threading.Event(), [CANCEL]

        def answered(choice) -> None:
            answer[0] = choice or CANCEL
            done.set()

        self._ui(lambda: self.push_screen(ElicitScreen(request), answered))
        while not done.wait(0.05):
            if given_up.is_set() or self._stop.is_set() or self._shutting_down.is_set():
                self._ui(lambda: isinstance(self.screen, ElicitScreen)
                         and self.screen.dismiss(CANCEL))
                break
        return answer[0]

    def _dismiss_approval(self) -> None:
        if isinstance(self.screen, ApprovalScreen):
            self.screen.dismiss("deny")

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
                    self.status.busy = None
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

    # -- the chat store: each failure is a titled notice for a person, never a crash ---

    _STORE_TITLES = {"locked": "Chats locked", "damaged": "Chats file damaged",
                     "unwritable": "Chats not saved"}

    def _store_failed(self, exc: StoreError, then: str = "", title: str | None = None) -> None:
        self.notify(f"{exc}. {then}".strip(), severity="error", timeout=12,
                    title=title or self._STORE_TITLES.get(exc.kind, "Chats"))
        self._show_store_notices()

    def _show_store_notices(self) -> None:
        for title, line in self.store.take_notices():
            self.notify(line, title=title, severity="warning", timeout=20)
        if self.status.unsaved != bool(self.store.unsaved):
            self.status.unsaved = bool(self.store.unsaved)
            self._show_status()

    def _try_store(self, fn, *args, **kwargs):
        """``fn(...)``, or None once a failure has been shown."""
        try:
            return fn(*args, **kwargs)
        except StoreError as exc:
            self._store_failed(exc)
            return None
        finally:
            self._show_store_notices()

    # -- actions ------------------------------------------------------------------------

    def action_stop(self) -> None:
        """Esc: stop the generation or tool call now; what was produced stays."""
        if not self.busy:
            return
        self._stop.set()
        turn = self.turn
        if turn is not None:
            turn.cancel()
        self._dismiss_approval()

    def action_toggle_thinking(self) -> None:
        self.thinking = not self.thinking
        self.status.thinking = self.thinking
        self._show_status()
        if self.chat_id is not None:
            self._try_store(self.store.update_chat, self.chat_id, thinking=self.thinking)
        self.notify("Thinking on for the next turns" if self.thinking
                    else "Thinking off for the next turns", timeout=2)

    async def action_new_chat(self) -> None:
        if self.busy:
            self.notify("Stop the answer first (Esc).", title="Busy")
            return
        self._drop_prefill()
        self.chat_id, self.history, self.cache, self.tools = None, [], None, None
        await self.conversation.remove_children()
        self.status.ttft_s = self.status.decode_tps = None
        self.status.context_used = self.status.cached_tokens = 0
        self._show_status()
        if self.chat_list.display:
            await self._fill_chats()
        self.input.focus()

    async def action_toggle_chats(self) -> None:
        self.chat_list.display = not self.chat_list.display
        if self.chat_list.display:
            await self._fill_chats()
            self.chat_list.focus()
        else:
            self.input.focus()

    async def _fill_chats(self) -> None:
        await self.chat_list.fill(self._try_store(self.store.chats) or [], self.chat_id)

    async def on_list_view_selected(self, event: ListView.Selected) -> None:
        if event.item is not None and event.item.name:
            await self.resume(int(event.item.name))

    async def resume(self, chat_id: int) -> None:
        """Open a saved chat: its messages become the history, prefilled in idle time."""
        if self.busy:
            self.notify("Stop the answer first (Esc).", title="Busy")
            return
        try:
            info = self.store.chat(chat_id)
            stored = self.store.messages(chat_id) if info is not None else []
        except StoreError as exc:  # one damaged chat: the app and the other chats go on
            self._store_failed(exc, "This chat cannot be opened; the others still can.",
                               title="Chat cannot be opened")
            return
        if info is None:
            return
        self._drop_prefill()
        self.chat_id, self.history = chat_id, [m.as_message() for m in stored]
        self.cache, self.tools = None, None
        if self.history:
            self._prepare_history(chat_id)
        self.thinking = self.status.thinking = info.thinking
        await self.conversation.remove_children()
        group: list = []
        for m in stored + [None]:
            if m is None or m.role == "user":
                if group:
                    view = AssistantMessage()
                    await self.conversation.mount(view)
                    await view.show_stored(group)
                    group = []
                if m is not None:
                    await self.conversation.mount(UserMessage(m.content))
            else:
                group.append(m)
        self._show_status()
        self.input.focus()

    def action_tools(self) -> None:
        from assistant.mcp.approval import ApprovalStore

        servers = list(self.host.servers.values()) if self.host is not None else []
        self.push_screen(ToolsScreen(servers, ApprovalStore()),
                         lambda then: then == "attach" and self.call_later(self.pick_resource))

    def _last_answer(self) -> str:
        views = list(self.query(AssistantMessage))
        return views[-1].all_text.strip() if views else ""

    def action_copy_answer(self) -> None:
        self._copy(self._last_answer(), "the last answer")

    def action_copy_code(self) -> None:
        blocks = _CODE_BLOCK.findall(self._last_answer())
        self._copy(blocks[-1] if blocks else "", "the last code block")

    def _copy(self, text: str, what: str) -> None:
        if not text:
            self.notify(f"There is no {what.removeprefix('the ')} to copy.")
            return
        self.copy_to_clipboard(text)  # OSC 52
        if sys.platform == "darwin" and shutil.which("pbcopy"):  # Terminal.app has no OSC 52
            subprocess.run(["pbcopy"], input=text.encode(), check=False)
        self.notify(f"Copied {what}.", timeout=2)

    def action_export(self) -> Path | None:
        if self.chat_id is None:
            self.notify("Nothing to export yet.")
            return None
        out = paths().data_dir / "exports" / f"chat-{self.chat_id}.md"
        text = self._try_store(self.store.export_markdown, self.chat_id)
        if text is None:
            return None
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.notify(f"Cannot write {out}: {exc.strerror or exc}. Make the folder "
                        "writable and export again.", title="Export failed", severity="error")
            return None
        self.notify(str(out), title="Chat exported", timeout=8)
        return out

    def action_rename_chat(self) -> None:
        if self.chat_id is None:
            self.notify("Send a message first.")
            return
        info = self._try_store(self.store.chat, self.chat_id)

        def done(title: str | None) -> None:
            if title:
                self._try_store(self.store.rename, self.chat_id, title)
                self.call_later(self._fill_chats)

        self.push_screen(PromptScreen("Rename chat", info.title if info else DEFAULT_TITLE),
                         done)

    async def action_delete_chat(self) -> None:
        if self.chat_id is not None and not self.busy:
            try:
                self.store.delete(self.chat_id)
            except StoreError as exc:
                self._store_failed(exc, "The chat was not deleted.")
                return
            await self.action_new_chat()
            self.notify("Chat deleted.")

    def action_switch_model(self) -> None:
        def done(ref: str | None) -> None:
            if not ref:
                return
            if self.busy:
                self.notify("Stop the answer first (Esc).", title="Busy")
                return
            self.model_ref = ref
            self._engine_ready.clear()
            self.status.loading = "loading model"
            self._show_status()
            self._load_engine(ref)

        self.push_screen(PromptScreen("Switch model", self.model_ref,
                                      "Hugging Face repo id or model directory"), done)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield SystemCommand("New chat", "Start a new conversation", self.action_new_chat)
        yield SystemCommand("Toggle thinking", "Think before answering, or answer directly",
                            self.action_toggle_thinking)
        yield SystemCommand("Switch model", "Load another model (repo id or directory)",
                            self.action_switch_model)
        yield SystemCommand("Tools", "MCP servers, their tools, stored approvals",
                            self.action_tools)
        yield SystemCommand("Attach a resource", "A server's resource goes with the next "
                            "message (or type @)", self.action_attach_resource)
        yield SystemCommand("Use a prompt", "A built-in command or a server's prompt (or "
                            "type / in an empty input)", self.action_use_prompt)
        yield SystemCommand("Export chat", "Save this chat as Markdown", self.action_export)
        yield SystemCommand("Rename chat", "Give this chat a title", self.action_rename_chat)
        yield SystemCommand("Delete chat", "Delete this chat", self.action_delete_chat)
        yield SystemCommand("Copy last answer", "To the clipboard", self.action_copy_answer)
        yield SystemCommand("Copy last code block", "To the clipboard", self.action_copy_code)
        yield from super().get_system_commands(screen)

    # -- /summarize -------------------------------------------------------------------

    async def _summarize(self, text: str) -> None:
        args = text.split(maxsplit=1)
        if len(args) < 2:
            self.notify("Usage: /summarize PATH", title="Summarize")
            return
        from assistant.notes.summarize import summarize

        message = {"role": "user", "content": text}
        if not await self._save_user_message(message):
            return
        self.history.append(message)
        view = await self._begin(text)
        self._run_summary(view, self.chat_id, summarize, Path(args[1]).expanduser())

    @work(thread=True, exit_on_error=False, group="turn")
    def _run_summary(self, view, chat_id: int, summarize, path: Path) -> None:
        bridge = _Bridge(self, view, chat_id)
        note = None
        try:
            if not self._wait_for(self._engine_ready):
                return
            if self._engine_error:
                note = "The model is not loaded; see the panel above."
                return
            from assistant.notes.summarize import SummaryOptions

            # Non-thinking, as on the command line; injected logits processors apply too.
            options = SummaryOptions(
                logits_processors=self.overrides.get("logits_processors", ()))
            result = summarize(self.engine, [path], count=self._token_counter().count,
                               settings=self.settings, options=options, cancel=self._stop,
                               on_progress=lambda *a: self._ui(self._set_busy,
                                                               f"summarizing {a[-1] if a else ''}"))
            bridge._put("say", result.markdown)
            bridge.on_message({"role": "assistant", "content": result.markdown})
        except Exception as exc:
            note = f"⚠ summarizing failed: {exc}"
        finally:
            stopped = self._stop.is_set()
            bridge.end("⏹ stopped" if stopped and not note else note)
            self._idle.set()

    # -- quitting -----------------------------------------------------------------------

    async def action_quit(self) -> None:
        self.action_stop()
        self._set_busy("closing")
        import asyncio

        await asyncio.to_thread(self.close_backends)
        self.exit()


def _short_name(model: str) -> str:
    """A model for the status bar before it loads: a folder's or repo's last part, or a
    server's address."""
    from urllib.parse import urlsplit

    from assistant.engine.remote import is_remote

    return urlsplit(model).netloc if is_remote(model) else Path(model).name or model


def create_app(settings: Settings | None = None, *, model: str | Path | None = None,
               thinking: bool | None = None, mcp_config: Path | None = None,
               no_tools: bool = False, servers: list | None = None, engine: Any = None,
               options: dict | None = None, store: ChatStore | None = None) -> ChatApp:
    """Build the app. Tests and benchmarks inject ``engine`` (a loaded ``Engine``, which
    the app then does not close), ``servers`` (instead of the config file), ``options``
    (extra ``GenerationOptions`` fields, e.g. ``logits_processors``) and ``store``."""
    settings = settings or Settings()
    problems: list[str] = []
    if servers is None and not no_tools:
        from assistant.mcp.config import load_servers

        servers, problems = load_servers(mcp_config,
                                         notes_root=Path(settings.notes_dir).expanduser())
    if engine is not None and model is None:
        model = engine.model_path if engine.local else engine.url
    return ChatApp(model=str(model or settings.model), settings=settings,
                   thinking=settings.thinking if thinking is None else thinking,
                   servers=[] if no_tools else servers, problems=problems, engine=engine,
                   options=options, store=store)


def run_chat(args, settings: Settings) -> int:
    """``assistant chat``: run the app until the user quits; always clean up."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        from assistant.errors import UserError

        raise UserError("the chat app needs a terminal; in scripts and pipes use "
                        "assistant ask \"...\" or assistant ask -")
    if args.adapter:
        settings = replace(settings, adapter=str(args.adapter))
    app = create_app(settings, model=args.model, thinking=args.thinking,
                     mcp_config=args.mcp_config, no_tools=args.no_tools)
    try:
        app.run()
    finally:
        app.close_backends()
    return app.return_code or 0
