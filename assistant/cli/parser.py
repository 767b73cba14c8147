"""Every command's options, with help for each: ``assistant --help`` and each
command's ``--help`` are the command reference."""

from __future__ import annotations

import argparse
from pathlib import Path

from assistant import __version__


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
    from assistant.cli.ask import JSON_KEYS

    ask.add_argument("--json", action="store_true",
                     help=f"print one JSON object: {', '.join(JSON_KEYS)}")
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
                           "in /): one file per note plus the digest (NOTE.summary.md and "
                           "digest.md; with --format json, NOTE.summary.json and digest.json)")
    summ.add_argument("--format", choices=("md", "json"), default="md",
                      help="md: Markdown (default); json: one object with each note's summary, "
                           "the digest and the run's figures")
    _model_options(summ)
    summ.add_argument("--length", choices=("short", "medium", "long"), default="medium",
                      help="each summary in 2-3 bullet points (short), 5-8 (medium, the "
                           "default) or an outline of up to 15 (long)")
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

    from assistant.cli import tools, tune

    tools.add_parser(commands)
    tune.add_parser(commands, _model_options)
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
