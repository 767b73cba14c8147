"""The chat app's widgets: input, messages (streamed Markdown, reasoning, tool cards),
status bar, chat list. They only draw; the app owns the engine, the tools and the store.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, Collapsible, ListItem, ListView, Markdown, Static, TextArea


class ChatInput(TextArea):
    """Multi-line input: Enter sends; shift+enter or ctrl+j starts a new line. ``@`` at
    the start of a word, and ``/`` in an empty input, ask for a picker (``Picker``)
    instead of being typed; the app types them if the picker is left with nothing."""

    @dataclass
    class Submitted(Message):
        text: str

    @dataclass
    class Picker(Message):
        key: str  # "@" or "/"

    def _word_starts(self) -> bool:
        row, column = self.cursor_location
        before = self.document.get_line(row)[:column]
        return not before or before[-1].isspace()

    async def _on_key(self, event: events.Key) -> None:
        if (event.character == "@" and self._word_starts()) or \
                (event.character == "/" and not self.text):
            event.stop()
            event.prevent_default()
            self.post_message(self.Picker(event.character))
            return
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            text = self.text
            if text.strip():
                self.clear()
                self.post_message(self.Submitted(text))
            return
        if event.key in ("shift+enter", "ctrl+j", "newline"):
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)


class AttachmentChip(Button):
    """An attached resource above the input: ``server:URI · N tokens ×``. A click, or
    Enter or Delete when it has the focus, takes it off."""

    BINDINGS = [Binding("delete,backspace", "press", "Remove", show=False)]

    def __init__(self, ref: str, tokens: int | None) -> None:
        size = f" · {tokens:,} tokens" if tokens is not None else ""
        # The URI comes from a server: plain Content, so no markup in it can act.
        super().__init__(Content(f"{ref}{size} ×"), classes="chip", compact=True)
        self.ref = ref

    @dataclass
    class Removed(Message):
        ref: str

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.Removed(self.ref))


class AttachmentBar(Horizontal):
    """The chips of the resources attached to the next message; hidden when none."""

    async def show(self, attachments) -> None:
        await self.remove_children()
        await self.mount_all([AttachmentChip(a.ref, a.tokens) for a in attachments])
        self.display = bool(attachments)


class UserMessage(Static):
    def __init__(self, text: str) -> None:
        super().__init__(text, markup=False, classes="user")


class Reasoning(Collapsible):
    """The model's reasoning: open while it streams, folded once the answer starts."""

    def __init__(self) -> None:
        self.body = Markdown(classes="reasoning-text")
        super().__init__(self.body, title="Thinking…", collapsed=False, classes="reasoning")
        self.text = ""
        self.deltas = 0
        self.started = time.monotonic()
        self.ended: float | None = None

    def describe(self, tokens: int | None = None) -> None:
        seconds = (self.ended or time.monotonic()) - self.started
        count = tokens if tokens is not None else self.deltas
        self.title = f"Thought for {seconds:.1f} s · {count} tokens"


class ToolCard(Vertical):
    """One tool call: server, tool, arguments, state, duration; the result folded. A
    result that links to resources offers to attach them to the next message."""

    ICONS = {"pending": "?", "running": "…", "ok": "✓", "error": "✗", "denied": "⊘",
             "skipped": "–", "stopped": "⏹"}

    def __init__(self, call) -> None:
        self.header = Static(markup=False, classes="tool-header")
        self.arguments = Static(markup=False, classes="tool-args")
        self.result = Static(markup=False, classes="tool-result")
        self.fold = Collapsible(self.result, title="Result", collapsed=True)
        super().__init__(self.header, self.arguments, self.fold, classes="tool-card")
        self.call = call

    def on_mount(self) -> None:
        self.show(self.call)

    def show(self, call) -> None:
        self.call = call
        name = f"{call.server}/{call.tool}" if call.server else (call.name or "tool call")
        state = {"pending": "waiting for approval"}.get(call.status, call.status)
        progress = getattr(call, "progress", None)
        if call.status == "running" and progress:
            state = f"running… {progress}"
        took = f" · {call.duration_s:.2f} s" if call.duration_s else ""
        # Decoded under the grammar: the name and arguments could not be malformed.
        constrained = " · constrained" if call.constrained else ""
        self.header.update(f"{self.ICONS.get(call.status, '·')} {name} · {state}{took}"
                           f"{constrained}")
        self.arguments.update(json.dumps(call.arguments, ensure_ascii=False)
                              if call.arguments is not None else call.raw)
        body = call.result or call.error or call.sent
        self.fold.display = bool(body)
        self.result.update(body)
        self.set_class(call.status in ("error", "denied", "stopped"), "failed")
        self._offer_links(call)

    @dataclass
    class AttachLinks(Message):
        server: str
        uris: list[str]

    def _offer_links(self, call) -> None:
        """A finished call whose result links to resources offers to attach them."""
        if self.query("#attach-links") or call.status != "ok" or not call.server \
                or not call.result:
            return
        from assistant.mcp.toolinfo import resource_links

        self.links = [uri for _, uri in resource_links(call.result)]
        if self.links:
            count = len(self.links)
            label = "Attach the linked resource" if count == 1 else \
                f"Attach the {count} linked resources"
            self.mount(Button(label, id="attach-links", compact=True), after=self.header)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "attach-links":
            event.stop()
            self.post_message(self.AttachLinks(self.call.server, list(self.links)))


