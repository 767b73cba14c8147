"""The chat app's side of MCP resources and prompts: ``@`` attaches a resource to the next
message (a chip above the input), ``/`` picks a built-in command or a server's prompt.

A mixin of ``ChatApp``, so the app module stays about chatting. Server requests run in
workers, never in the App's own handlers: a server that starts lazily or answers only at
its timeout must not hold the keys. A picker opens at once with a line saying the servers
are being asked, and fills in when they answer; a read or a prompt shows in the status bar
while it waits, and Esc gives up on it (the late answer is ignored). Every failure is one
notice, and what the user typed stays in the input.
The text sent is framed exactly as ``assistant ask --attach`` frames it, and is checked
against the context window before anything is stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from textual.worker import Worker, get_current_worker

from assistant.errors import UserError
from assistant.tui.mcp_screens import (BUILTIN_COMMANDS, FormScreen, Field, PickerScreen,
                                       command_choices, fill_template, resource_choices,
                                       template_fields)


@dataclass(frozen=True)
class Attachment:
    server: str
    uri: str
    text: str  # binary parts already described, never their data
    tokens: int | None

    @property
    def ref(self) -> str:
        return f"{self.server}:{self.uri}"


class ResourcesAndPrompts:
    """Needs from the app: ``host``, ``engine``, ``history``, ``input``, ``busy``,
    ``_token_counter``, ``_system``, ``tools`` and ``send_messages``."""

    attachments: list[Attachment]
    _asking: list[tuple[Worker, str]]  # reads and prompts waiting on a server, with a line

    # -- asking the servers -------------------------------------------------------------

    def _listed(self, method: str) -> list:
        from assistant.chat.resources import listed

        if self.host is None:
            return []
        return [item for items in listed(self.host, method, None).values() for item in items]

    async def _off_thread(self, fn, *args, title: str):
        """``fn(*args)`` on a thread; a refusal is one notice and None."""
        try:
            return await asyncio.to_thread(fn, *args)
        except UserError as exc:
            self.notify(str(exc), title=title, severity="error", timeout=10)
        except Exception as exc:  # a server gone mid-request: a notice, not a crash
            self.notify(f"{type(exc).__name__}: {exc}", title=title, severity="error",
                        timeout=10)
        return None

    def _in_background(self, work, waiting: str) -> None:
        """Run the coroutine ``work`` as a worker, saying ``waiting`` in the status bar
        until it ends; Esc (``cancel_asking``) gives up on it."""
        worker = self.run_worker(self._saying(work), group="mcp-ask", exit_on_error=False)
        self._asking.append((worker, waiting))
        self._show_asking()

    async def _saying(self, work) -> None:
        try:
            await work
        except Exception as exc:  # never a crash, nor a silence: one notice
            self.notify(f"{type(exc).__name__}: {exc}", title="MCP request failed",
                        severity="error", timeout=10)
        finally:
            me = get_current_worker()
            self._asking = [(w, text) for w, text in self._asking if w is not me]
            self._show_asking()

    def _show_asking(self) -> None:
        self.status.asking = self._asking[-1][1] if self._asking else None
        self._show_status()

    def cancel_asking(self) -> bool:
        """Esc: stop waiting for the servers' answers to reads and prompts; whatever
        arrives later is dropped. True if something was waiting."""
        asking, self._asking = self._asking, []
        for worker, _ in asking:
            worker.cancel()
        self._show_asking()
        return bool(asking)

    # -- the triggers -------------------------------------------------------------------

    def on_chat_input_picker(self, event) -> None:
        if event.key == "@":
            self.pick_resource(typed="@")
        else:
            self.pick_command(typed="/")

    def _type_back(self, text: str) -> None:
        """A picker left with nothing: the key is typed after all."""
        self.input.insert(text)
        self.input.focus()

    async def action_attach_resource(self) -> None:
        self.pick_resource()

    async def action_use_prompt(self) -> None:
        self.pick_command()

    def _open_picker(self, screen: PickerScreen, method: str, rows, title: str,
                     picked) -> None:
        """Show ``screen`` now and fill it from the servers' ``method`` in a worker.
        Leaving the picker gives up on the answer; a failure is one notice, and the
        picker then closes as if left (``typed`` goes back) unless it has rows already."""

        async def fill() -> None:
            items = await self._off_thread(self._listed, method, title=title)
            if screen not in self.screen_stack:
                return  # left while the servers were asked
            if items is None and not screen.choices and self.screen is screen:
                screen.dismiss(None)
            else:
                screen.fill(rows(items or []))

        def left(choice) -> None:
            self.workers.cancel_group(self, "picker")
            picked(choice)

        self.push_screen(screen, left)
        self.run_worker(fill(), group="picker", exclusive=True, exit_on_error=False)

    # -- resources ----------------------------------------------------------------------

    def pick_resource(self, typed: str = "") -> None:
        if self.host is None:
            if typed:
                self._type_back(typed)
            else:
                from assistant.tui.screens import NO_SERVERS

                self.notify(NO_SERVERS, title="Attach a resource", timeout=10)
            return

        def picked(resource) -> None:
            if resource is None:
                if typed:
                    self._type_back(typed)
                return
            if resource.template:
                try:
                    fields = template_fields(resource.uri)
                except ValueError as exc:  # the server's template is malformed
                    self.notify(f"{resource.server}: {exc}", title="Cannot fill in",
                                severity="warning")
                    return
                self.push_screen(FormScreen(f"{resource.server}: {resource.name}",
                                            fields, resource.uri),
                                 lambda values: values is not None and self.attach(
                                     resource.server, fill_template(resource.uri, values)))
            else:
                self.attach(resource.server, resource.uri)

        screen = PickerScreen("Attach a resource", [],
                              empty="None of the running servers offers resources; "
                              "Esc goes back.", widths=(9, 10, 30, 10),
                              waiting="Asking the servers for their resources… "
                              "(Esc goes back)")
        self._open_picker(screen, "resources", resource_choices, "Resources", picked)

    def attach(self, server: str, uri: str) -> None:
        """Read the resource in a worker and show it as a chip; it goes with the next
        message."""
        self._in_background(self._attach(server, uri), f"reading {server}:{uri}")

    async def _attach(self, server: str, uri: str) -> Attachment | None:
        from assistant.chat.resources import read_text

        ref = f"{server}:{uri}"
        if any(a.ref == ref for a in self.attachments):
            self.notify(f"{ref} is attached already.", title="Attach a resource")
            return None
        text = await self._off_thread(read_text, self.host, server, uri, title="Not attached")
        if text is None:
            return None
        tokens = None
        if self.engine is not None:
            tokens = await asyncio.to_thread(self._token_counter().count, text)
        if any(a.ref == ref for a in self.attachments):  # attached meanwhile
            return None
        attachment = Attachment(server, uri, text, tokens)
        self.attachments.append(attachment)
        self.call_later(self._show_chips)
        self.input.focus()
        return attachment

    def on_tool_card_attach_links(self, event) -> None:
        """The resources a tool's result links to, read from that tool's server."""

        async def each() -> None:
            for uri in event.uris:
                await self._attach(event.server, uri)

        self._in_background(each(), f"reading {event.server}'s linked resources")

    async def on_attachment_chip_removed(self, event) -> None:
        self.attachments = [a for a in self.attachments if a.ref != event.ref]
        await self._show_chips()
        self.input.focus()

    async def _show_chips(self) -> None:
        from assistant.tui.widgets import AttachmentBar

        await self.query_one(AttachmentBar).show(self.attachments)

    def with_attachments(self, text: str) -> str:
        """The user's text after the attached resources, framed as ``ask --attach`` does."""
        from assistant.chat.resources import attachment

        return "\n\n".join([*(attachment(a.ref, a.text) for a in self.attachments),
                            *([text] if text else [])])

    async def _refused(self, messages: list[dict]) -> str | None:
        """Why the new messages cannot be sent with what is attached, or None."""
        if not self.attachments:
            return None
        if self.engine is None:
            return "the model is still loading; send once it is up"
        from assistant.chat.resources import check_fits

        whole = self._system(self.tools) + self.history + messages
        try:
            await asyncio.to_thread(check_fits, self.engine, self._token_counter(), whole,
                                    [(a.ref, a.text) for a in self.attachments])
        except UserError as exc:
            return str(exc)
        return None

    async def send_attached(self, text: str) -> None:
        """Send the user's text with the attachments, if they fit; else say why and keep
        the text in the input and the chips above it."""
        message = {"role": "user", "content": self.with_attachments(text)}
        problem = await self._refused([message])
        if problem:
            self._keep(text)
            self.notify(problem[0].upper() + problem[1:] + ".", title="Not sent",
                        severity="error", timeout=15)
            return
        refs = ", ".join(a.ref for a in self.attachments)
        await self._sent_with_attachments(
            [message], f"{text}\n[attached: {refs}]".strip(), typed=text)

    async def _sent_with_attachments(self, messages: list[dict], shown: str,
                                     typed: str) -> None:
        """Send; the chips come off only once the messages are stored (if the store
        refuses them, the chips stay and ``typed`` is back in the input)."""
        if await self.send_messages(messages, shown, typed):
            self.attachments = []
            await self._show_chips()

    def _keep(self, text: str) -> None:
        if not self.input.text.strip():
            self.input.text = text
            self.input.move_cursor(self.input.document.end)

    # -- commands and prompts -----------------------------------------------------------

    def pick_command(self, typed: str = "") -> None:
        def picked(choice) -> None:
            if choice is None:
                if typed:
                    self._type_back(typed)
                return
            kind, value = choice
            if kind == "builtin":
                self._type_back(value)
            else:
                self.use_prompt(value)

        # The built-in commands are there at once; the servers' prompts join them.
        screen = PickerScreen("Commands and prompts", command_choices([]), query="",
                              widths=(14, 9, 40),
                              waiting=None if self.host is None else
                              "Asking the servers for their prompts… (Esc goes back)")
        self._open_picker(screen, "prompts", lambda prompts: command_choices(prompts)[
            len(BUILTIN_COMMANDS):], "Prompts", picked)

    def use_prompt(self, prompt, values: dict[str, str] | None = None) -> None:
        """A prompt without arguments runs at once; with some, the form asks first (with
        the server's suggestions, asked in the same worker)."""
        what = f"asking {prompt.server} for /{prompt.name}"
        self._in_background(self._use_prompt(prompt, values), what)

    async def _use_prompt(self, prompt, values: dict[str, str] | None) -> None:
        if prompt.arguments and values is None:
            fields = await asyncio.to_thread(self._prompt_fields, prompt)

            def filled(answer) -> None:
                if answer is not None:
                    self.use_prompt(prompt, answer)

            self.push_screen(FormScreen(f"{prompt.server}: /{prompt.name}", fields,
                                        prompt.description or ""), filled)
            return
        from assistant.chat.resources import prompt_messages

        got = await self._off_thread(prompt_messages, self.host, prompt.server, prompt.name,
                                     values or {}, title="Prompt failed")
        if got is None:
            return
        # The server has answered: sending is not a wait on it, so Esc no longer drops it.
        self.call_later(self._send_prompt, prompt, values, got)

    async def _send_prompt(self, prompt, values: dict[str, str] | None, got) -> None:
        messages = [{"role": m.role, "content": m.text} for m in got]
        if self.attachments:
            messages.append({"role": "user", "content": self.with_attachments("")})
        if not messages or messages[-1]["role"] != "user":
            self.notify(f"{prompt.server}/{prompt.name} ends with the assistant's turn; "
                        "type your own question and send it.", title="Prompt not sent",
                        severity="error", timeout=10)
            return
        problem = await self._refused(messages)
        if problem:
            self.notify(problem[0].upper() + problem[1:] + ".", title="Not sent",
                        severity="error", timeout=15)
            return
        shown = f"/{prompt.name} " + " ".join(f"{k}={v}" for k, v in (values or {}).items())
        await self._sent_with_attachments(messages, shown.strip(), typed="")

    def _prompt_fields(self, prompt) -> list[Field]:
        """The form's boxes, with the server's suggestions where it offers completions."""
        fields = []
        for argument in prompt.arguments:
            try:
                values = self.host.complete(prompt.server, prompt.name, argument.name, "", {})
            except Exception:  # no completions, or a server that fails them: no suggestions
                values = []
            fields.append(Field(argument.name, argument.description or "",
                                argument.required, tuple(values or ())))
        return fields
