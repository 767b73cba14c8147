"""``assistant bench``: which measurement the options ask for, and its table or JSON.

Every measurement lives in its own module of this package (see ``__init__``); this one
only chooses, loads the model, reports progress on a terminal and prints.
"""

from __future__ import annotations

import json
import platform
from typing import Callable

import mlx.core as mx

from assistant.bench.decode import DEFAULT_MAX_TOKENS, format_table, measure
from assistant.bench.reuse import measure_reuse
from assistant.engine import Engine, resolve_model
from assistant.engine.backends import is_remote


def run_bench(args, settings) -> int:
    from assistant.cli.terminal import ProgressLine

    line = ProgressLine()  # on a terminal only; --json keeps even that quiet

    def progress(msg: str) -> None:
        if not args.json:
            line.show(f"{msg}…")

    try:
        result, table = _measure(args, settings, progress)
    finally:
        line.clear()
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


def _measure(args, settings, progress) -> tuple[dict, Callable[[dict], str]]:
    """The measurement the options ask for: its figures, and how to print them."""
    if is_remote(args.model or settings.model):
        from assistant.bench.remote import format_remote_table, run_remote_bench

        args.max_tokens = args.max_tokens or DEFAULT_MAX_TOKENS
        return run_remote_bench(args, settings, progress), format_remote_table
    from assistant.cli.terminal import download_progress

    with download_progress(args.model or settings.model) as shown:
        model_path = resolve_model(args.model or settings.model, progress=shown)

    if args.startup:
        from assistant.bench import startup

        # The measure is 8 tokens; --max-tokens applies only when given.
        return startup.measure_startup(
            model_path, max_tokens=args.max_tokens or startup.MAX_TOKENS,
            pairs=args.repeats, progress=progress), startup.format_table
    args.max_tokens = args.max_tokens or DEFAULT_MAX_TOKENS
    window = max(settings.context_limit, args.long_prompt_tokens + args.max_tokens + 512)

    if args.tool_calls:
        from assistant.bench.tools import format_tool_table

        return _tool_calls(args, model_path, window, progress), format_tool_table
    if args.adapter:
        from assistant.bench.adapter import format_adapter_table, measure_adapter

        return measure_adapter(model_path, args.adapter, args.max_tokens, args.repeats,
                               progress), format_adapter_table
    with Engine(model_path, context_limit=window) as engine:
        progress("loading the model")
        engine.wait_loaded()
        result = measure(engine, args.max_tokens, args.long_prompt_tokens, args.repeats,
                         progress)
        progress("cache reuse with idle prefill")
        result.update(measure_reuse(engine))
    if not args.no_tui:
        result.update(measure_app(model_path, args.max_tokens, args.repeats, progress))
    return result, format_table


def _tool_calls(args, model_path, window: int, progress) -> dict:
    from assistant.bench.tools import measure_tool_calls

    with Engine(model_path, context_limit=window) as engine:
        progress("loading the model")
        engine.wait_loaded()
        result = {"model": str(engine.model_path), "device": str(mx.default_device()),
                  "machine": f"{platform.system()} {platform.machine()}", "mlx": mx.__version__}
        result.update(measure_tool_calls(engine, args.tool_calls, progress,
                                         constrained=not args.no_constrain,
                                         baseline=args.baseline))
    return result


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
