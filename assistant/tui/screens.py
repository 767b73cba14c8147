"""Modal screens: tool approval, a server's question (elicitation), the tools overview, a
one-line prompt; the model panel."""

from __future__ import annotations

import json

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Button, DataTable, Input, Label, Static

# The answers ``assistant.mcp.approval.Approvals.remember`` understands, in the order
# the buttons stand: Deny first, where the focus starts.
APPROVAL_CHOICES = (("deny", "Deny", "primary"), ("once", "Once", "default"),
                    ("chat", "This chat", "default"), ("always", "Always", "warning"))


# The tools overview, the resource picker and the start notice with no server running.
NO_SERVERS = ("No MCP servers running. Add one to mcp.json in the config directory "
              "(README, Tools) and start again without --no-tools.")


class ApprovalScreen(ModalScreen[str]):
    """Shows the full arguments of a tool call and asks whether it may run.

    It can appear while the user is typing the next message, so nothing typed can allow
    a call: the buttons wake only after ``ARM_DELAY`` seconds without a key press (keys
    before that are dropped; Esc still denies), letters do nothing, Enter takes the
    focused button and the focus starts on Deny. Allowing is Tab to a button and Enter,
    or a click on it.
    """

    # Seconds of quiet before the buttons count; careful browsers wait about a second
    # before a permission dialog takes input.
    ARM_DELAY = 1.0
    BINDINGS = [Binding("escape", "deny", "Deny", show=False)]

    def __init__(self, server: str, tool: str, arguments: dict, *, read_only: bool | None,
                 description: str = "") -> None:
        super().__init__()
        self.server, self.tool, self.arguments = server, tool, arguments
        self.read_only, self.description = read_only, description
        self.armed = False
        self._arming: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="approval", classes="dialog"):
            # The names come from the server: as markup, one could hold a clickable action.
            yield Label(f"Allow {self.server}/{self.tool} to run?", markup=False,
                        classes="dialog-title")
            if self.description:
                yield Static(self.description.strip().splitlines()[0], markup=False,
                             classes="muted")
            if self.read_only is not True:
                yield Static("This tool may change things.", classes="warning")
            with VerticalScroll(classes="arguments"):
                yield Static(json.dumps(self.arguments, indent=2, ensure_ascii=False),
                             markup=False)
            with Horizontal(classes="buttons"):
                for choice, label, variant in APPROVAL_CHOICES:
                    yield Button(label, id=f"choice-{choice}", variant=variant, disabled=True)
            yield Static("Tab moves · Enter chooses · Esc denies", classes="muted")

    def on_mount(self) -> None:
        if self.ARM_DELAY > 0:
            self._arming = self.set_timer(self.ARM_DELAY, self._arm)
        else:
            self._arm()

    def on_key(self, event: events.Key) -> None:
        if not self.armed and event.key != "escape":
            # Typed ahead, not an answer: drop it and wait for quiet again.
            event.stop()
            event.prevent_default()
            if self._arming is not None:
                self._arming.reset()

    def _arm(self) -> None:
        self.armed = True
        for button in self.query(Button):
            button.disabled = False
        self.query_one("#choice-deny", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id.removeprefix("choice-"))

    def action_deny(self) -> None:
        # The only action here: no key binding or markup action can name an approval.
        self.dismiss("deny")


class ToolsScreen(ModalScreen[str | None]):
    """The MCP servers with their state and tools, and the stored approvals. ``a``
    leaves it for the resource picker (it answers "attach")."""

    BINDINGS = [Binding("escape,q", "close", "Close"),
                Binding("r,delete", "revoke", "Revoke stored choice"),
                Binding("a", "attach", "Attach a resource")]

    def __init__(self, servers: list, store) -> None:
        super().__init__()
        self.servers, self.store = servers, store  # ServerState list, ApprovalStore

    def compose(self) -> ComposeResult:
        with Vertical(id="tools", classes="dialog"):
            yield Label("Tools", classes="dialog-title")
            with VerticalScroll(id="servers"):
                if not self.servers:
                    yield Static(NO_SERVERS, markup=False, classes="muted")
                for state in self.servers:
                    tools = ", ".join(t.name for t in state.tools) or "no tools"
                    problem = f" — {state.error}" if state.error else ""
                    yield Static(f"{state.config.name} · {state.status}{problem}\n  {tools}",
                                 markup=False, classes=f"server {state.status}")
            yield Label("Stored approvals (r to revoke the selected one)")
            yield DataTable(id="approvals", cursor_type="row", zebra_stripes=True)
            yield Static("None stored. Choose Always when a tool asks to run, and it runs "
                         "from then on without asking; it is listed here to revoke.",
                         id="no-approvals", classes="muted")
            yield Static("Esc closes", classes="muted")

    def on_mount(self) -> None:
        table = self.query_one("#approvals", DataTable)
        table.add_columns("server", "tool", "choice")
        self.refill()

    def refill(self) -> None:
        table = self.query_one("#approvals", DataTable)
        table.clear()
        for server, tools in sorted(self.store.all().items()):
            for tool, choice in sorted(tools.items()):
                # Text, not markup: the names come from servers.
                table.add_row(Text(server), Text(tool), choice, key=f"{server}\0{tool}")
        # An empty table would show only its header: one line says what fills it.
        table.display = bool(table.row_count)
        self.query_one("#no-approvals").display = not table.row_count

    def action_revoke(self) -> None:
        table = self.query_one("#approvals", DataTable)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        server, tool = key.split("\0")
        self.store.set(server, tool, None)
        self.refill()
        self.notify(f"{server}/{tool} will ask again", title="Approval revoked")

    def action_close(self) -> None:
        self.dismiss(None)

    def action_attach(self) -> None:
        self.dismiss("attach")


