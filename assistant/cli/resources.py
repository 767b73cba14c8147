"""``assistant tools resources|read|prompts|prompt`` and what ``ask --attach`` and
``ask --prompt`` take from a server: MCP resources and prompts on the command line.

Every bad input (an unknown server, URI or prompt, a missing or malformed argument) is
one ``UserError`` line and exit 2; binary resources are described by type and size,
never printed.
"""

from __future__ import annotations

import json
import sys

from assistant.cli.terminal import counted, printable, shorten
from assistant.errors import UserError


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    """``key=value`` words as prompt arguments; the value may hold further ``=``."""
    arguments: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"prompt argument {pair!r} is not key=value; write it as, "
                            "e.g., topic=rain (quote values with spaces)")
        if key in arguments:
            raise UserError(f"prompt argument {key!r} is given twice")
        arguments[key] = value
    return arguments


def split_ref(ref: str, what: str, form: str, example: str) -> tuple[str, str]:
    """``SERVER:REST`` (the rest may hold colons, as a URI does)."""
    server, sep, rest = ref.partition(":")
    if not sep or not server or not rest:
        raise UserError(f"{what} {ref!r} is not {form}; e.g. {example}")
    return server, rest


def choose(servers, name: str | None):
    """The configured servers, or only the one named (an unknown name is an error)."""
    if name is None:
        return servers
    chosen = [s for s in servers if s.name == name]
    if not chosen:
        names = ", ".join(s.name for s in servers) or "none"
        raise UserError(f"no MCP server named {name!r} (configured: {names})")
    return chosen


def ready(host, name: str):
    """The server's state, if it is up; else one line saying why not and where to look."""
    state = host.servers[name]
    if state.status == "ready":
        return state
    if state.status == "disabled":
        raise UserError(f"MCP server {name!r} is disabled in the config; remove its "
                        "\"disabled\" key to use it")
    from assistant.chat.tooling import server_problems

    line = next(iter(server_problems(host, skip=set(host.servers) - {name})), None)
    raise UserError(line or f"MCP server {name!r} is {state.status}: {state.error}")


def attachment(ref: str, text: str) -> str:
    """A resource's text framed for the model with where it came from. The text cannot
    close the frame early: a closing tag inside it is broken up, so it stays data."""
    inner = text.replace("</resource", "<\\/resource")
    return f"<resource uri={json.dumps(ref, ensure_ascii=False)}>\n{inner}\n</resource>"


def check_fits(engine, counter, messages: list[dict], attached) -> None:
    """Attached text counts against the context window: say so in one line when the
    prompt cannot fit, before any generation. The chat app asks the same before sending."""
    total = sum(counter.count(m["content"]) for m in messages)
    if total < engine.context_window:
        return
    sizes = ", ".join(f"{ref} {counter.count(text):,} tokens" for ref, text in attached)
    raise UserError(f"the attached text does not fit: the prompt is {total:,} tokens "
                    f"({sizes}) for a {engine.context_window:,}-token context window; attach "
                    "less or raise context_limit in the settings")


def _shown(text: str) -> str:
    """On a terminal, a server's text must not move the cursor or rewrite the screen:
    control characters are shown, not obeyed. Piped, it passes as it is."""
    if not sys.stdout.isatty():
        return text
    return printable(text)


def read_text(host, server: str, uri: str) -> str:
    """A resource as text for the model: its text parts, binary parts described."""
    from assistant.mcp.host import RequestFailed

    try:
        parts = host.read_resource(server, uri)
    except RequestFailed as exc:
        raise UserError(str(exc)) from None
    return "\n\n".join(p.text if p.text is not None else p.describe() for p in parts)


def prompt_messages(host, server: str, name: str, arguments: dict[str, str]):
    """A server's prompt filled in, after checking the arguments against its own list,
    so a missing or unknown one is named here rather than as a server's error."""
    from assistant.mcp.host import RequestFailed

    try:
        prompts = {p.name: p for p in host.prompts(server)}
        prompt = prompts.get(name)
        if prompt is None:
            raise UserError(f"{server} has no prompt {name!r} (it has: "
                            f"{', '.join(prompts) or 'none'})")
        known = {a.name for a in prompt.arguments}
        unknown = [k for k in arguments if k not in known]
        if unknown:
            raise UserError(f"{server}/{name} takes no argument {unknown[0]!r} (it takes: "
                            f"{', '.join(known) or 'none'})")
        missing = [a.name for a in prompt.arguments if a.required and a.name not in arguments]
        if missing:
            raise UserError(f"{server}/{name} needs {', '.join(f'{m}=…' for m in missing)}"
                            + _suggest(host, server, name, missing[0], arguments))
        return host.get_prompt(server, name, arguments)
    except RequestFailed as exc:
        raise UserError(str(exc)) from None


