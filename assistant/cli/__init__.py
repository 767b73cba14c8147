"""The command line: ``assistant`` and its commands, one module per command.

    parser.py     every command's options and their help
    ask.py        ``ask``: one answer on stdout, tool approval on the terminal
    summarize.py  ``summarize``: notes in, summaries and a digest out
    tools.py      ``tools``: list, check and call the MCP servers
    resources.py  ``tools resources|read|prompts|prompt``, ``ask --attach/--prompt``
    mcp.py        what MCP servers show and ask on the terminal (start-up, progress,
                  elicitation)
    tune.py       ``tune``: an adapter from the user's own tool calls
    terminal.py   what the commands share on a terminal (safe text, counts, the keyboard,
                  one progress line, the model download)

Each command's module is imported only when it runs, so ``assistant ask`` loads neither
the chat app nor, without tools, the MCP SDK. User errors are one line and exit 2.
"""

from __future__ import annotations

import sys

from assistant.cli.parser import build_parser
from assistant.config import load_settings
from assistant.errors import EXIT_INTERRUPTED, UserError


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
            from assistant.cli.ask import ask

            return ask(args, settings)
        if args.command == "bench":
            from assistant.bench.run import run_bench

            return run_bench(args, settings)
        if args.command == "summarize":
            from assistant.cli.summarize import run_summarize

            return run_summarize(args, settings)
        if args.command == "tools":
            from assistant.cli import tools

            return tools.run(args, settings)
        if args.command == "tune":
            from assistant.cli import tune

            return tune.run(args, settings)
    except UserError as exc:
        print(f"assistant: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (`| head`): nothing left to say
        return 0
    return 0
