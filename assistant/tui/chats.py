"""Saved chats: new, open (resume), rename, delete, the chat list; and the chat store's
failures, each a titled notice for a person, never a crash."""

from __future__ import annotations

from textual.widgets import ListView

from assistant.chat.store import DEFAULT_TITLE, StoreError
from assistant.tui.screens import PromptScreen
from assistant.tui.widgets import AssistantMessage, UserMessage


class Chats:
    """A mixin of ``ChatApp``: which chat is open, and the store behind it."""

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

    async def _open_first_chat(self) -> None:
        """At start: the latest chat when ``reopen`` (``assistant`` without --new), else
        the start screen. A latest chat with no messages is reused either way, so starts
        that sent nothing do not pile up empty chats."""
        try:
            chats = self.store.chats()
            latest = chats[0] if chats else None
            empty = latest is not None and not self.store.messages(latest.id)
        except StoreError:  # shown when the chat is opened; the start screen comes first
            latest, empty = None, False
        if latest is not None and self.chat_id is None and not self.history:
            if empty:
                self.chat_id = latest.id
            elif self.reopen:
                await self.resume(latest.id)
                return
        await self._show_welcome(create=True)

    async def action_new_chat(self) -> None:
        if self.busy:
            self.notify("Stop the answer first (Esc).", title="Busy")
            return
        self._drop_prefill()
        # An open chat with no messages is the new chat already: it is kept, not piled up.
        keep = self.chat_id if not self.history else None
        self.chat_id, self.history, self.cache, self.tools = keep, [], None, None
        await self.conversation.remove_children()
        await self._show_welcome(create=True)
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
        if not stored:
            await self._show_welcome(create=True)
        self._show_status()
        self.input.focus()

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
            self.chat_id = None  # gone: not an empty chat to keep
            await self.action_new_chat()
            self.notify("Chat deleted.")
