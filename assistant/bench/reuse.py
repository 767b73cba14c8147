"""How much of each prompt the chat's KV cache already holds when a request arrives.

Three conversations a user has every day, in the chat app's default set-up (its system
prompt, the built-in servers' tools offered in every prompt), with the turn loop's
messages and the model's own chat template: a follow-up in non-thinking mode, a
thinking follow-up after a two-round tool turn, and round 2 of a non-thinking tool
turn. The model's output is forced token by token (these are counts, not answers, so
any model will do), and each pause (the user typing, a tool running) lasts until the
idle prefill has finished. The figure is cached ÷ prompt tokens of the request that
follows the pause; what no prefill can hold is the new message itself and the few
template tokens that close it and open the answer.

    python -m assistant.bench.reuse --model M [--no-idle-prefill] [--json]

(``assistant bench`` reports the same figures; ``--no-idle-prefill`` gives them as they
were before idle prefill.)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import mlx.core as mx

from assistant.engine import ChatCache, Engine, GenerationOptions, TurnStats, resolve_model

QUESTION = "Explain in one paragraph why the sky is blue."
ANSWER = ("The sky looks blue because air molecules scatter short wavelengths of sunlight "
          "much more strongly than long ones. Blue light is scattered all over the sky and "
          "reaches our eyes from every direction, while red and yellow light mostly pass "
          "straight through.")
NOTE = """\
# Weekly sync

- Release branch cut on Tuesday; two regressions in the sync service fixed the same day.
- Build machines at 80% disk again: move old artifacts to cold storage, alert at 70%.
- Retire the old configuration format by the end of the quarter; the migration tool
  still loses comments.
