"""``assistant bench --adapter DIR``: what an adapter costs at decode time.

The base model and the same model with the adapter are loaded side by side and decode
the same prompt with the same seed in interleaved pairs (``stats``); the ratio is
adapter ÷ base decode tokens/s. mlx-lm runs a LoRA layer as the base layer plus two
small matrix products, so the cost grows with the rank and the number of layers.
"""

from __future__ import annotations

from assistant.bench.decode import SHORT_PROMPT, Bench
from assistant.bench.stats import median, ratios
from assistant.engine import Engine


def measure_adapter(model_path, adapter, max_tokens: int, repeats: int, progress) -> dict:
    messages = [{"role": "user", "content": SHORT_PROMPT}]
    with Engine(model_path) as base, Engine(model_path, adapter=adapter) as tuned:
        progress("loading the model twice, with and without the adapter")
        base.wait_loaded()
        tuned.wait_loaded()
        sides = {"base": Bench(base, max_tokens), "adapter": Bench(tuned, max_tokens)}
        for bench in sides.values():  # warm-up
            bench.app(messages, seed=0)
        runs: dict[str, list] = {"base": [], "adapter": []}
        for r in range(repeats):
            progress(f"pair {r + 1}/{repeats}")
            order = ("adapter", "base") if r % 2 else ("base", "adapter")
            for side in order:  # each side goes first in every other pair
                runs[side].append(sides[side].app(messages, seed=r)[0])
        info = tuned.adapter
    spread = ratios([a.decode_tps for a in runs["adapter"]], [b.decode_tps for b in runs["base"]])
    return {
        "model": str(model_path), "adapter": str(info.path), "adapter_kind": info.kind,
        "adapter_rank": info.rank, "adapter_layers": info.layers,
        "max_tokens": max_tokens, "repeats": repeats,
        "base_decode_tps": round(median([b.decode_tps for b in runs["base"]]), 2),
        "adapter_decode_tps": round(median([a.decode_tps for a in runs["adapter"]]), 2),
        "adapter_decode_ratio": round(spread.median, 4),
        "adapter_decode_ratio_spread": [round(spread.low, 4), round(spread.high, 4)],
    }


def format_adapter_table(r: dict) -> str:
    low, high = r["adapter_decode_ratio_spread"]
    return "\n".join([
        f"assistant bench: {r['model']} with the adapter {r['adapter']}",
        f"  {r['adapter_kind']}, rank {r['adapter_rank']}, {r['adapter_layers']} layers; "
        f"{r['max_tokens']} tokens decoded per run; medians of {r['repeats']} interleaved pairs",
        "",
        f"  decode tok/s: base {r['base_decode_tps']:.1f}, with the adapter "
        f"{r['adapter_decode_tps']:.1f}",
        f"  adapter/base: {r['adapter_decode_ratio']:.3f} ({low:.3f}–{high:.3f})",
    ])