class AssistantMessage(Vertical):
    """One assistant turn, in order: reasoning, answer text, tool cards, next round ..."""

    def __init__(self) -> None:
        super().__init__(classes="assistant")
        self.answer: Markdown | None = None
        self.answer_text = ""
        self.reasoning: Reasoning | None = None
        self.cards: dict[int, ToolCard] = {}
        self._streams: dict[Markdown, object] = {}
        self._texts: dict[Markdown, str] = {}
        self.all_text = ""  # every round's answer, for copying

    async def _write(self, md: Markdown, text: str) -> None:
        stream = self._streams.get(md)
        if stream is None:
            stream = self._streams[md] = Markdown.get_stream(md)
        self._texts[md] = self._texts.get(md, "") + text
        await stream.write(text)

    async def think(self, text: str) -> None:
        if self.reasoning is None or self.reasoning.ended is not None:
            self.reasoning = Reasoning()
            self.answer = None
            await self.mount(self.reasoning)
        self.reasoning.text += text
        self.reasoning.deltas += 1
        await self._write(self.reasoning.body, text)

    async def say(self, text: str) -> None:
        self.fold_reasoning()
        if self.answer is None:
            if not text.strip():
                return  # the blank lines between reasoning and answer
            text = text.lstrip()
            self.answer = Markdown(classes="answer")
            self.answer_text = ""
            await self.mount(self.answer)
        self.answer_text += text
        self.all_text += text
        await self._write(self.answer, text)

    def fold_reasoning(self, tokens: int | None = None) -> None:
        if self.reasoning is not None:
            if self.reasoning.ended is None:
                self.reasoning.ended = time.monotonic()
                self.reasoning.collapsed = True
            self.reasoning.describe(tokens)

    async def tool_call(self, key: int, call) -> None:
        self.fold_reasoning()
        card = self.cards.get(key)
        if card is None:
            card = self.cards[key] = ToolCard(call)
            await self.mount(card)
            self.answer = None  # the next round's text goes below the card
            self.all_text += "\n\n"
        else:
            card.show(call)

    async def end_round(self, thinking_tokens: int) -> None:
        if self.reasoning is not None:
            self.fold_reasoning(thinking_tokens or None)

    async def finish(self, note: str | None = None) -> None:
        """Stop the streams and render each text once in full, repairing partial blocks."""
        self.fold_reasoning()
        for md, stream in list(self._streams.items()):
            await stream.stop()
            await md.update(self._texts.get(md, "").strip())
        self._streams.clear()
        if note:
            await self.mount(Static(note, markup=False, classes="note"))

    NOTES = {"stopped": "⏹ stopped",
             "interrupted": "⚠ interrupted: the app closed while this answer was written",
             "streaming": "… still being written by another window"}

    async def show_stored(self, messages: list) -> None:
        """Draw a finished turn from stored messages (resumed chats)."""
        for m in messages:
            if m.role == "assistant":
                if m.reasoning:
                    block = Reasoning()
                    block.title = "Thinking"
                    block.collapsed = True
                    block.ended = block.started
                    await self.mount(block)
                    await block.body.update(m.reasoning)
                if m.content:
                    self.all_text += m.content + "\n\n"
                    await self.mount(Markdown(m.content, classes="answer"))
                for i, call in enumerate(m.tool_calls or []):
                    fn = call.get("function", {})
                    card = _StoredCall(fn.get("name"), fn.get("arguments"))
                    self.cards[id(card)] = ToolCard(card)
                    await self.mount(self.cards[id(card)])
            elif m.role == "tool":
                card = next((c for c in self.cards.values()
                             if c.call.name == m.name and c.call.status == "sent"), None)
                if card is not None:
                    # "complete": a file from before tool outcomes were stored.
                    status = "ok" if m.status == "complete" else m.status
                    card.call.result, card.call.status = m.content, status
                    card.show(card.call)
                continue  # a stopped call shows on its card
            if m.status in self.NOTES:
                await self.mount(Static(self.NOTES[m.status], classes="note"))