class PromptScreen(ModalScreen[str | None]):
    """One line of input: a model to switch to, a chat's new title."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.prompt_title, self.value, self.placeholder = title, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog prompt"):
            yield Label(self.prompt_title, classes="dialog-title")
            yield Input(self.value, placeholder=self.placeholder)
            yield Static("Enter to confirm · Esc to cancel", classes="muted")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ModelProblem(Static):
    """In place of the conversation when the model cannot be loaded."""

    def __init__(self, error: str, model: str) -> None:
        fetch = ("" if model.startswith(("/", ".", "~")) or "/" not in model
                 else f"  • download it while online:  hf download {model}\n")
        fix = (f"How to fix it:\n{fetch}"
               "  • start with a model directory:  assistant --model DIR\n"
               "  • or switch model now: ctrl+p → Switch model")
        super().__init__(f"The model could not be loaded\n\n{error}\n\n{fix}", markup=False,
                         id="model-problem")


class ElicitScreen(ModalScreen):
    """A server's question during a tool call: a form built from its schema, or a page to
    open. It answers with an ``assistant.mcp.elicit.Answer``: accept (with the values),
    decline or cancel (Esc).

    Everything shown comes from the server, so it is plain text, never markup. A form
    field is a text box (numbers checked as typed), a switch for yes/no, or a list of
    choices; Enter in a box moves on and never sends. A page opens in the browser only
    when the user presses Open, which starts out of focus (Decline has it).
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, request) -> None:
        super().__init__()
        self.request = request  # assistant.mcp.elicit.Elicitation

    def compose(self) -> ComposeResult:
        from textual.widgets import Select, Switch

        request = self.request
        with Vertical(id="elicit", classes="dialog"):
            title = (f"{request.server} asks you to open a page" if request.url
                     else f"{request.server} asks")
            yield Label(title, markup=False, classes="dialog-title")
            yield Static(request.message, markup=False)
            if request.url:
                yield Static(request.url, markup=False, id="elicit-url", classes="warning")
            with VerticalScroll(classes="arguments"):
                for index, field in enumerate(request.fields):
                    mark = "" if not field.required else " *"
                    yield Label(f"{field.title}{mark}", markup=False)
                    if field.description:
                        yield Static(field.description, markup=False, classes="muted")
                    ident = f"field-{index}"
                    if field.kind == "boolean":
                        yield Switch(value=bool(field.default), id=ident)
                    elif field.kind == "enum":
                        yield Select([(label, value) for label, value
                                      in zip(field.labels, field.choices)],
                                     value=field.default if field.default is not None
                                     else Select.NULL, id=ident)
                    else:
                        kind = {"integer": "integer", "number": "number"}.get(field.kind, "text")
                        default = "" if field.default is None else str(field.default)
                        yield Input(default, type=kind, id=ident)
            yield Static("", id="elicit-problem", classes="warning")
            with Horizontal(classes="buttons"):
                yield Button("Decline", id="elicit-decline", variant="primary")
                yield Button("Open" if request.url else "Accept", id="elicit-accept",
                             variant="warning" if request.url else "success")
                yield Button("Cancel", id="elicit-cancel")
            yield Static("Tab moves · Esc cancels", classes="muted")

    def on_mount(self) -> None:
        self.call_after_refresh(self._focus_first)

    def _focus_first(self) -> None:
        if self.request.url or not self.request.fields:
            self.query_one("#elicit-decline", Button).focus()
        else:
            self.query_one("#field-0").focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        from assistant.mcp.elicit import CANCEL, DECLINE, Answer

        choice = event.button.id.removeprefix("elicit-")
        if choice == "decline":
            self.dismiss(DECLINE)
        elif choice == "cancel":
            self.dismiss(CANCEL)
        elif self.request.url:
            import webbrowser

            try:
                webbrowser.open(self.request.url)
            except Exception:  # no browser here: the URL is on screen to copy
                pass
            self.dismiss(Answer("accept"))
        else:
            content, problem = self.values()
            if problem:
                index, line = problem
                self.query_one("#elicit-problem", Static).update(line)
                self.query_one(f"#field-{index}").focus()  # where to fix it
            else:
                self.dismiss(Answer("accept", content))

    def values(self) -> tuple[dict, tuple[int, str] | None]:
        """The form's values, or the first problem with them: its field, and a line."""
        from textual.widgets import Select, Switch

        from assistant.mcp.elicit import parse

        content = {}
        for index, field in enumerate(self.request.fields):
            widget = self.query_one(f"#field-{index}")
            if isinstance(widget, Switch):
                value = widget.value
            elif isinstance(widget, Select):
                value = None if widget.value is Select.NULL else widget.value
            else:
                try:
                    value = parse(field, widget.value)
                except ValueError as exc:
                    return {}, (index, f"{field.title}: {exc}")
            if value is None and field.required:
                return {}, (index, f"{field.title} is required")
            if value is not None:
                content[field.name] = value
        return content, None

    def action_cancel(self) -> None:
        from assistant.mcp.elicit import CANCEL

        self.dismiss(CANCEL)
