"""A turn's events, from its worker thread to the UI: ``_Bridge`` is the turn's observer.
It never touches widgets; it queues what happened and posts one ``TurnUpdate`` at a time,
so a fast model never floods the event loop. It also saves the answer as it streams."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

from textual.message import Message

from assistant.chat.store import StoreError

if TYPE_CHECKING:
    from assistant.tui.app import ChatApp
    from assistant.tui.widgets import AssistantMessage


class TurnUpdate(Message):
    """Posted from a turn's worker thread: there are events to draw."""

    def __init__(self, bridge: _Bridge) -> None:
        super().__init__()
        self.bridge = bridge


class _Bridge:
    """The turn's observer. Runs on the worker thread, so it never touches widgets: it
    queues what happened and posts one ``TurnUpdate`` until the UI has drained it.

    It also saves the answer while it streams (at most one small write every
    ``SAVE_EVERY`` seconds, never per token), so a crash loses at most that much of what
    was on screen; the row is finished when the round's message is complete."""

    SAVE_EVERY = 0.5

    def __init__(self, app: ChatApp, view: AssistantMessage, chat_id: int):
        self.app, self.view, self.chat_id = app, view, chat_id
        self._items: list[tuple] = []
        self._lock = threading.Lock()
        self._posted = False
        self.cancelled = False
        self.stats = None  # the round's TurnStats, stored with its assistant message
        self.call = None  # the tool call whose result message comes next
        self._text, self._thinking = "", ""
        self._position: int | None = None  # the streaming row of this round, once saved
        self._saved_at = 0.0
        self._prompt_tokens: int | None = None  # this round's prompt, once the engine has it
        self._cached_tokens = self._generated = 0

    def _put(self, *item) -> None:
        with self._lock:
            self._items.append(item)
            post, self._posted = not self._posted, True
        if post:
            self.app.post_message(TurnUpdate(self))

    def take(self) -> list[tuple]:
        """Everything queued, with neighbouring text pieces of one kind joined."""
        with self._lock:
            items, self._items, self._posted = self._items, [], False
        merged: list[tuple] = []
        for item in items:
            if merged and item[0] in ("think", "say") and merged[-1][0] == item[0]:
                merged[-1] = (item[0], merged[-1][1] + item[1])
            elif merged and item[0] == "context" and merged[-1][0] == "context":
                merged[-1] = item  # only the latest figure is drawn
            else:
                merged.append(item)
        return merged

    def _save_partial(self) -> None:
        now = time.monotonic()
        if now - self._saved_at < self.SAVE_EVERY:
            return
        self._saved_at = now
        try:
            self._position = self.app.store.save_partial(self.chat_id, self._position,
                                                         self._text, self._thinking)
        except StoreError as exc:
            self._saved_at = now + 10  # don't repeat a failing write per token
            self.app._ui(self.app._store_failed, exc, "The answer is not being saved.")

    # -- the Observer protocol of chat.turn.Turn ------------------------------------------

    def on_event(self, event) -> None:
        # By name: importing assistant.engine here would load mlx before the first frame.
        kind = type(event).__name__
        if kind == "PromptReady":
            self._prompt_tokens, self._cached_tokens = event.prompt_tokens, event.cached_tokens
            self._generated = 0
            self._put_context()
        elif kind == "ThinkingDelta":
            self._thinking += event.text
            self._put("think", event.text)
            self._generated += 1
            self._put_context()
            self._save_partial()
        elif kind == "TextDelta":
            self._text += event.text
            self._put("say", event.text)
            self._generated += 1
            self._put_context()
            self._save_partial()
        elif kind == "TurnStats":
            self.stats = event
            self._put("stats", event)
        elif kind == "Finished" and event.reason == "cancelled":
            self.cancelled = True

    def _put_context(self) -> None:
        """The context in use as the answer streams: the prompt plus about one token per
        piece of text so far (the round's statistics give the exact count at its end)."""
        if self._prompt_tokens is not None:
            self._put("context", self._prompt_tokens + self._generated, self._cached_tokens)

    def on_tool_call(self, call) -> None:
        self.call = call
        self._put("tool", id(call), replace(call))

    def on_message(self, message: dict) -> None:
        stopped = self.cancelled or self.app._stop.is_set()
        status, stats, position = "stopped" if stopped else "complete", None, None
        if message["role"] == "assistant":
            position, self._position = self._position, None
            self._text, self._thinking, self._saved_at = "", "", 0.0
            if self.stats is not None:
                stats, self.stats = asdict(self.stats), None
        elif message["role"] == "tool" and self.call is not None:
            # The call's own outcome, so a resumed chat shows denied or failed calls as such.
            status = self.call.status
            if stopped and status != "ok":
                status = "stopped"
        self.app.history.append(message)
        try:
            self.app.store.add_message(self.chat_id, message, stats=stats, status=status,
                                       position=position)
        except StoreError as exc:  # on screen and in the history; the chat goes on
            self.app._ui(self.app._store_failed, exc, "This message was not saved.")
        self.app._ui(self.app._show_store_notices)

    def end(self, note: str | None) -> None:
        if self._position is not None:  # the round ended without its message (it failed)
            message = {"role": "assistant", "content": self._text}
            if self._thinking:
                message["reasoning_content"] = self._thinking
            try:
                self.app.store.add_message(self.chat_id, message, status="interrupted",
                                           position=self._position)
            except StoreError:
                pass  # it stays a streaming row, read as interrupted once this app is gone
            self._position = None
        self._put("end", note)

