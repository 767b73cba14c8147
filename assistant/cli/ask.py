"""``assistant ask``: one answer on stdout, reasoning and tool activity on stderr.

A thin consumer of the engine's event stream; user errors are one line and exit 2.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from assistant.cli.terminal import (ProgressLine, download_progress, drop_typed_ahead,
                                    open_terminal, printable)
from assistant.errors import EXIT_INTERRUPTED, UserError

EXIT_FAILED = 1
# What `ask --json` prints, in this order; --help and the README list the same keys.
JSON_KEYS = ("answer", "thinking", "finish_reason", "model", "adapter", "tool_calls", "stats")


def read_prompt(arg: str | None) -> str:
    if arg is None and sys.stdin.isatty():
        raise UserError("no prompt given: use assistant ask \"...\" or pipe text into "
                        "assistant ask -")
    if arg is None or arg == "-":
        data = sys.stdin.buffer.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"stdin is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                            f"{exc.start}); convert it first, e.g. with iconv -t UTF-8") from None
    else:
        text = arg
    if not text.strip():
        raise UserError("the prompt is empty: say what you want to ask")
    return text


def ask(args, settings) -> int:
    """One answer on stdout. Nothing the run does not use is imported or started: without
    tools no MCP code at all; with tools, a server whose tool list is known from an
    earlier run starts only if the model calls one of its tools, and the others come up
    while the model loads."""
    wanted = _mcp_wanted(args)  # malformed references fail before anything starts
    # With a server's prompt, the user's own text is optional (and stdin only with -).
    prompt = read_prompt(args.prompt) if args.prompt is not None or not args.mcp_prompt \
        else None
    servers, problems = ([], []) if args.no_tools and not wanted else _configured_servers(
        settings, args.mcp_config)
    if wanted:
        from assistant.cli.resources import choose

        named = [choose(servers, name)[0] for name in dict.fromkeys(wanted)]
        if args.no_tools:  # only the servers read from, and none of their tools offered
            servers = named
    for line in problems:
        print(f"assistant: warning: {line}", file=sys.stderr)
    host = None
    if servers:  # before the model: a server never seen before starts while it loads
        from assistant.chat.tooling import start_host

        host = start_host(servers, wait=False, lazy=True)
    try:
        return _answer(args, settings, prompt, host)
    finally:
        if host is not None:
            host.close()


def _mcp_wanted(args) -> list[str]:
    """Check ``--attach`` and ``--prompt`` and name the servers they read from."""
    if not (args.attach or args.mcp_prompt):
        return []
    from assistant.cli.resources import parse_pairs, split_ref

    args.attach = [split_ref(ref, "--attach", "SERVER:URI", "notes:notes:///ideas.md")
                   for ref in args.attach]
    if args.mcp_prompt:
        server, name = split_ref(args.mcp_prompt[0], "--prompt", "SERVER:NAME",
                                 "notes:summarize_note")
        args.mcp_prompt = (server, name, parse_pairs(args.mcp_prompt[1:]))
    return [s for s, _ in args.attach] + ([args.mcp_prompt[0]] if args.mcp_prompt else [])


def _mcp_messages(args, host, prompt: str | None) -> tuple[list[dict], list[tuple[str, str]]]:
    """The chat messages a server's prompt and the attached resources make, with the
    user's own text last; and the attachments as (reference, text)."""
    from assistant.chat.resources import attachment, prompt_messages, read_text

    attached = [(f"{server}:{uri}", read_text(host, server, uri)) for server, uri in args.attach]
    messages = []
    if args.mcp_prompt:
        server, name, arguments = args.mcp_prompt
        messages = [{"role": m.role, "content": m.text}
                    for m in prompt_messages(host, server, name, arguments)]
    blocks = [attachment(ref, text) for ref, text in attached]
    own = "\n\n".join([*blocks, *([prompt] if prompt else [])])
    if own:
        messages.append({"role": "user", "content": own})
    if not messages or messages[-1]["role"] != "user":
        raise UserError("the server's prompt ends with the assistant's turn; add your own "
                        "question after the options, e.g. assistant ask \"...\" --prompt …")
    return messages, attached


