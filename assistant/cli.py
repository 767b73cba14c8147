"""The command line: ``assistant ask`` and ``assistant bench``.

A thin consumer of the engine's event stream; user errors are one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from assistant import __version__
from assistant.config import load_settings
from assistant.errors import UserError
from assistant.text import scrub

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line instead of usage plus error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="assistant", description="A local Qwen3 assistant running on MLX.")
    parser.add_argument("--version", action="version", version=f"assistant {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    chat = commands.add_parser("chat", help="the chat app (the default command)",
                               description="Open the chat app in the terminal.")
    _model_options(chat)
    _mcp_options(chat)
    chat.add_argument("--new", action="store_true",
                      help="start a fresh chat (without it, the last chat reopens)")

    ask = commands.add_parser("ask", help="answer one prompt on stdout",
                              description="Answer one prompt; the answer streams to stdout.")
    ask.add_argument("prompt", nargs="?", help="the prompt, or - to read it from stdin")
    _model_options(ask)
    ask.add_argument("--show-thinking", action="store_true",
                     help="print the model's reasoning to stderr as it thinks")
    ask.add_argument("--max-tokens", type=_positive, help="longest answer, thinking included")
    ask.add_argument("--thinking-budget", type=_positive,
                     help="thinking tokens before the model must answer")
    ask.add_argument("--system", help="system prompt ('' for none)")
    ask.add_argument("--seed", type=int, help="random seed, for repeatable answers")
    ask.add_argument("--json", action="store_true",
                     help="print one JSON object: answer, thinking, tool calls, stats")
    _mcp_options(ask)
    ask.add_argument("--no-constrain", action="store_true",
                     help="let tool calls be decoded freely, as without a grammar (for "
                          "comparison; the turn loop still checks them)")
    ask.add_argument("--allow-tools", action="store_true",
                     help="run tool calls without asking (otherwise: ask on a terminal, "
                          "deny without one)")
    ask.add_argument("--attach", action="append", default=[], metavar="SERVER:URI",
                     help="put an MCP resource's text before the prompt (repeatable); "
                          "see `assistant tools resources`")
    ask.add_argument("--prompt", dest="mcp_prompt", nargs="+",
                     metavar=("SERVER:NAME", "key=value"),
                     help="start from an MCP server's prompt, filled in with its arguments; "
                          "see `assistant tools prompts`")

    summ = commands.add_parser(
        "summarize", help="summarize notes: one summary per note, then a digest",
        description="Summarize Markdown and text notes (files or folders, - for stdin): a "
                    "summary per note, then a digest. Results are cached by content.")
    summ.add_argument("paths", nargs="+", metavar="PATH", help="note files or folders, or -")
    summ.add_argument("-o", "--output", metavar="FILE|DIR",
                      help="write to FILE, or into DIR (an existing folder, or a path ending "
                           "in /): one file per note plus digest.md")
    summ.add_argument("--format", choices=("md", "json"), default="md")
    _model_options(summ)
    summ.add_argument("--length", choices=("short", "medium", "long"), default="medium")
    summ.add_argument("--max-tokens", type=_positive,
                      help="longest summary in tokens (default: set by --length)")
    summ.add_argument("--glob", action="append", metavar="PATTERN",
                      help="which files in folders are notes (default *.md, *.markdown, *.txt)")
    summ.add_argument("--chunk-tokens", type=_positive,
                      help="largest piece of a note per model call (default: what fits)")
    summ.add_argument("--no-cache", action="store_true", help="summarize everything again")
    summ.add_argument("--parallel", type=_parallel, default=1, metavar="N",
                      help="send up to N independent requests at once (1-32, default 1); "
                           "useful with an inference server that batches requests, while "
                           "the local model runs them one at a time")
    summ.add_argument("--quiet", action="store_true", help="no progress on stderr")
    summ.add_argument("-y", "--yes", action="store_true",
                      help="run without asking, even when the estimate is over two minutes "
                           "(needed for such a run without a terminal)")

    bench = commands.add_parser(
        "bench", help="measure speed against raw mlx-lm",
        description="Measure TTFT, prefill and decode speed of the app against raw "
                    "mlx_lm.stream_generate, same model, prompts and token counts, in one run.")
    bench.add_argument("--model", help="Hugging Face repo id, local model directory, or an "
                       "inference server (http://HOST:PORT/v1)")
    bench.add_argument("--adapter", metavar="DIR", type=Path,
                       help="also measure decoding with this adapter, against the base model")
    bench.add_argument("--max-tokens", type=_positive,
                       help="tokens decoded per run (default 128; 8 with --startup)")
    bench.add_argument("--long-prompt-tokens", type=_positive, default=1024,
                       help="length of the long prompt (default 1024)")
    bench.add_argument("--repeats", type=_positive, default=5,
                       help="interleaved app/raw pairs; the median of the per-pair ratios "
                            "and their spread are reported (default 5)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--tool-calls", type=_positive, metavar="N",
                       help="instead: N tool-call trials over the built-in tools, constrained "
                            "and unconstrained, interleaved (valid-call rate and decode cost)")
    bench.add_argument("--baseline", type=_positive, metavar="M",
                       help="with --tool-calls: run the unconstrained side on the first M "
                            "trials only (default: all)")
    bench.add_argument("--no-constrain", action="store_true",
                       help="measure speed with the tool-call grammar off")
    bench.add_argument("--no-tui", action="store_true",
                       help="skip the chat app's figures (headless decode, key latency, "
                            "start-up in tmux)")
    bench.add_argument("--startup", action="store_true",
                       help="time the whole `assistant ask` command (with the built-in "
                            "servers and with --no-tools) against `python -m mlx_lm "
                            "generate`, start to exit, each in a fresh process")

    from assistant import cli_tools, cli_tune

    cli_tools.add_parser(commands)
    cli_tune.add_parser(commands, _model_options)
    return parser


def _mcp_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mcp-config", type=Path,
                        help="MCP server config (Claude Desktop's mcpServers format)")
    parser.add_argument("--no-tools", action="store_true", help="start no MCP servers")


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="Hugging Face repo id, local model directory, or an "
                        "OpenAI-compatible inference server (http://HOST:PORT/v1)")
    parser.add_argument("--adapter", metavar="DIR", type=Path,
                        help="a LoRA or DoRA adapter folder to load on top of the model "
                        "(assistant tune run makes one)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--think", dest="thinking", action="store_true", default=None,
                      help="thinking mode: reason before answering")
    mode.add_argument("--no-think", dest="thinking", action="store_false",
                      help="non-thinking mode: answer directly")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _parallel(text: str) -> int:
    from assistant.notes.summarize import MAX_PARALLEL

    value = _positive(text)
    if value > MAX_PARALLEL:
        raise argparse.ArgumentTypeError(f"{text!r} must be at most {MAX_PARALLEL}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["chat", *argv]  # `assistant` alone, or with chat options, opens the app
    args = parser.parse_args(argv)
    settings, warnings = load_settings()
    for warning in warnings:
        print(f"assistant: warning: {warning}", file=sys.stderr)
    try:
        if args.command == "chat":
            from assistant.tui.app import run_chat

            return run_chat(args, settings)
        if args.command == "ask":
            return ask(args, settings)
        if args.command == "bench":
            from assistant.bench import run_bench

            return run_bench(args, settings)
        if args.command == "summarize":
            from assistant.cli_summarize import run_summarize

            return run_summarize(args, settings)
        if args.command == "tools":
            from assistant import cli_tools

            return cli_tools.run(args, settings)
        if args.command == "tune":
            from assistant import cli_tune

            return cli_tune.run(args, settings)
    except UserError as exc:
        print(f"assistant: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (`| head`): nothing left to say
        return 0
    return 0


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
        from assistant.cli_resources import choose

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
    from assistant.cli_resources import parse_pairs, split_ref

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
    from assistant.cli_resources import attachment, prompt_messages, read_text

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
    with open_engine(args.model, settings, adapter=args.adapter) as engine:
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
                tools = make_tools(host, [s.config for s in host.servers.values()],
                                   engine.counter,
                                   _terminal_approver(args.allow_tools,
                                                      args.prompt in (None, "-")))
                from assistant.cli_mcp import terminal_elicitor

                host.elicit = terminal_elicitor(args.prompt in (None, "-"))
                system = "\n\n".join(p for p in (system, load_prompt("tools")) if p)
        messages = ([{"role": "system", "content": system}] if system else [])
        if mcp_messages is None:
            messages.append({"role": "user", "content": prompt})
        else:
            messages += mcp_messages
        if attached:
            from assistant.cli_resources import check_fits

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
        print(json.dumps({
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
        self.progress = None  # cli_mcp.ProgressLine, once a call reports progress

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
                from assistant.cli_mcp import ProgressLine

                self.progress = ProgressLine()
            self.progress.show(f"[tool] {name}: {call.progress}")
            return
        if self.progress is not None:
            self.progress.clear()
        if call.status == "running":
            line = f"[tool] {name} {json.dumps(call.arguments, ensure_ascii=False)}"
        elif call.status == "ok":
            line = f"[tool] {name}: ok ({call.duration_s:.2f} s, {len(call.result):,} chars)"
            from assistant.cli_mcp import link_lines

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
        tty = _open_terminal(stdin_used)
        if tty is None:
            return "deny"
        tool = request.tool
        args = json.dumps(request.arguments, indent=2, ensure_ascii=False)
        warn = " (it may change things)" if tool.read_only is not True else ""
        try:
            _drop_typed_ahead(tty)
            sys.stderr.write(_printable(f"\nAllow {tool.server}/{tool.name}{warn} with these "
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


def _drop_typed_ahead(tty) -> None:
    """Discard what was typed before the question: it was not an answer to it."""
    try:
        import termios
    except ImportError:  # no terminal control here (Windows)
        return
    try:
        termios.tcflush(tty.fileno(), termios.TCIFLUSH)
    except (termios.error, OSError, ValueError):
        pass


def _printable(text: str) -> str:
    """``text`` with control characters shown, not obeyed: a tool's name or arguments
    must not move the cursor or rewrite the question on the terminal."""
    return "".join(c if c == "\n" or c.isprintable() else f"\\x{ord(c):02x}"
                   if ord(c) < 0x100 else f"\\u{ord(c):04x}" for c in scrub(text))


def _open_terminal(stdin_used: bool):
    if not sys.stderr.isatty():
        return None
    if not stdin_used and sys.stdin.isatty():
        return sys.stdin
    try:
        return open("/dev/tty", encoding="utf-8")
    except OSError:
        return None
