"""``assistant bench``: which measurement the options ask for, and its table or JSON.

Every measurement lives in its own module of this package (see ``__init__``); this one
only chooses, loads the model, reports progress on a terminal and prints.
"""

from __future__ import annotations

import json
import platform
import sys

import mlx.core as mx

from assistant.bench.decode import DEFAULT_MAX_TOKENS, format_table, measure
from assistant.bench.reuse import measure_reuse
from assistant.engine import Engine, resolve_model
from assistant.engine.backends import is_remote


def run_bench(args, settings) -> int:
    quiet = args.json or not sys.stderr.isatty()

    def progress(msg: str) -> None:
        if not quiet:
            print(f"\r\x1b[2K{msg}…", end="", file=sys.stderr, flush=True)

    if is_remote(args.model or settings.model):
        from assistant.bench.remote import run_remote_bench

        args.max_tokens = args.max_tokens or DEFAULT_MAX_TOKENS
        return run_remote_bench(args, settings, progress, quiet)
    from assistant.cli.terminal import download_progress

    with download_progress(args.model or settings.model) as shown:
        model_path = resolve_model(args.model or settings.model, progress=shown)

    if args.startup:
        from assistant.bench import startup

        # The measure is 8 tokens; --max-tokens applies only when given.
        result = startup.measure_startup(
            model_path, max_tokens=args.max_tokens or startup.MAX_TOKENS,
            pairs=args.repeats, progress=progress)
        progress("")
        if not quiet:
            print("\r\x1b[2K", end="", file=sys.stderr, flush=True)
        print(json.dumps(result, indent=2) if args.json else startup.format_table(result))
        return 0
    args.max_tokens = args.max_tokens or DEFAULT_MAX_TOKENS
    window = max(settings.context_limit, args.long_prompt_tokens + args.max_tokens + 512)

    if args.tool_calls:
        return _run_tool_bench(args, model_path, window, progress, quiet)
    if args.adapter:
        from assistant.bench.adapter import format_adapter_table, measure_adapter

        result = measure_adapter(model_path, args.adapter, args.max_tokens, args.repeats,
                                 progress)
        if not quiet:
            print("\r\x1b[2K", end="", file=sys.stderr, flush=True)
        print(json.dumps(result, indent=2) if args.json else format_adapter_table(result))
        return 0
    with Engine(model_path, context_limit=window) as engine:
        progress("loading the model")
        engine.wait_loaded()
        result = measure(engine, args.max_tokens, args.long_prompt_tokens, args.repeats,
                         progress)
        progress("cache reuse with idle prefill")
        result.update(measure_reuse(engine))
    if not args.no_tui:
        result.update(measure_app(model_path, args.max_tokens, args.repeats, progress))
    progress("")
    if not quiet:
        print("\r\x1b[2K", end="", file=sys.stderr, flush=True)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def _run_tool_bench(args, model_path, window: int, progress, quiet: bool) -> int:
    from assistant.bench.tools import format_tool_table, measure_tool_calls

    with Engine(model_path, context_limit=window) as engine:
        progress("loading the model")
        engine.wait_loaded()
        result = {"model": str(engine.model_path), "device": str(mx.default_device()),
                  "machine": f"{platform.system()} {platform.machine()}", "mlx": mx.__version__}
        result.update(measure_tool_calls(engine, args.tool_calls, progress,
                                         constrained=not args.no_constrain,
                                         baseline=args.baseline))
    if not quiet:
        print("\r\x1b[2K", end="", file=sys.stderr, flush=True)
    print(json.dumps(result, indent=2) if args.json else format_tool_table(result))
    return 0


def measure_app(model_path, max_tokens: int, repeats: int, progress) -> dict:
    """The chat app's figures: decode inside the running app against raw mlx-lm, key
    latency while it streams, and start-up of the real command in tmux."""
    from assistant.bench.chat_app import measure_startup, measure_tui

    progress("chat app, headless")
    tui = measure_tui(model_path, max_tokens, repeats=repeats)
    out = {"tui_decode_tps": tui["tui_decode_tps"], "tui_raw_decode_tps": tui["raw_decode_tps"],
           "tui_decode_ratio": round(tui["tui_decode_ratio"], 4),
           "tui_decode_ratio_spread": [round(v, 4) for v in tui["tui_decode_ratio_spread"]],
           "key_latency_median_ms": tui["key_latency_median_ms"],
           "key_latency_max_ms": tui["key_latency_max_ms"], "key_presses": tui["key_presses"]}
    progress("chat app start-up in tmux")
    try:
        startup = measure_startup(model_path)
    except RuntimeError as exc:  # no tmux on this machine
        startup = {"first_frame_s": None, "skipped": str(exc)}
    out["first_frame_s"] = startup["first_frame_s"]
    out["app_model_loaded_s"] = startup.get("model_loaded_s")
    return out