def _configured_servers(settings, mcp_config):
    from assistant.chat.tooling import configured_servers

    return configured_servers(settings, mcp_config)


def _answer(args, settings, prompt: str, host) -> int:
    from assistant.chat.turn import Turn
    from assistant.engine import ChatCache, GenerationOptions, open_engine
    from assistant.prompts import load as load_prompt

    thinking = settings.thinking if args.thinking is None else args.thinking
    system = load_prompt("system") if args.system is None else args.system
    options = GenerationOptions(
        thinking=thinking,
        max_tokens=args.max_tokens or settings.max_tokens,
        thinking_budget=args.thinking_budget or settings.thinking_budget,
        thinking_sampling=settings.sampling_thinking,
        direct_sampling=settings.sampling_direct,
        seed=args.seed,
        constrain_tool_calls=settings.constrained_tool_calls and not args.no_constrain,
    )
    reported: set[str] = set()
    with download_progress(args.model or settings.model) as progress:
        engine = open_engine(args.model, settings, adapter=args.adapter, progress=progress)
    with engine:
        # Read while the model loads: a server's answer and the weights come in together.
        mcp_messages, attached = _mcp_messages(args, host, prompt) \
            if args.attach or args.mcp_prompt else (None, [])
        engine.wait_loaded()
        tools = None
        if host is not None and not args.no_tools:
            from assistant.chat.tooling import make_tools

            host.wait_for_tools()  # only servers never seen before hold the prompt
            reported = _warn_failed(host, reported)
            if host.tools():
                # A local model's prompt encoder counts the tool list without building
                # the token counter (a tenth of a second) that only a tool result needs.
                tools = make_tools(host, [s.config for s in host.servers.values()],
                                   engine.prompts if engine.local else engine.counter,
                                   _terminal_approver(args.allow_tools,
                                                      args.prompt in (None, "-")))
                from assistant.cli.mcp import terminal_elicitor

                host.elicit = terminal_elicitor(args.prompt in (None, "-"))
                system = "\n\n".join(p for p in (system, load_prompt("tools")) if p)
        messages = ([{"role": "system", "content": system}] if system else [])
        if mcp_messages is None:
            messages.append({"role": "user", "content": prompt})
        else:
            messages += mcp_messages
        if attached:
            from assistant.chat.resources import check_fits

            check_fits(engine, engine.counter, messages, attached)
        printer = _Printer(args.json, args.show_thinking)
        # One turn, then the process ends: prefill only between tool rounds.
        turn = Turn(engine, messages, options, chat=ChatCache(), observer=printer, tools=tools,
                    prefill_after=False)
        try:
            outcome = turn.run()
        except KeyboardInterrupt:
            turn.cancel()  # the engine stops at its next token; closing waits for it
            print(file=sys.stderr)
            return EXIT_INTERRUPTED
    if host is not None:
        from assistant.chat.tooling import server_noise

        _warn_failed(host, reported)
        for line in server_noise(host):
            print(f"assistant: warning: {line}", file=sys.stderr)

    if outcome.error:
        print(f"assistant: {outcome.error.error}", file=sys.stderr)
        return EXIT_FAILED if outcome.error.kind == "error" else 2
    return _print_outcome(args, options, outcome, printer, engine.name, engine.adapter_name)


def _warn_failed(host, reported: set[str]) -> set[str]:
    """Say once per server that it did not start; return the names said so far."""
    from assistant.chat.tooling import server_problems

    for line in server_problems(host, reported):
        print(f"assistant: warning: {line}", file=sys.stderr)
    return reported | {s.config.name for s in host.servers.values() if s.status == "failed"}


