"""The command line: ``assistant ask`` and ``assistant bench``.

A thin consumer of the engine's event stream; user errors are one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from assistant import __version__
from assistant.config import load_settings
from assistant.errors import UserError

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
                     help="print one JSON object: answer, thinking, stats")

    bench = commands.add_parser(
        "bench", help="measure speed against raw mlx-lm",
        description="Measure TTFT, prefill and decode speed of the app against raw "
                    "mlx_lm.stream_generate, same model, prompts and token counts, in one run.")
    bench.add_argument("--model", help="Hugging Face repo id or local model directory")
    bench.add_argument("--max-tokens", type=_positive, default=128,
                       help="tokens decoded per run (default 128)")
    bench.add_argument("--long-prompt-tokens", type=_positive, default=1024,
                       help="length of the long prompt (default 1024)")
    bench.add_argument("--repeats", type=_positive, default=3,
                       help="runs of each side, interleaved; the best is kept (default 3)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="Hugging Face repo id or local model directory")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    settings, warnings = load_settings()
    for warning in warnings:
        print(f"assistant: warning: {warning}", file=sys.stderr)
    try:
        if args.command == "ask":
            return ask(args, settings)
        if args.command == "bench":
            from assistant.bench import run_bench

            return run_bench(args, settings)
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
    from assistant.engine import (Engine, Failed, GenerationOptions, TextDelta,
                                  ThinkingDelta, TurnResult, resolve_model)
    from assistant.prompts import load as load_prompt

    prompt = read_prompt(args.prompt)
    thinking = settings.thinking if args.thinking is None else args.thinking
    system = load_prompt("system") if args.system is None else args.system
    messages = ([{"role": "system", "content": system}] if system else [])
    messages.append({"role": "user", "content": prompt})
    options = GenerationOptions(
        thinking=thinking,
        max_tokens=args.max_tokens or settings.max_tokens,
        thinking_budget=args.thinking_budget or settings.thinking_budget,
        thinking_sampling=settings.sampling_thinking,
        direct_sampling=settings.sampling_direct,
        seed=args.seed,
    )

    model_path = resolve_model(args.model or settings.model)
    with Engine(model_path, context_limit=settings.context_limit) as engine:
        engine.wait_loaded()
        generation = engine.generate(messages, options)
        result = TurnResult()
        dim = sys.stderr.isatty()
        try:
            for event in generation:
                result.add(event)
                if args.json:
                    continue
                if isinstance(event, TextDelta):
                    if args.show_thinking and result.thinking and result.text == event.text:
                        sys.stderr.write("\n\n")  # the answer starts below the thinking
                        sys.stderr.flush()
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                elif isinstance(event, ThinkingDelta) and args.show_thinking:
                    sys.stderr.write(f"\x1b[2m{event.text}\x1b[0m" if dim else event.text)
                    sys.stderr.flush()
        except KeyboardInterrupt:
            generation.cancel()
            for event in generation:  # let the engine stop cleanly
                pass
            print(file=sys.stderr)
            return EXIT_INTERRUPTED

    if isinstance(result.error, Failed):
        print(f"assistant: {result.error.error}", file=sys.stderr)
        return EXIT_FAILED if result.error.kind == "error" else 2
    if args.json:
        print(json.dumps({
            "answer": result.text,
            "thinking": result.thinking,
            "finish_reason": result.finish_reason,
            "model": str(model_path),
            "stats": asdict(result.stats) if result.stats else None,
        }, ensure_ascii=False))
        return 0
    if result.text and not result.text.endswith("\n"):
        sys.stdout.write("\n")
    if result.finish_reason == "length":
        print(f"assistant: the answer was cut off at {options.max_tokens} tokens; "
              "raise --max-tokens for more", file=sys.stderr)
    return 0
