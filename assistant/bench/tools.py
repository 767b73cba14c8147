"""``assistant bench --tool-calls N``: how often a tool call is valid, with the grammar
inside ``<tool_call>`` and without, and what the grammar costs per token.

Each trial forces the reply to open ``<tool_call>``; everything after it is the model's
own choice (with the fixture's random weights, a blind one). A call is valid when it
parses, names a tool that was offered and its arguments validate against that tool's
schema. Constrained and unconstrained trials alternate, on the same seeds; speed
figures are medians of per-pair ratios, which hold on a noisy machine.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import jsonschema
import mlx.core as mx

from assistant.engine import (ChatCache, Engine, Failed, GenerationOptions, ToolCallParsed,
                              TurnStats)

PROMPT = "Use one of the tools."
TRIAL_TOKENS = 64  # a call to any built-in tool fits twice over
FREE_TEXT_TOKENS = 64


@dataclass
class Side:
    valid: int = 0
    trials: int = 0
    tps: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.valid / self.trials if self.trials else 0.0


class _OpenToolCall:
    """Forces the first token to be ``<tool_call>`` and the one after ``</tool_call>`` to
    end the turn, so a trial is one call and nothing else."""

    def __init__(self, special: dict[str, int]):
        self.open, self.close = special["<tool_call>"], special["</tool_call>"]
        self.end = special["<|im_end|>"]
        self.first = True

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        vocab = mx.arange(logits.shape[-1])
        zero = mx.zeros_like(logits)
        if self.first:
            self.first = False
            return mx.where(vocab == self.open, zero, -mx.inf)
        return mx.where(tokens[-1] == self.close, mx.where(vocab == self.end, zero, -mx.inf),
                        logits)


class _FreeText:
    """Free text only: no tool call opens and the turn never ends early."""

    def __init__(self, special: dict[str, int]):
        self.banned = mx.array([special["<tool_call>"], special["<|im_end|>"],
                                special["<|endoftext|>"]])

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        logits[..., self.banned] = -mx.inf
        return logits


def builtin_tool_schemas() -> list[dict]:
    """The built-in servers' tools as the chat offers them (the servers run for this)."""
    import tempfile
    from pathlib import Path

    from assistant.config import paths
    from assistant.mcp.catalog import Catalog
    from assistant.mcp.config import builtin_servers
    from assistant.mcp.host import McpHost

    with tempfile.TemporaryDirectory() as notes, \
            McpHost(list(builtin_servers(Path(notes)).values()), log_dir=paths().log_dir) as host:
        return [t.schema for t in Catalog(host.tools(), len).offer("", 10 ** 9)]


