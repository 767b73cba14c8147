"""The chat app: ``assistant`` / ``assistant chat``.

The UI thread only draws. The engine loads, MCP servers start and every turn runs in
thread workers; a turn's events come back through ``bridge._Bridge``, which batches them
into one ``TurnUpdate`` message at a time, so a fast model never floods the event loop.
mlx, mlx-lm and mcp are imported inside those workers, after the first frame.

This module composes the screen and the palette; each behaviour is a mixin in its own
module: ``backends`` (model and servers), ``turns`` (sending, streaming, prefill),
``approvals``, ``chats`` (saved chats, store failures), ``copy_export``, ``summaries``,
``mcp_use`` (resources and prompts).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from assistant.chat.store import ChatStore
from assistant.config import Settings
from assistant.tui.approvals import Approvals, _Approval
from assistant.tui.backends import Backends
from assistant.tui.chats import Chats
from assistant.tui.commands import AppCommands
from assistant.tui.copy_export import CopyAndExport
from assistant.tui.mcp_use import ResourcesAndPrompts
from assistant.tui.screens import PromptScreen, ToolsScreen
from assistant.tui.summaries import Summaries
from assistant.tui.turns import Turns
from assistant.tui.widgets import (AttachmentBar, ChatInput, ChatList, Status, StatusBar,
                                   Welcome)

class ChatApp(Backends, Turns, Approvals, Chats, CopyAndExport, Summaries,
              ResourcesAndPrompts, App):
    """The app: composes the screen, holds the state the mixins share, and routes
    commands; each mixin (one module each) is one part of the behaviour."""

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
        Binding("f1", "keys", "Keys", show=False),
    ]
    COMMANDS = {AppCommands}

    def __init__(self, *, model: str, settings: Settings, thinking: bool,
                 servers: list | None, problems: Iterable[str] = (), engine: Any = None,
                 options: dict | None = None, store: ChatStore | None = None,
                 reopen: bool = False) -> None:
        super().__init__()
        self.reopen = reopen  # open the latest chat at start (``assistant`` without --new)
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
        self._asking = []  # reads and prompts waiting on a server (mcp_use)

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
        else:
            self.status.servers_note = "starting"
            self._show_status()
        self.set_interval(1.0, self._tick)
        self.call_later(self._open_first_chat)
        # After the first frame: importing mlx and mcp holds the GIL for a while.
        self.call_after_refresh(self._start_backends)

    def _show_status(self) -> None:
        self.status_bar.show(self.status)

    def _tick(self) -> None:
        """Once a second: a long wait's seconds move in the status bar."""
        if self.status.busy_since is not None:
            self._show_status()

    async def _show_welcome(self, *, create: bool = False) -> None:
        """Draw the start screen in the empty chat (``create``), or bring the one shown
        up to date (the model loaded, the mode changed)."""
        shown = list(self.query(Welcome))
        if not shown and create and not self.history:
            shown = [Welcome()]
            await self.conversation.mount(shown[0])
        for welcome in shown:
            welcome.show(self.status, tools=bool(self.status.servers_total))

    # -- commands ------------------------------------------------------------------------

    def action_toggle_thinking(self) -> None:
        self.thinking = not self.thinking
        self.status.thinking = self.thinking
        self._show_status()
        if self.chat_id is not None:
            self._try_store(self.store.update_chat, self.chat_id, thinking=self.thinking)
        self.notify("Thinking on for the next turns" if self.thinking
                    else "Thinking off for the next turns", timeout=2)
        self.call_later(self._show_welcome)

    def action_tools(self) -> None:
        from assistant.mcp.approval import ApprovalStore

        servers = list(self.host.servers.values()) if self.host is not None else []
        self.push_screen(ToolsScreen(servers, ApprovalStore()),
                         lambda then: then == "attach" and self.call_later(self.pick_resource))

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
        """The palette's list, in this order (``commands.AppCommands`` keeps it)."""
        yield SystemCommand("Toggle thinking", "ctrl+t · think before answering, or answer "
                            "directly", self.action_toggle_thinking)
        yield SystemCommand("Tools", "ctrl+o · MCP servers, their tools, stored approvals",
                            self.action_tools)
        yield SystemCommand("Switch model", "Load another model (repo id or directory)",
                            self.action_switch_model)
        yield SystemCommand("New chat", "ctrl+n · start a new conversation",
                            self.action_new_chat)
        yield SystemCommand("Chats", "ctrl+b · show or hide the saved chats",
                            self.action_toggle_chats)
        yield SystemCommand("Export chat", "ctrl+s · save this chat as Markdown",
                            self.action_export)
        yield SystemCommand("Attach a resource", "A server's resource goes with the next "
                            "message (or type @)", self.action_attach_resource)
        yield SystemCommand("Use a prompt", "A built-in command or a server's prompt (or "
                            "type / in an empty input)", self.action_use_prompt)
        yield SystemCommand("Rename chat", "Give this chat a title", self.action_rename_chat)
        yield SystemCommand("Delete chat", "Delete this chat", self.action_delete_chat)
        yield SystemCommand("Copy last answer", "ctrl+g · to the clipboard",
                            self.action_copy_answer)
        yield SystemCommand("Copy last code block", "To the clipboard", self.action_copy_code)
        yield SystemCommand("Keys", "F1 · show or hide every key", self.action_keys)
        yield SystemCommand("Quit", "ctrl+q · quit the app", self.action_quit)

    def action_keys(self) -> None:
        """F1: the keys panel, open or closed."""
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

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

    from assistant.engine.backends import is_remote

    return urlsplit(model).netloc if is_remote(model) else Path(model).name or model


def create_app(settings: Settings | None = None, *, model: str | Path | None = None,
               thinking: bool | None = None, mcp_config: Path | None = None,
               no_tools: bool = False, servers: list | None = None, engine: Any = None,
               options: dict | None = None, store: ChatStore | None = None,
               reopen: bool = False) -> ChatApp:
    """Build the app. Tests and benchmarks inject ``engine`` (a loaded ``Engine``, which
    the app then does not close), ``servers`` (instead of the config file), ``options``
    (extra ``GenerationOptions`` fields, e.g. ``logits_processors``) and ``store``.
    ``reopen`` opens the latest chat at start, as ``assistant`` does without ``--new``."""
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
                   options=options, store=store, reopen=reopen)


def run_chat(args, settings: Settings) -> int:
    """``assistant chat``: run the app until the user quits; always clean up."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        from assistant.errors import UserError

        raise UserError("the chat app needs a terminal; in scripts and pipes use "
                        "assistant ask \"...\" or assistant ask -")
    if args.adapter:
        settings = replace(settings, adapter=str(args.adapter))
    app = create_app(settings, model=args.model, thinking=args.thinking,
                     mcp_config=args.mcp_config, no_tools=args.no_tools,
                     reopen=not args.new)
    try:
        app.run()
    finally:
        app.close_backends()
    return app.return_code or 0
