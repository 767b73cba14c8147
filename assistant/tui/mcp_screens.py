"""What the chat app offers of a server beyond its tools: a picker for its resources (``@``)
and for the built-in commands and its prompts (``/``), and a small form for a prompt's
arguments or a resource template's variables.

Names, descriptions and URIs come from servers, so they are shown as plain text, never
markup. The screens only choose; the app reads the resource or fills in the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

# What ``/`` offers before any server's prompts: (command, what it does, text it puts in
# the input). /think and /no_think are Qwen3's soft switches, read from the message.
BUILTIN_COMMANDS = (
    ("/think", "think before answering this message", "/think "),
    ("/no_think", "answer this message directly", "/no_think "),
    ("/summarize", "summarize a file or folder: /summarize PATH", "/summarize "),
)


@dataclass(frozen=True)
class Choice:
    """One row of a picker: what is shown, what it filters on, and what it stands for."""
    columns: tuple[str, ...]
    value: object
    search: str = ""


@dataclass(frozen=True)
class Field:
    """One box of a form: a prompt's argument or a template's variable."""
    name: str
    description: str = ""
    required: bool = True
    suggestions: tuple[str, ...] = field(default=())


def resource_choices(resources) -> list[Choice]:
    """The picker's rows for ``ResourceInfo`` items of every running server."""
    rows = []
    for r in resources:
        kind = "template" if r.template else (r.mime_type or "")
        rows.append(Choice((r.server, r.name, r.uri, kind), r,
                           " ".join((r.server, r.name, r.uri, r.description or "")).lower()))
    return rows


def command_choices(prompts) -> list[Choice]:
    """The built-in commands, then each server's prompts, for the ``/`` picker."""
    rows = [Choice((name, "", about), ("builtin", text), name.lower())
            for name, about, text in BUILTIN_COMMANDS]
    for p in prompts:
        usage = " ".join(a.name if a.required else f"[{a.name}]" for a in p.arguments)
        about = (p.description or "").strip().splitlines()[0] if p.description else ""
        rows.append(Choice((f"/{p.name}", p.server, f"{usage}  {about}".strip()),
                           ("prompt", p), f"/{p.name} {p.server} {about}".lower()))
    return rows


def template_fields(template: str) -> list[Field]:
    """The variables of a URI template, each a required box, in order of appearance.
    Raises ``ValueError`` for a template the server got wrong."""
    return [Field(name) for name in _uri_template(template).variable_names]


def fill_template(template: str, values: dict[str, str]) -> str:
    """The URI with the variables filled in, as RFC 6570 expands them (the MCP SDK's
    ``UriTemplate``: a ``{+path}`` keeps its slashes, ``{?q}`` becomes a query)."""
    return _uri_template(template).expand(values)


def _uri_template(template: str):
    # Imported here: the SDK loads with the first server, never before the first frame.
    from mcp.shared.uri_template import UriTemplate

    return UriTemplate.parse(template)