def measure_tool_calls(engine: Engine, trials: int, progress=lambda msg: None,
                       tools: list[dict] | None = None, constrained: bool = True,
                       baseline: int | None = None) -> dict:
    """``constrained`` False: the unconstrained trials only (a baseline, no ratios).
    ``baseline``: unconstrained trials on the first that many seeds only (a random model's
    unconstrained call never closes, so each runs to the token limit: on a slow machine
    the baseline costs most of a long run, and its rate is 0 from the first trials)."""
    baseline = trials if baseline is None else min(baseline, trials)
    tools = tools or builtin_tool_schemas()
    schemas = {t["function"]["name"]: t["function"].get("parameters") or {} for t in tools}
    special = engine.prompts.special_ids
    messages = [{"role": "user", "content": PROMPT}]
    sides = {True: Side(), False: Side()}
    chat = ChatCache()  # every trial has the same prompt: it is prefilled once
    ratios: list[float] = []
    for trial in range(trials):
        if trial % 10 == 0:
            progress(f"tool calls: trial {trial + 1} of {trials}")
        tps = {}
        for grammar in _order(trial, constrained, trial < baseline):
            options = GenerationOptions(thinking=False, max_tokens=TRIAL_TOKENS, tools=tools,
                                        seed=trial, constrain_tool_calls=grammar,
                                        logits_processors=[_OpenToolCall(special)])
            calls, stats = _run(engine, messages, options, chat)
            side = sides[grammar]
            side.trials += 1
            side.valid += len(calls) == 1 and _valid(calls[0], schemas)
            side.tps.append(tps.setdefault(grammar, stats.decode_tps))
        if len(tps) == 2 and tps[False]:
            ratios.append(tps[True] / tps[False])

    free: list[float] = []
    # One free-text pair for five trials, between 5 and 20 of them.
    for trial in range(max(5, min(trials // 5, 20)) if constrained else 0):
        progress(f"free text: pair {trial + 1}")
        tps = {}
        for grammar in _order(trial, True):
            options = GenerationOptions(thinking=False, max_tokens=FREE_TEXT_TOKENS, tools=tools,
                                        seed=trial, constrain_tool_calls=grammar,
                                        logits_processors=[_FreeText(special)])
            tps[grammar] = _run(engine, messages, options, chat)[1].decode_tps
        if tps[False]:
            free.append(tps[True] / tps[False])
    on, off = sides[True], sides[False]
    result = {"tool_call_trials": trials,
              "tool_call_trials_unconstrained": off.trials,
              "tool_call_valid_rate_unconstrained": round(off.rate, 4),
              "tool_call_decode_tps_unconstrained": _median(off.tps)}
    if constrained:
        result.update({
            "tool_call_valid_rate": round(on.rate, 4),
            "tool_call_decode_tps": _median(on.tps),
            "tool_call_decode_ratio": _median(ratios, 4),
            "tool_call_decode_ratio_range": _spread(ratios),
            "tool_call_pairs": len(ratios),
            "free_text_decode_ratio": _median(free, 4),
            "free_text_decode_ratio_range": _spread(free),
            "free_text_pairs": len(free),
        })
    return result


def _order(trial: int, constrained: bool, unconstrained: bool = True) -> tuple[bool, ...]:
    """The sides a trial runs; which runs first alternates, so neither always runs on a
    warmer machine."""
    if not (constrained and unconstrained):
        return (True,) if constrained else (False,)
    return (True, False) if trial % 2 == 0 else (False, True)


def _median(values: list[float], digits: int = 2) -> float:
    return round(statistics.median(values), digits) if values else 0.0


def _spread(values: list[float]) -> list[float] | None:
    return [round(min(values), 4), round(max(values), 4)] if values else None


def _run(engine, messages, options, chat) -> tuple[list[ToolCallParsed], TurnStats]:
    calls, stats = [], None
    for event in engine.generate(messages, options, chat):
        if isinstance(event, ToolCallParsed):
            calls.append(event)
        elif isinstance(event, TurnStats):
            stats = event
        elif isinstance(event, Failed):
            raise RuntimeError(event.error)
    return calls, stats


def _valid(call: ToolCallParsed, schemas: dict[str, dict]) -> bool:
    if call.error or call.name not in schemas or call.arguments is None:
        return False
    try:
        jsonschema.validate(call.arguments, schemas[call.name])
    except jsonschema.ValidationError:
        return False
    return True


def format_tool_table(r: dict) -> str:
    lines = [f"  {r['model']}", f"  {r['machine']}, {r['device']}, mlx {r['mlx']}",
             f"  tool calls: {r['tool_call_trials']} trials, {r['tool_call_trials_unconstrained']}"
             " of them also unconstrained, the reply forced to open <tool_call>, the rest the "
             "model's own choice"]
    if "tool_call_valid_rate" not in r:  # --no-constrain
        return "\n".join(lines + [
            f"    valid calls, unconstrained: {r['tool_call_valid_rate_unconstrained']:.3f}",
            f"    decode tok/s in calls:      {r['tool_call_decode_tps_unconstrained']:.1f}"])
    return "\n".join(lines + [
        f"    {'':<24}{'constrained':>13}{'unconstrained':>15}",
        f"    {'valid calls':<24}{r['tool_call_valid_rate']:>13.3f}"
        f"{r['tool_call_valid_rate_unconstrained']:>15.3f}",
        f"    {'decode tok/s in calls':<24}{r['tool_call_decode_tps']:>13.1f}"
        f"{r['tool_call_decode_tps_unconstrained']:>15.1f}",
        f"  tool-call decode ratio (median of {r['tool_call_pairs']} pairs): "
        f"{r['tool_call_decode_ratio']:.3f}  range {_range(r['tool_call_decode_ratio_range'])}",
        f"  free-text decode ratio, grammar on/off (median of {r['free_text_pairs']} pairs): "
        f"{r['free_text_decode_ratio']:.3f}  range {_range(r['free_text_decode_ratio_range'])}",
    ])


def _range(spread: list[float] | None) -> str:
    return f"{spread[0]:.3f}–{spread[1]:.3f}" if spread else "-"