- Onboarding guide: first merged change in two days instead of four.
- Open: metrics exporter as a sidecar or in process? Ken measures both next week.
"""
NOW = "2026-03-14T09:26:53+01:00 (Saturday, CET)"


def builtin_tools() -> list[dict]:
    """The built-in servers' tools, as the chat app offers them in every prompt by
    default; listed in process (the servers are built, not started)."""
    import asyncio
    import tempfile

    from assistant.tools import calculator, clock, notes

    with tempfile.TemporaryDirectory() as root:
        servers = [notes.build_server(Path(root)), clock.build_server(),
                   calculator.build_server()]
        listed = [tool for server in servers for tool in asyncio.run(server.list_tools())]
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.input_schema}} for t in listed]


def _call(name: str, **arguments) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


class _Say:
    """A logits processor that makes the model say exactly ``ids``."""

    def __init__(self, ids: list[int]):
        self.ids, self.step = ids, 0

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        token = self.ids[min(self.step, len(self.ids) - 1)]
        self.step += 1
        return mx.where(mx.arange(logits.shape[-1]) == token, mx.zeros_like(logits), -mx.inf)


class _Chat:
    """One conversation: a history kept as the turn loop keeps it, and its cache."""

    def __init__(self, engine: Engine, *, thinking: bool, tools: list[dict] | None,
                 idle_prefill: bool):
        from assistant.prompts import load

        self.engine, self.idle_prefill = engine, idle_prefill
        self.options = GenerationOptions(thinking=thinking, tools=tools, seed=0)
        system = "\n\n".join(p for p in (load("system"), tools and load("tools")) if p)
        self.history: list[dict] = [{"role": "system", "content": system}] if system else []
        self.cache = ChatCache()

    def add(self, role: str, content: str) -> None:
        self.history.append({"role": role, "content": content})

    def reply(self, script: str) -> TurnStats:
        end = self.engine.prompts.special_ids["<|im_end|>"]
        ids = self.engine.tokenizer.encode(script, add_special_tokens=False) + [end]
        options = replace(self.options, max_tokens=len(ids) + 8, logits_processors=[_Say(ids)])
        result = self.engine.generate(self.history, options, self.cache).result()
        if result.error:
            raise RuntimeError(result.error.error)
        message = {"role": "assistant", "content": result.text}
        if result.thinking:
            message["reasoning_content"] = result.thinking
        if result.tool_calls:
            message["tool_calls"] = [{"type": "function", "function": {
                "name": c.name, "arguments": c.arguments}} for c in result.tool_calls]
        self.history.append(message)
        return result.stats

    def pause(self, next_role: str) -> None:
        """The user types, or a tool runs: long enough for the idle prefill to end."""
        if self.idle_prefill:
            self.engine.prefill(self.history, self.options, self.cache, role=next_role).wait()


def measure_reuse(engine: Engine, *, idle_prefill: bool = True) -> dict:
    """The three cached ÷ prompt ratios, and the counts behind them."""
    counts: dict[str, tuple[int, int]] = {}
    tools_offered = builtin_tools()

    plain = _Chat(engine, thinking=False, tools=tools_offered, idle_prefill=idle_prefill)
    plain.add("user", QUESTION)
    plain.reply(ANSWER)
    plain.pause("user")
    plain.add("user", "Now say it again in one sentence.")
    counts["followup_plain"] = _count(plain.reply("Short light scatters most, so we see blue."))

    tools = _Chat(engine, thinking=True, tools=tools_offered, idle_prefill=idle_prefill)
    tools.add("user", "What time is it, and what is in my sync notes?")
    tools.reply("<think>\nFirst the time; the now tool gives it.\n</think>\n\n" + _call("now"))
    tools.pause("tool")
    tools.add("tool", NOW)
    tools.reply("<think>\nNow the notes: read_note with the sync file.\n</think>\n\n"
                + _call("read_note", path="sync.md"))
    tools.pause("tool")
    tools.add("tool", NOTE)
    tools.reply("<think>\nI have both; answer briefly.\n</think>\n\nIt is 09:26 on Saturday. "
                "The notes cover the release branch, disk usage, the old config format, "
                "onboarding and the metrics exporter.")
    tools.pause("user")
    tools.add("user", "Which of those needs me first?")
    counts["followup_after_tools"] = _count(tools.reply(
        "<think>\nThe disk alert is the most urgent.\n</think>\n\nThe disk usage on the "
        "build machines."))

    rounds = _Chat(engine, thinking=False, tools=tools_offered, idle_prefill=idle_prefill)
    rounds.add("user", "What time is it?")
    rounds.reply(_call("now"))
    rounds.pause("tool")
    rounds.add("tool", NOW)
    counts["tool_round"] = _count(rounds.reply("It is 09:26 on Saturday."))

    def ratio(name: str) -> float:
        cached, prompt = counts[name]
        return round(cached / prompt, 4)

    return {
        "followup_cached_ratio_plain": ratio("followup_plain"),
        "followup_cached_ratio_after_tools": ratio("followup_after_tools"),
        "tool_round_cached_ratio": ratio("tool_round"),
        "idle_prefill": idle_prefill,
        "cache_reuse": {name: {"cached_tokens": c, "prompt_tokens": p}
                        for name, (c, p) in counts.items()},
    }


def _count(stats: TurnStats) -> tuple[int, int]:
    return stats.cached_tokens, stats.prompt_tokens


def format_reuse(r: dict) -> list[str]:
    """Table lines for ``measure_reuse``'s figures."""
    where = "with idle prefill" if r["idle_prefill"] else "without idle prefill"
    rows = [f"  cache reuse when the request arrives ({where}; goal >= 0.95):"]
    for name, key, title in (
            ("followup_plain", "followup_cached_ratio_plain", "follow-up, non-thinking"),
            ("followup_after_tools", "followup_cached_ratio_after_tools",
             "thinking follow-up after 2 tool rounds"),
            ("tool_round", "tool_round_cached_ratio", "tool round 2, non-thinking")):
        c = r["cache_reuse"][name]
        rows.append(f"    {title:<40}{c['cached_tokens']:>6} of {c['prompt_tokens']:>5} cached, "
                    f"{c['prompt_tokens'] - c['cached_tokens']:>4} prefilled  {r[key]:.3f}")
    return rows


def main(argv: list[str] | None = None) -> int:
    from assistant.config import load_settings
    from assistant.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m assistant.bench.reuse",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="Hugging Face repo id or local model directory")
    parser.add_argument("--no-idle-prefill", action="store_true",
                        help="leave the cache as the last request left it (the old way)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    settings, _ = load_settings()
    try:
        with Engine(resolve_model(args.model or settings.model),
                    context_limit=settings.context_limit) as engine:
            engine.wait_loaded()
            result = measure_reuse(engine, idle_prefill=not args.no_idle_prefill)
    except UserError as exc:
        print(f"assistant: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(result, indent=2) if args.json else "\n".join(format_reuse(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