def _print_outcome(args, options, outcome, printer, model: str, adapter: str | None) -> int:
    if args.json:
        print(json.dumps({  # the keys of JSON_KEYS
            "answer": outcome.text,
            "thinking": outcome.thinking,
            "finish_reason": outcome.finish_reason,
            "model": model,
            "adapter": adapter,
            "tool_calls": [{"server": c.server, "tool": c.tool, "name": c.name,
                            "arguments": c.arguments, "status": c.status, "error": c.error,
                            "decision": c.decision, "constrained": c.constrained,
                            "duration_s": c.duration_s,
                            "result": c.result} for c in outcome.calls],
            "stats": asdict(outcome.stats[-1]) if outcome.stats else None,
        }, ensure_ascii=False))
        return 0
    if printer.text_shown and not printer.ends_with_newline:
        sys.stdout.write("\n")
    if outcome.finish_reason == "length":
        print(f"assistant: the answer was cut off at {options.max_tokens} tokens; "
              "raise --max-tokens for more", file=sys.stderr)
    elif outcome.finish_reason == "rounds":
        print("assistant: stopped after the tool-call limit for one turn", file=sys.stderr)
    return 0


class _Printer:
    """Streams the answer to stdout; reasoning and tool activity go to stderr."""

    def __init__(self, quiet: bool, show_thinking: bool):
        self.quiet, self.show_thinking = quiet, show_thinking
        self.dim = sys.stderr.isatty()
        self.text_shown = self.thinking_shown = False
        self.ends_with_newline = True
        self.progress = None  # terminal.ProgressLine, once a call reports progress

    def on_event(self, event) -> None:
        from assistant.engine import TextDelta, ThinkingDelta

        if self.quiet:
            return
        if isinstance(event, TextDelta):
            if self.thinking_shown and not self.text_shown:
                sys.stderr.write("\n\n")  # the answer starts below the reasoning
                sys.stderr.flush()
            sys.stdout.write(event.text)
            sys.stdout.flush()
            self.text_shown = True
            self.ends_with_newline = event.text.endswith("\n")
        elif isinstance(event, ThinkingDelta) and self.show_thinking:
            sys.stderr.write(f"\x1b[2m{event.text}\x1b[0m" if self.dim else event.text)
            sys.stderr.flush()
            self.thinking_shown = True

    def on_tool_call(self, call) -> None:
        if self.quiet or call.status == "pending":
            return
        name = f"{call.server}/{call.tool}" if call.server else (call.name or "tool call")
        if call.status == "running" and call.progress:  # from the host's thread
            if self.progress is None:
                self.progress = ProgressLine()
            self.progress.show(f"[tool] {name}: {call.progress}")
            return
        if self.progress is not None:
            self.progress.clear()
        if call.status == "running":
            line = f"[tool] {name} {json.dumps(call.arguments, ensure_ascii=False)}"
        elif call.status == "ok":
            line = f"[tool] {name}: ok ({call.duration_s:.2f} s, {len(call.result):,} chars)"
            from assistant.cli.mcp import link_lines

            line = "\n".join([line, *link_lines(call.server, call.result)])
        else:
            line = f"[tool] {name}: {call.status}: {call.error or call.sent}"
        if self.text_shown and not self.ends_with_newline:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.ends_with_newline = True
        print(line, file=sys.stderr, flush=True)


def _terminal_approver(allow_all: bool, stdin_used: bool):
    """Ask on the terminal, showing the full arguments; deny when there is none.

    Only an explicit answer allows: "y"/"yes" once, the whole word "always" for good.
    Anything else denies, an empty line and the end of input included, and keys typed
    while the answer streamed are dropped before the question is asked.
    """
    from assistant.mcp.approval import ApprovalRequest

    def approve(request: ApprovalRequest) -> str:
        if allow_all:
            return "once"
        tty = open_terminal(stdin_used)
        if tty is None:
            return "deny"
        tool = request.tool
        args = json.dumps(request.arguments, indent=2, ensure_ascii=False)
        warn = " (it may change things)" if tool.read_only is not True else ""
        try:
            drop_typed_ahead(tty)
            sys.stderr.write(printable(f"\nAllow {tool.server}/{tool.name}{warn} with these "
                                        f"arguments?\n{args}\n")
                             + "[y] yes once  [always] always for this tool  [N] no: ")
            sys.stderr.flush()
            answer = tty.readline()
        except (OSError, UnicodeDecodeError):  # a terminal gone, or bytes that are no text
            answer = ""
        finally:
            if tty is not sys.stdin:
                tty.close()
        return {"y": "once", "yes": "once", "always": "always"}.get(answer.strip().lower(),
                                                                    "deny")

    return approve
