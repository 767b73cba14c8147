"""What the MCP servers show and ask on the terminal, for ``ask`` and ``tools …``: one
line on stderr while servers start or a call runs, and a server's questions to the user
(elicitation) asked field by field. Without a terminal, nothing is shown and every
question is declined: nobody is there to answer it.
"""

from __future__ import annotations

import select
import sys
import threading
from contextlib import contextmanager

from assistant.cli.terminal import ProgressLine, drop_typed_ahead, open_terminal, printable
from assistant.mcp.elicit import CANCEL, DECLINE, Answer, Elicitation, Field, parse
from assistant.mcp.toolinfo import resource_links


@contextmanager
def servers_started(servers, stream=None):
    """The host with ``servers`` started (each ready or failed), closed at the end. Servers
    can take seconds to start: on a terminal one stderr line says how many are up so far
    and which are still awaited, cleared when all are."""
    from assistant.chat.tooling import start_host

    host = start_host(servers, wait=False)
    try:
        line = ProgressLine(stream)
        waited = [s for s in host.servers.values() if s.status == "starting"]
        try:
            shown = None
            while line.live and waited:
                if _starting(waited) != shown:
                    shown = _starting(waited)
                    line.show(shown)
                if host.wait_all(timeout=0.25):
                    break
            host.wait_all()
        finally:
            line.clear()
        yield host
    finally:
        host.close()


def _starting(waited) -> str:
    ready = [s.config.name for s in waited if s.status == "ready"]
    failed = sum(s.status == "failed" for s in waited)
    left = [s.config.name for s in waited if s.status == "starting"]
    servers = "server" if len(waited) == 1 else "servers"
    return (f"starting {len(waited)} {servers}… {len(ready)}/{len(waited)} ready"
            + (f", {failed} failed" if failed else "")
            + (f" (waiting for {', '.join(left)})" if left else ""))


def link_lines(server: str | None, result: str) -> list[str]:
    """For each resource link in a tool's result, a line that shows it and how to read it
    into the next question (``ask --attach SERVER:URI``)."""
    if not server:
        return []
    return [_printable_line(f"[tool]   {text[1:-1]}; attach it with --attach {server}:{uri}")
            for text, uri in resource_links(result)]


def _printable_line(text: str) -> str:
    return printable(text).replace("\n", " ")


def terminal_elicitor(stdin_used: bool):
    """Ask a server's question on the terminal (stderr and the keyboard); decline without
    one. A form asks field by field, checks each answer, and sends only after a final
    yes; a page opens in the browser only on a yes. Ctrl+D cancels. When the call's time
    runs out (``given_up``), the question is abandoned."""
    asking = threading.Lock()  # one question at a time on one terminal

    def elicit(request: Elicitation, given_up: threading.Event) -> Answer:
        with asking:
            tty = open_terminal(stdin_used)
            if tty is None:
                return DECLINE
            try:
                drop_typed_ahead(tty)
                if request.url:
                    return _ask_url(request, tty, given_up)
                return _ask_form(request, tty, given_up)
            except (OSError, UnicodeDecodeError):  # a terminal gone, or bytes that are no text
                return CANCEL
            finally:
                if tty is not sys.stdin:
                    tty.close()

    return elicit


def _say(text: str) -> None:
    sys.stderr.write(printable(text))
    sys.stderr.flush()


def _read(tty, given_up: threading.Event) -> str | None:
    """A line typed, or None at the end of input or once the call gave up."""
    while not given_up.is_set():
        ready, _, _ = select.select([tty], [], [], 0.2)
        if ready:
            line = tty.readline()
            if not line:  # Ctrl+D: what follows starts on a line of its own
                sys.stderr.write("\n")
                return None
            return line
    _say("\n(the call's time ran out)\n")
    return None


def _ask_url(request: Elicitation, tty, given_up) -> Answer:
    _say(f"\n{request.server} asks you to open a page: {request.message}\n  {request.url}\n")
    sys.stderr.write("Open it in your browser? [y] yes  [N] no: ")
    sys.stderr.flush()
    line = _read(tty, given_up)
    if line is None:
        return CANCEL
    if line.strip().lower() not in ("y", "yes"):
        return DECLINE
    import webbrowser

    try:
        opened = webbrowser.open(request.url)
    except Exception:
        opened = False
    if not opened:
        _say("No browser could be opened; open the address above yourself.\n")
    return Answer("accept")


def _ask_form(request: Elicitation, tty, given_up) -> Answer:
    _say(f"\n{request.server} asks: {request.message}\n")
    sys.stderr.write("(Enter leaves a field empty or takes its default; Ctrl+D cancels)\n")
    content = {}
    for field in request.fields:
        while True:
            sys.stderr.write(_question(field))
            sys.stderr.flush()
            line = _read(tty, given_up)
            if line is None:
                return CANCEL
            try:
                value = parse(field, line)
            except ValueError as exc:
                _say(f"  {exc}\n")
                continue
            if value is None:
                value = field.default
            if value is None and field.required:
                sys.stderr.write("  this one is required\n")
                continue
            break
        if value is not None:
            content[field.name] = value
    sys.stderr.write(f"Send these answers to {request.server}? [y] yes  [N] no: ")
    sys.stderr.flush()
    line = _read(tty, given_up)
    if line is None:
        return CANCEL
    return Answer("accept", content) if line.strip().lower() in ("y", "yes") else DECLINE


def _question(field: Field) -> str:
    hint = {"integer": "a whole number", "number": "a number", "boolean": "y/n"}.get(field.kind)
    if field.kind == "enum":
        hint = " ".join(f"[{i}] {label}" for i, label in enumerate(field.labels, 1))
    about = "; ".join(x for x in (field.description, hint,
                                  "required" if field.required else "") if x)
    shown = {True: "yes", False: "no"}.get(field.default, field.default) \
        if isinstance(field.default, bool) else field.default
    default = "" if shown is None else f" [{shown}]"
    return printable(f"  {field.title}{f' ({about})' if about else ''}{default}: ")