@dataclass
class _StoredCall:
    """A tool call read back from the store, shaped like ``chat.turn.ToolCall``."""

    name: str | None
    arguments: dict | None
    raw: str = ""
    server: str | None = None
    tool: str | None = None
    status: str = "sent"
    result: str = ""
    error: str | None = None
    sent: str = ""
    duration_s: float = 0.0
    constrained: bool = False  # not stored: a chat read back does not say


@dataclass
class Status:
    model: str = "…"
    thinking: bool = True
    loading: str | None = "loading model"
    ttft_s: float | None = None
    decode_tps: float | None = None
    context_used: int = 0
    context_window: int = 0
    cached_tokens: int = 0
    servers_up: int = 0
    servers_total: int = 0
    busy: str | None = None
    busy_since: float | None = None  # a long wait (a summary): the bar counts its seconds
    servers_note: str | None = None  # "starting 3 s" while servers come up
    asking: str | None = None  # a resource read or a prompt waiting on its server
    unsaved: bool = False  # the chat store could not be written: chats live in memory


def _short(n: int) -> str:
    return str(n) if n < 1000 else f"{n / 1000:.1f}".removesuffix(".0") + "k"


class StatusBar(Static):
    """One line, to fit 80 columns: model, mode, state, last reply's speed, context, MCP."""

    def show(self, s: Status) -> None:
        parts = [s.model, "think" if s.thinking else "no-think"]
        if s.loading or s.busy:
            waited = int(time.monotonic() - s.busy_since) if s.busy_since is not None else 0
            parts.append(s.loading or (f"{s.busy} {waited} s" if waited else s.busy))
        if s.asking:
            parts.append(f"{s.asking}… (Esc stops)")
        if s.ttft_s is not None:
            parts.append(f"TTFT {s.ttft_s * 1000:.0f}ms {s.decode_tps or 0:.0f} tok/s")
        if s.context_window:
            parts.append(f"ctx {_short(s.context_used)}/{_short(s.context_window)}"
                         f" cache {_short(s.cached_tokens)}")
        if s.unsaved:
            parts.append("UNSAVED")
        parts.append(f"MCP {s.servers_up}/{s.servers_total}"
                     + (f" {s.servers_note}" if s.servers_note else ""))
        self.update("  ".join(parts))


class ChatList(Vertical):
    """Saved chats, the latest first, one line each; selecting one resumes it. A header
    names the panel; with no chats, one line says how to make one."""

    EMPTY = "No saved chats yet. Send a message and it is kept here."

    def compose(self):
        yield Static("Chats · ctrl+b hides", classes="chats-header")
        yield ListView(id="chat-list")
        yield Static(self.EMPTY, id="chats-empty", classes="muted")

    @property
    def list(self) -> ListView:
        return self.query_one("#chat-list", ListView)

    def focus(self, scroll_visible: bool = True):
        self.list.focus(scroll_visible)
        return self

    async def fill(self, chats, current: int | None) -> None:
        view = self.list
        await view.clear()
        await view.extend(ListItem(Static(chat.title, markup=False), name=str(chat.id))
                          for chat in chats)
        ids = [c.id for c in chats]
        view.index = ids.index(current) if current in ids else (0 if ids else None)
        view.display = bool(chats)
        self.query_one("#chats-empty").display = not chats


class Welcome(Static):
    """The empty chat's first screen: the model and the mode, what to try, where help
    is. It goes when the first message is sent."""

    # Lines short enough for the chat beside the chat list (about 48 columns).
    EXAMPLES = ("Explain Python generators with an example.",
                "Draft a polite reply declining a meeting.",
                "/summarize ~/notes  (a file or a folder)")

    def __init__(self) -> None:
        super().__init__(id="welcome", markup=False)

    def show(self, s: Status, tools: bool) -> None:
        mode = ("Thinking on: it reasons first (ctrl+t: off)" if s.thinking
                else "Thinking off: it answers at once (ctrl+t: on)")
        tools_line = ["Tools ask before they run; ctrl+o lists them."] if tools else []
        self.update("\n".join([
            s.model,
            mode,
            "",
            "Try:",
            *(f"  {line}" for line in self.EXAMPLES),
            "",
            *tools_line,
            "@ attaches a resource · / a prompt or /think",
            "ctrl+p commands · F1 keys · ctrl+b saved chats",
        ]))
