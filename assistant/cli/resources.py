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
from assistant.chat.resources import listed, prompt_messages, ready


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


def _shown(text: str) -> str:
    """On a terminal, a server's text must not move the cursor or rewrite the screen:
    control characters are shown, not obeyed. Piped, it passes as it is."""
    if not sys.stdout.isatty():
        return text
    return printable(text)


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
