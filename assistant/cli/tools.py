"""``assistant tools …``: see, check and call the MCP servers from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from assistant.cli.terminal import counted, shorten
from assistant.errors import UserError
# Only the config module is imported up front: it is light, and the parser needs it.
# The host, the SDK and the engine load when a command runs, so `assistant` starts fast.
from assistant.mcp.config import claude_config_file, config_file, import_claude

LINE_WIDTH = 100  # a tool's row in `tools list`; its description is cut to fit


def add_parser(commands) -> None:
    tools = commands.add_parser("tools", help="list, check and call MCP servers' tools, "
                                "read their resources, fill in their prompts",
                                description="The MCP servers from mcp.json (Claude Desktop's "
                                "mcpServers format) and the built-in ones.")
    sub = tools.add_subparsers(dest="tools_command", required=True,
                               parser_class=type(tools))
    list_ = sub.add_parser("list", help="servers, their state, tools and token cost")
    list_.add_argument("--json", action="store_true",
                       help="print one JSON list: each server's state, tools and token cost")
    sub.add_parser("test", help="start each server, report handshake time and errors")
    call = sub.add_parser("call", help="call one tool directly")
    call.add_argument("server", metavar="SERVER", help="the server's name in mcp.json (see "
                      "assistant tools list)")
    call.add_argument("tool", metavar="TOOL", help="the tool's name (see assistant tools list)")
    call.add_argument("arguments", nargs="?", default="{}", help="a JSON object (default {})")
    call.add_argument("--timeout", type=float, help="seconds (default: the server's timeout)")
    call.add_argument("--json", action="store_true",
                      help="print one JSON object: ok, text, error, duration_s")
    resources = sub.add_parser("resources", help="the resources and resource templates "
                               "servers offer")
    resources.add_argument("server", nargs="?", help="only this server")
    resources.add_argument("--json", action="store_true", help="print one JSON list")
    read = sub.add_parser("read", help="print one resource (binary ones are described)")
    read.add_argument("server", metavar="SERVER", help="the server that offers the resource")
    read.add_argument("uri", help="e.g. notes:///ideas.md")
    prompts = sub.add_parser("prompts", help="the prompts servers offer, with their arguments")
    prompts.add_argument("server", nargs="?", help="only this server")
    prompts.add_argument("--json", action="store_true", help="print one JSON list")
    prompt = sub.add_parser("prompt", help="fill in one prompt and print its messages")
    prompt.add_argument("server", metavar="SERVER", help="the server that offers the prompt")
    prompt.add_argument("name", metavar="NAME", help="the prompt's name (see assistant tools "
                        "prompts)")
    prompt.add_argument("arguments", nargs="*", metavar="key=value",
                        help="the prompt's arguments, e.g. topic=rain")
    imp = sub.add_parser("import-claude", help="copy servers from Claude Desktop's config")
    imp.add_argument("path", nargs="?", type=Path,
                     help=f"Claude's config file (default {claude_config_file()})")
    sub.add_parser("approvals", help="the stored always/never choices")
    revoke = sub.add_parser("revoke", help="forget stored choices for a server or one tool")
    revoke.add_argument("server", metavar="SERVER", help="the server whose choices to forget")
    revoke.add_argument("tool", nargs="?", metavar="TOOL",
                        help="only this tool's choice (default: all of the server's)")
    login = sub.add_parser("login", help="log in to a remote server that uses OAuth "
                           "(opens the browser; tokens are kept in the config dir)")
    login.add_argument("server", metavar="SERVER", help="the remote server's name in mcp.json")
    login.add_argument("--no-browser", action="store_true",
                       help="print the login URL only, do not open a browser")
    logout = sub.add_parser("logout", help="forget a remote server's OAuth tokens")
    logout.add_argument("server", metavar="SERVER", help="the remote server's name in mcp.json")
    for p in (list_, sub.choices["test"], call, resources, read, prompts, prompt, login):
        p.add_argument("--mcp-config", type=Path, help=f"server config (default {config_file()})")


def run(args, settings) -> int:
    from assistant.chat.tooling import configured_servers, server_noise
    from assistant.cli.mcp import servers_started
    from assistant.mcp.catalog import Catalog

    command = args.tools_command
    if command == "import-claude":
        return _import(args)
    if command == "approvals":
        return _approvals()
    if command == "revoke":
        return _revoke(args)
    if command == "logout":
        return _logout(args)
    servers, problems = configured_servers(settings, args.mcp_config)
    for line in problems:
        print(f"assistant: {line}", file=sys.stderr)
    if command == "login":
        return _login(args, servers)
    if command == "call":
        return _call(args, servers)
    if command in ("resources", "read", "prompts", "prompt"):
        from assistant.cli import resources

        return resources.run(args, servers)
    with servers_started(servers) as host:
        states = list(host.servers.values())
        status = {s.config.name: s.status for s in states}  # before close() stops them
        catalog = Catalog(host.tools(), _counter(settings))
        costs = catalog.cost_by_server()
        offered = _offered(host)
    for line in server_noise(host):
        print(f"assistant: {line}", file=sys.stderr)
    if command == "test":
        return _test(states, status)
    if args.json:
        print(json.dumps([{
            "name": s.config.name, "transport": s.config.transport,
            "error": s.error, "state": status[s.config.name], "startup_s": s.startup_s, "trust": s.config.trust,
            "builtin": s.config.builtin, "tokens": costs.get(s.config.name, 0),
            "resources": offered.get(s.config.name, (None, None))[0],
            "prompts": offered.get(s.config.name, (None, None))[1],
            "log_file": str(s.log_file) if s.log_file else None,
            "tools": [{"name": t.name, "description": t.description, "read_only": t.read_only,
                       "destructive": t.destructive} for t in s.tools],
        } for s in states], indent=2, ensure_ascii=False))
        return 0
    for s in states:
        resources, prompts = offered.get(s.config.name, (0, 0))
        detail = ", ".join([counted(len(s.tools), "tool"), counted(resources, "resource"),
                            counted(prompts, "prompt"),
                            counted(costs.get(s.config.name, 0), "token")]) \
            if status[s.config.name] == "ready" else (s.error or "")
        flags = " trusted" if s.config.trust else ""
        print(f"{s.config.name:<14}{status[s.config.name]:<10}{s.config.transport:<7}{detail}{flags}")
        for t in s.tools:
            hint = "read-only" if t.read_only else ("destructive" if t.destructive else "")
            row = f"    {t.name:<22}{hint:<13}"
            about = (t.description or "").strip().partition("\n")[0]
            print(row + shorten(about, max(LINE_WIDTH - len(row), 20)))
    total = sum(costs.values())
    print(f"\ntool definitions: {counted(total, 'token')} in every prompt that offers them all")
    return 0


def _login(args, servers) -> int:
    """The browser flow for one remote server; the only place one ever starts."""
    import asyncio

    from assistant.mcp import oauth

    config = next((s for s in servers if s.name == args.server), None)
    if config is None:
        raise UserError(f"no MCP server named '{args.server}' (see assistant tools list)")
    if not config.url:
        raise UserError(f"MCP server '{config.name}' runs on this machine (stdio); "
                        "only remote (url) servers log in")
    try:
        asyncio.run(oauth.login(config, open_browser=not args.no_browser))
    except KeyboardInterrupt:
        raise UserError("login cancelled") from None
    except Exception as exc:  # the SDK's flow errors, a refused registration, no network
        from assistant.mcp.session import first_line

        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        raise UserError(f"could not log in to '{config.name}': {first_line(exc)}") from None
    print(f"logged in to '{config.name}'; tokens kept in {oauth.token_file(config.name)}")
    return 0


def _logout(args) -> int:
    from assistant.mcp import oauth

    if oauth.FileTokenStorage(args.server).forget():
        print(f"logged out of '{args.server}': its tokens are forgotten")
    else:
        print(f"no stored login for '{args.server}'")
    return 0


def _offered(host) -> dict[str, tuple[int, int]]:
    """Each ready server's (resources and templates, prompts) counts; a server that
    fails to list them counts none rather than failing the listing."""
    from assistant.mcp.host import RequestFailed

    counts = {}
    for name, state in host.servers.items():
        if state.status != "ready":
            continue
        found = []
        for method in (host.resources, host.prompts):
            try:
                found.append(len(method(name)))
            except RequestFailed:
                found.append(0)
        counts[name] = tuple(found)
    return counts


def _counter(settings):
    """Token counts need the model's tokenizer; without a local model (not downloaded, or
    on an inference server), they are estimated as the server backend estimates them."""
    from assistant.engine.model import resolve_model
    from assistant.engine.backends import is_remote
    from assistant.engine.remote import EstimatedCounter
    from assistant.tokens import counter_for

    if not is_remote(settings.model):
        try:
            return counter_for(resolve_model(settings.model, allow_download=False)).count
        except UserError:
            pass
    return EstimatedCounter().count


def _test(states, status) -> int:
    failed = 0
    for s in states:
        if status[s.config.name] == "ready":
            print(f"ok      {s.config.name:<14}{s.startup_s * 1000:7.0f} ms  "
                  f"{counted(len(s.tools), 'tool')}")
        elif status[s.config.name] == "disabled":
            print(f"off     {s.config.name:<14}disabled in the config")
        else:
            failed += 1
            log = f" (log: {s.log_file})" if s.log_file else ""
            print(f"FAILED  {s.config.name:<14}{s.error}{log}")
    return 1 if failed else 0


def _call(args, servers) -> int:
    from assistant.chat.tooling import server_noise
    from assistant.cli.mcp import servers_started
    from assistant.mcp.audit import AuditLog

    try:
        arguments = json.loads(args.arguments)
    except json.JSONDecodeError as exc:
        raise UserError(f"the arguments are not valid JSON ({exc.msg} at column {exc.colno}); "
                        "pass an object such as '{\"path\": \"todo.md\"}'") from None
    if not isinstance(arguments, dict):
        raise UserError("the arguments must be a JSON object, such as '{\"path\": \"todo.md\"}'")
    chosen = [s for s in servers if s.name == args.server]
    if not chosen:
        names = ", ".join(s.name for s in servers) or "none"
        raise UserError(f"no MCP server named {args.server!r} (configured: {names})")
    with servers_started(chosen) as host:
        from assistant.chat.resources import ready

        state = ready(host, args.server)
        if args.tool not in {t.name for t in state.tools}:
            names = ", ".join(t.name for t in state.tools)
            raise UserError(f"{args.server} has no tool {args.tool!r} (it has: {names})")
        from assistant.cli.mcp import terminal_elicitor
        from assistant.cli.terminal import ProgressLine

        host.elicit = terminal_elicitor(stdin_used=False)
        progress = ProgressLine()
        try:
            result = host.call(
                args.server, args.tool, arguments, args.timeout,
                lambda p: progress.show(f"{args.server}/{args.tool}: {p.describe()}"))
        finally:
            progress.clear()
    for line in server_noise(host):
        print(f"assistant: {line}", file=sys.stderr)
    AuditLog().record(server=args.server, tool=args.tool, arguments=arguments,
                      decision="user: tools call", duration_s=result.duration_s,
                      outcome="ok" if result.ok else "error",
                      result_bytes=len(result.text.encode()), error=result.error)
    if args.json:
        print(json.dumps({"ok": result.ok, "text": result.text, "error": result.error,
                          "duration_s": result.duration_s}, ensure_ascii=False))
    elif result.ok:
        print(result.text)
    else:
        print(f"assistant: {result.error}", file=sys.stderr)
    return 0 if result.ok else 1


def _import(args) -> int:
    source = args.path or claude_config_file()
    try:
        added, kept = import_claude(source)
    except ValueError as exc:
        raise UserError(f"cannot import: {exc}") from None
    print(f"imported {counted(len(added), 'server')} into {config_file()}: "
          f"{', '.join(added) or 'none'}")
    if kept:
        print(f"kept your own entries for: {', '.join(kept)}")
    return 0


def _approvals() -> int:
    from assistant.mcp.approval import ApprovalStore

    stored = ApprovalStore().all()
    if not stored:
        print("no stored approvals: every tool asks before it runs")
    for server, tools in sorted(stored.items()):
        for tool, choice in sorted(tools.items()):
            print(f"{server}/{tool}: {choice}")
    return 0


def _revoke(args) -> int:
    from assistant.mcp.approval import ApprovalStore

    store = ApprovalStore()
    tools = store.all().get(args.server, {})
    names = [args.tool] if args.tool else list(tools)
    if not any(n in tools for n in names):
        raise UserError(f"nothing stored for {args.server}{'/' + args.tool if args.tool else ''}"
                        "; assistant tools approvals lists what is")
    for name in names:
        store.set(args.server, name, None)
    print(f"revoked: {', '.join(f'{args.server}/{n}' for n in names)}; they will ask again")
    return 0