class PickerScreen(ModalScreen):
    """A list that narrows as the user types: Enter picks the highlighted row, Esc
    leaves with nothing. Up and Down move in the list while the filter keeps the focus.

    With ``waiting``, the servers are still being asked: that line ends the list until
    ``fill`` adds their rows, and the user can already filter, pick what is there, or
    leave."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False),
                Binding("down", "move(1)", show=False, priority=True),
                Binding("up", "move(-1)", show=False, priority=True)]

    def __init__(self, title: str, choices: list[Choice], *, query: str = "",
                 empty: str = "Nothing to pick.", widths: tuple[int, ...] = (),
                 waiting: str | None = None) -> None:
        super().__init__()
        self.title_text, self.choices, self.query_text = title, list(choices), query
        self.empty, self.widths, self.waiting = empty, widths, waiting
        self.shown: list[Choice] = []

    def fill(self, choices: list[Choice]) -> None:
        """The servers' rows have come: they join the list, filtered as typed so far."""
        self.choices, self.waiting = self.choices + list(choices), None
        if self.is_mounted:
            self.refill(self.query_one(Input).value)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog picker"):
            yield Label(self.title_text, classes="dialog-title")
            yield Input(self.query_text, placeholder="type to filter", id="picker-filter")
            yield OptionList(id="picker-list")
            yield Static("↑↓ move · Enter picks · Esc cancels", classes="muted")

    def on_mount(self) -> None:
        self.refill(self.query_text)
        self.query_one(Input).focus()

    def _row(self, choice: Choice) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for index, column in enumerate(choice.columns):
            width = self.widths[index] if index < len(self.widths) else 0
            column = column.replace("\n", " ")
            if width:
                column = (column[:width - 1] + "…") if len(column) > width else column
                column = column.ljust(width)
            text.append(column + " ", style="dim" if index == len(choice.columns) - 1
                        else "")
        return text

    def refill(self, query: str) -> None:
        words = query.lower().split()
        self.shown = [c for c in self.choices if all(w in c.search for w in words)]
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([Option(self._row(c)) for c in self.shown])
        if self.waiting is not None:
            options.add_option(Option(Text(self.waiting, style="dim italic"), disabled=True))
        elif not self.shown:
            line = self.empty if not self.choices else \
                "Nothing matches; Backspace widens the filter, Esc goes back."
            options.add_option(Option(Text(line, style="dim"), disabled=True))
        if self.shown:
            options.highlighted = 0

    def on_input_changed(self, event: Input.Changed) -> None:
        self.refill(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._pick(self.query_one(OptionList).highlighted)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._pick(event.option_index)

    def _pick(self, index: int | None) -> None:
        if index is not None and 0 <= index < len(self.shown):
            self.dismiss(self.shown[index].value)

    def action_move(self, step: int) -> None:
        options = self.query_one(OptionList)
        if self.shown:
            current = options.highlighted or 0
            options.highlighted = max(0, min(len(self.shown) - 1, current + step))

    def action_cancel(self) -> None:
        self.dismiss(None)


class FormScreen(ModalScreen):
    """One box per field, required ones marked ``*``; a server's suggestions show under
    the box and complete inline (→ takes one). Enter in a box moves on; in the last one,
    or on Send, the form answers with ``{name: value}`` for the boxes filled in."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, title: str, fields: list[Field], about: str = "") -> None:
        super().__init__()
        self.title_text, self.fields, self.about = title, fields, about

    def compose(self) -> ComposeResult:
        from textual.widgets import Button

        with Vertical(classes="dialog form"):
            yield Label(self.title_text, markup=False, classes="dialog-title")
            if self.about:
                yield Static(self.about, markup=False, classes="muted")
            with VerticalScroll(classes="arguments"):
                for index, f in enumerate(self.fields):
                    yield Label(f"{f.name}{' *' if f.required else ''}", markup=False,
                                classes="field-label" + (" first" if not index else ""))
                    if f.description:
                        yield Static(f.description, markup=False, classes="muted")
                    suggester = (SuggestFromList(f.suggestions, case_sensitive=False)
                                 if f.suggestions else None)
                    yield Input(id=f"form-{index}", suggester=suggester, compact=True,
                                placeholder="required" if f.required else "optional")
                    if f.suggestions:
                        more = ", …" if len(f.suggestions) > 6 else ""
                        yield Static("could be: " + ", ".join(f.suggestions[:6]) + more,
                                     markup=False, classes="muted")
            yield Static("", id="form-problem", classes="warning")
            yield Button("Send", id="form-send", variant="success")
            yield Static("Tab or Enter moves · Esc cancels", classes="muted")

    def on_mount(self) -> None:
        if self.fields:
            self.query_one("#form-0", Input).focus()
        else:
            self.query_one("#form-send").focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        last = f"form-{len(self.fields) - 1}"
        if event.input.id == last:
            self._send()
        else:
            self.focus_next()

    def on_button_pressed(self, event) -> None:
        event.stop()
        self._send()

    def _send(self) -> None:
        values = {}
        for index, f in enumerate(self.fields):
            value = self.query_one(f"#form-{index}", Input).value
            if not value.strip():
                if f.required:
                    self.query_one("#form-problem", Static).update(f"{f.name} is required")
                    self.query_one(f"#form-{index}", Input).focus()
                    return
                continue
            values[f.name] = value
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)
