"""``assistant bench --model http://HOST:PORT/v1``: the app on an inference server.

What a user of a server waits for is its time to first token and its decode speed; what
the app adds on top is the engine's event stream (parsing reasoning and tool calls,
statistics). Each figure is measured through the app's engine and through a bare
``openai`` stream of the very same request, in interleaved pairs (``stats``), so the
ratio says what the app costs whatever the server and the network do.
"""

from __future__ import annotations

import platform
import time

from assistant.bench.stats import median, ratios
from assistant.errors import UserError

SHORT_PROMPT = "Explain in a few sentences why the sky is blue."
LONG_PROMPT_HEAD = "Summarize these meeting notes in five bullet points.\n\n"
NOTES = ("The team met to plan the release. Testing on the new machines starts on Monday; "
         "the build scripts move to the shared runner; two bugs in the importer are still "
         "open and block the beta. ")
LOCAL_ONLY = {
    "tool_calls": "--tool-calls measures the tool-call grammar, which is local-only",
    "startup": "--startup compares with raw mlx-lm in this process, which is local-only",
    "adapter": "--adapter loads an adapter into the model in this process, which is local-only",
}


def run_remote_bench(args, settings, progress) -> dict:
    from assistant.engine import open_engine

    for flag, why in LOCAL_ONLY.items():
        if getattr(args, flag):
            raise UserError(f"{why}: run it with a local --model (a model directory or a "
                            "Hugging Face repo id)")
    with open_engine(args.model, settings) as engine:
        progress("asking the server")
        engine.wait_loaded()
        result = measure_remote(engine, args.max_tokens, args.long_prompt_tokens,
                                args.repeats, progress)
    return result


def measure_remote(engine, max_tokens: int, long_prompt_tokens: int, repeats: int,
                   progress) -> dict:
    from assistant.engine import GenerationOptions

    options = GenerationOptions(thinking=False, max_tokens=max_tokens, seed=0)
    # About 4.5 characters a token for English prose.
    long_text = LONG_PROMPT_HEAD + NOTES * max(1, long_prompt_tokens * 9 // 2 // len(NOTES))
    prompts = {"short": SHORT_PROMPT, "long": long_text}
    out = {"model": engine.name, "backend": "openai-compatible server",
           "client_machine": f"{platform.system()} {platform.machine()}",
           "max_tokens": max_tokens, "repeats": repeats, "prompts": {}}
    for name, text in prompts.items():
        messages = [{"role": "user", "content": text}]
        app, raw = [], []
        _through_engine(engine, messages, options)  # the server's caches warm up once
        for i in range(repeats):
            progress(f"{name} prompt, pair {i + 1} of {repeats}")
            # Each side goes first in every other pair: neither always meets a warmer server.
            if i % 2:
                raw.append(_bare_stream(engine, messages, options))
            app.append(_through_engine(engine, messages, options))
            if not i % 2:
                raw.append(_bare_stream(engine, messages, options))
        figures = {}
        for key in ("ttft_s", "decode_tps"):
            figures[key] = {
                "app": round(median([a[key] for a in app]), 4),
                "raw": round(median([r[key] for r in raw]), 4),
                "ratio": ratios([a[key] for a in app],
                                           [r[key] for r in raw]).as_dict()}
        figures["prompt_tokens"] = app[-1]["prompt_tokens"]
        figures["generated_tokens"] = app[-1]["generated_tokens"]
        out["prompts"][name] = figures
    short = out["prompts"]["short"]
    out["ttft_s"], out["decode_tps"] = short["ttft_s"]["app"], short["decode_tps"]["app"]
    out["decode_ratio"] = min(p["decode_tps"]["ratio"]["median"]
                              for p in out["prompts"].values())
    return out


def _through_engine(engine, messages, options) -> dict:
    result = engine.generate(messages, options).result()
    if result.error:
        raise UserError(result.error.error)
    s = result.stats
    return {"ttft_s": s.ttft_s, "decode_tps": s.decode_tps, "prompt_tokens": s.prompt_tokens,
            "generated_tokens": s.generated_tokens}


def _bare_stream(engine, messages, options) -> dict:
    """The same request as a plain ``openai`` stream, timed the same way."""
    from assistant.engine.generation import effective_thinking

    request = engine._request(messages, options, effective_thinking(messages, options.thinking))
    started = time.perf_counter()
    first = last = None
    pieces, usage = 0, None
    try:
        stream = engine._client.chat.completions.create(**request)
        with stream:
            for chunk in stream:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    delta = choice.delta
                    extra = delta.model_extra or {}
                    if delta.content or delta.tool_calls or extra.get("reasoning") \
                            or extra.get("reasoning_content"):
                        last = time.perf_counter()
                        first = first or last
                        pieces += 1
    except Exception as exc:
        raise UserError(engine.describe(exc)) from None
    generated = getattr(usage, "completion_tokens", None) or pieces
    decode_s = (last - first) if first is not None else 0.0
    return {"ttft_s": (first or started) - started,
            "decode_tps": (generated - 1) / decode_s if generated > 1 and decode_s > 0 else 0.0}


def format_remote_table(r: dict) -> str:
    rows = [f"assistant bench: {r['model']} ({r['backend']})",
            f"  client {r['client_machine']}; up to {r['max_tokens']} tokens per run; medians "
            f"of {r['repeats']} interleaved app/bare-client pairs", ""]
    header = (f"  {'prompt':<16}{'figure':<16}{'app':>10}{'bare client':>13}{'app/bare':>10}"
              f"{'spread':>16}")
    rows += [header, "  " + "-" * (len(header) - 2)]
    for name, f in r["prompts"].items():
        label = f"{name} ({f['prompt_tokens']} tok)"
        for key, title, fmt in (("ttft_s", "TTFT s", ".3f"), ("decode_tps", "decode tok/s", ".1f")):
            figure = f[key]
            ratio = figure["ratio"]
            spread = f"{ratio['min']:.3f}–{ratio['max']:.3f}"
            rows.append(f"  {label:<16}{title:<16}{figure['app']:>10{fmt}}{figure['raw']:>13{fmt}}"
                        f"{ratio['median']:>10.3f}{spread:>16}")
            label = ""
    rows += ["", "  TTFT: lower is better; decode: higher is better.",
             "  Idle prefill, the KV cache and the tool-call grammar are local-only: not here."]
    return "\n".join(rows)