def _suggest(host, server: str, prompt: str, argument: str, known: dict[str, str]) -> str:
    """A few of the server's completions for a missing argument, if it offers them."""
    from assistant.mcp.host import RequestFailed

    try:
        values = host.complete(server, prompt, argument, "", known)
    except RequestFailed:
        return ""
    if not values:
        return ""
    more = ", …" if len(values) > 5 else ""
    return f" ({argument} could be: {', '.join(values[:5])}{more})"


def run(args, servers) -> int:
    from assistant.chat.tooling import server_noise
    from assistant.cli.mcp import servers_started

    command = args.tools_command
    if command == "prompt":  # a malformed argument fails before any server starts
        args.arguments = parse_pairs(args.arguments)
    chosen = choose(servers, getattr(args, "server", None))
    with servers_started(chosen) as host:
        if command == "resources":
            code = _resources(args, host)
        elif command == "read":
            code = _read(args, host)
        elif command == "prompts":
            code = _prompts(args, host)
        else:
            code = _prompt(args, host)
    for line in server_noise(host):
        print(f"assistant: {line}", file=sys.stderr)
    return code


def listed(host, method: str, single: str | None) -> dict[str, list]:
    """Each ready server's resources or prompts; with one server named, it must be up."""
    from assistant.mcp.host import RequestFailed

    found = {}
    for state in host.servers.values():
        name = state.config.name
        if single is not None:
            ready(host, name)
        elif state.status != "ready":
            continue
        try:
            found[name] = getattr(host, method)(name)
        except RequestFailed as exc:
            if single is not None:
                raise UserError(str(exc)) from None
            found[name] = []
    return found


def _resources(args, host) -> int:
    def row(r) -> str:
        kind = "template" if r.template else (r.mime_type or "")
        about = (r.description or "").strip().partition("\n")[0] or r.name
        row = f"    {r.uri:<36}{kind:<16}"
        return row + shorten(about, max(110 - len(row), 20))

    return _listing(args, listed(host, "resources", args.server), "resource", row,
                    lambda r: {"server": r.server, "uri": r.uri, "name": r.name,
                               "description": r.description, "mime_type": r.mime_type,
                               "size": r.size, "template": r.template})


def _read(args, host) -> int:
    from assistant.mcp.host import RequestFailed

    ready(host, args.server)
    try:
        parts = host.read_resource(args.server, args.uri)
    except RequestFailed as exc:
        raise UserError(str(exc)) from None
    for part in parts:
        print(_shown(part.text) if part.text is not None else _shown(part.describe()))
    return 0


def _prompts(args, host) -> int:
    def row(p) -> str:
        usage = " ".join(a.name + "=…" if a.required else f"[{a.name}=…]" for a in p.arguments)
        line = f"    {p.name} {usage}".rstrip()
        if p.description:
            line += "\n        " + shorten(p.description.strip().partition("\n")[0], 102)
        return line

    return _listing(args, listed(host, "prompts", args.server), "prompt", row,
                    lambda p: {"server": p.server, "name": p.name,
                               "description": p.description,
                               "arguments": [{"name": a.name, "description": a.description,
                                              "required": a.required} for a in p.arguments]})


def _listing(args, found: dict, noun: str, row, as_json) -> int:
    """What `tools resources` and `tools prompts` print: JSON, or a block per server."""
    if args.json:
        print(json.dumps([as_json(item) for items in found.values() for item in items],
                         indent=2, ensure_ascii=False))
        return 0
    for server, items in found.items():
        if args.server is None and not items:
            continue
        print(f"{server}: {counted(len(items), noun)}")
        for item in items:
            print(row(item))
    return 0


def _prompt(args, host) -> int:
    ready(host, args.server)
    for message in prompt_messages(host, args.server, args.name, args.arguments):
        print(f"[{message.role}]\n{_shown(message.text)}\n")
    return 0
