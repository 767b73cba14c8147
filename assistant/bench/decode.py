"""The engine's speed against raw ``mlx_lm.stream_generate``: time to first token,
prefill and decode, on a short and a long prompt.

Both sides run in the same process on the same loaded model, with the same token ids,
sampler and token counts, in interleaved pairs (which side goes first alternates). Each
ratio is app ÷ raw within one pair; the median over ``--repeats`` pairs is reported with
its spread, since these machines are shared and noisy (see ``stats``). The app side
is timed as a front end sees it: from ``Engine.generate`` to the ``Finished`` event
arriving on another thread. ``--startup`` times the whole ``ask`` command instead
(``startup``).
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass

import mlx.core as mx
from mlx_lm import stream_generate
from mlx_lm.sample_utils import make_logits_processors, make_sampler

from assistant.bench.reuse import format_reuse
from assistant.bench.stats import median, ratios
from assistant.config import DIRECT_SAMPLING
from assistant.engine import ChatCache, Engine, Failed, GenerationOptions, TurnStats

DECODE_FLOOR_TPS = 55.0
DEFAULT_MAX_TOKENS = 128
SHORT_PROMPT = "Explain in one paragraph why the sky is blue."
FOLLOW_UP = "Now say it again in one sentence."
LONG_PROMPT_HEAD = "Summarize the following meeting notes in five bullet points.\n\n"
NOTES = """\
## Weekly sync, platform team

- The release branch was cut on Tuesday; two regressions in the sync service were found
  by the nightly run and fixed the same day. The flaky upload test is still quarantined.
- Disk usage on the build machines crossed 80% again. Maria will move old artifacts to
  cold storage and add an alert at 70% so that nobody has to notice it by hand.
- We agreed to retire the old configuration format by the end of the quarter. The
  migration tool handles nested sections now; comments are still lost, which blocks
  teams who document their settings inline.
- Onboarding: the new guide cut the time to a first merged change from four days to two.
  Feedback asks for a section on the local test setup and on how reviews are assigned.
- Open question: should the metrics exporter run as a sidecar or inside the service?
  Sidecar isolates failures, in-process saves memory; Ken will measure both next week.
"""


@dataclass
class Run:
    ttft_s: float
    prefill_tps: float
    decode_tps: float
    peak_memory_gb: float
    prompt_tokens: int
    generated_tokens: int


def _median(runs: list[Run]) -> Run:
    return Run(
        ttft_s=median([r.ttft_s for r in runs]),
        prefill_tps=median([r.prefill_tps for r in runs]),
        decode_tps=median([r.decode_tps for r in runs]),
        peak_memory_gb=max(r.peak_memory_gb for r in runs),
        prompt_tokens=runs[0].prompt_tokens,
        generated_tokens=runs[0].generated_tokens,
    )


FIGURES = ("ttft_s", "prefill_tps", "decode_tps", "peak_memory_gb")


def _long_prompt(tokenizer, n_tokens: int) -> str:
    head = tokenizer.encode(LONG_PROMPT_HEAD, add_special_tokens=False)
    body = tokenizer.encode(NOTES, add_special_tokens=False)
    need = max(n_tokens - len(head), 1)
    body = (body * (need // len(body) + 1))[:need]
    return LONG_PROMPT_HEAD + tokenizer.decode(body)


class Bench:
    def __init__(self, engine: Engine, max_tokens: int):
        self.engine = engine
        self.max_tokens = max_tokens
        tokenizer = engine.tokenizer
        # Same token count on both sides: the end-of-turn tokens are banned.
        self.processors = make_logits_processors(
            logit_bias={t: -float("inf") for t in tokenizer.eos_token_ids})
        self.sampling = DIRECT_SAMPLING

    def app(self, messages: list[dict], seed: int, chat: ChatCache | None = None
            ) -> tuple[Run, TurnStats]:
        options = GenerationOptions(thinking=False, max_tokens=self.max_tokens,
                                    direct_sampling=self.sampling, seed=seed,
                                    logits_processors=self.processors)
        generation = self.engine.generate(messages, options, chat)
        stats = None
        for event in generation:
            if isinstance(event, TurnStats):
                stats = event
            elif isinstance(event, Failed):
                raise RuntimeError(event.error)
        done = time.perf_counter()
        first_token = generation.submitted + stats.ttft_s
        return Run(
            ttft_s=stats.ttft_s,
            prefill_tps=stats.prompt_tps,
            decode_tps=((stats.generated_tokens - 1) / (done - first_token)
                        if stats.generated_tokens > 1 else 0.0),
            peak_memory_gb=stats.peak_memory_gb,
            prompt_tokens=stats.prompt_tokens,
            generated_tokens=stats.generated_tokens,
        ), stats

    def raw(self, messages: list[dict], seed: int) -> Run:
        return raw_run(self.engine, messages, max_tokens=self.max_tokens,
                       processors=self.processors, sampling=self.sampling, seed=seed)


def raw_run(engine: Engine, messages: list[dict], *, max_tokens: int, processors,
            sampling=DIRECT_SAMPLING, seed: int = 0) -> Run:
    """Raw ``mlx_lm.stream_generate`` on the engine's own thread and loaded model."""

    def run(model, tokenizer) -> Run:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                            enable_thinking=False)
        mx.random.seed(seed)
        mx.reset_peak_memory()
        sampler = make_sampler(temp=sampling.temperature, top_p=sampling.top_p,
                               min_p=sampling.min_p, top_k=sampling.top_k)
        start = time.perf_counter()
        first = last = None
        for response in stream_generate(model, tokenizer, ids, max_tokens=max_tokens,
                                        sampler=sampler, logits_processors=processors):
            last = time.perf_counter()
            first = first or last
            n = response.generation_tokens
        return Run(ttft_s=first - start, prefill_tps=len(ids) / (first - start),
                   decode_tps=(n - 1) / (last - first) if n > 1 and last > first else 0.0,
                   peak_memory_gb=mx.get_peak_memory() / 1e9,
                   prompt_tokens=len(ids), generated_tokens=n)

    return engine.call(run)


def measure(engine: Engine, max_tokens: int, long_prompt_tokens: int, repeats: int,
            progress=lambda msg: None) -> dict:
    bench = Bench(engine, max_tokens)
    prompts = {
        "short": [{"role": "user", "content": SHORT_PROMPT}],
        "long": [{"role": "user", "content": _long_prompt(engine.tokenizer, long_prompt_tokens)}],
    }
    progress("warming up")
    bench.app(prompts["short"], seed=0)
    bench.raw(prompts["short"], seed=0)

    figures = {}
    for name, messages in prompts.items():
        app_runs, raw_runs = [], []
        for r in range(repeats):
            progress(f"{name} prompt, pair {r + 1}/{repeats}")
            if r % 2:  # each side goes first in every other pair
                raw_runs.append(bench.raw(messages, seed=r))
                app_runs.append(bench.app(messages, seed=r)[0])
            else:
                app_runs.append(bench.app(messages, seed=r)[0])
                raw_runs.append(bench.raw(messages, seed=r))
        figures[name] = {"app": _median(app_runs), "raw": _median(raw_runs),
                         "ratios": {key: ratios([getattr(a, key) for a in app_runs],
                                                [getattr(r, key) for r in raw_runs])
                                    for key in FIGURES}}

    progress("follow-up turn")
    chat = ChatCache()
    first = bench.app(prompts["short"], seed=0, chat=chat)[1]
    answer = engine.tokenizer.decode(chat.tokens[-first.generated_tokens:])
    follow = prompts["short"] + [{"role": "assistant", "content": answer},
                                 {"role": "user", "content": FOLLOW_UP}]
    second = bench.app(follow, seed=0, chat=chat)[1]
    return report(engine, figures, second, max_tokens, repeats)


def report(engine: Engine, figures: dict, followup: TurnStats, max_tokens: int,
           repeats: int) -> dict:
    short, long = figures["short"], figures["long"]
    # The prompt on which the app keeps up worst with raw decode.
    worst = min(figures.values(), key=lambda f: f["ratios"]["decode_tps"].median)
    decode, prefill, ttft = (worst["ratios"]["decode_tps"], long["ratios"]["prefill_tps"],
                             short["ratios"]["ttft_s"])
    out = {
        "model": str(engine.model_path),
        "device": str(mx.default_device()),
        "machine": f"{platform.system()} {platform.machine()}",
        "mlx": mx.__version__,
        "max_tokens": max_tokens,
        "repeats": repeats,
        "ttft_s": short["app"].ttft_s,
        "prefill_tps": long["app"].prefill_tps,
        "decode_tps": short["app"].decode_tps,
        "peak_memory_gb": max(short["app"].peak_memory_gb, long["app"].peak_memory_gb),
        "raw_ttft_s": short["raw"].ttft_s,
        "raw_prefill_tps": long["raw"].prefill_tps,
        "raw_decode_tps": short["raw"].decode_tps,
        "raw_peak_memory_gb": max(short["raw"].peak_memory_gb, long["raw"].peak_memory_gb),
        # Medians of the per-pair ratios, with their min-max spread; decode on the worse
        # of the two prompts: the app must keep up on both.
        "decode_ratio": round(decode.median, 4),
        "decode_ratio_spread": [round(decode.low, 4), round(decode.high, 4)],
        "prefill_ratio": round(prefill.median, 4),
        "prefill_ratio_spread": [round(prefill.low, 4), round(prefill.high, 4)],
        "ttft_ratio": round(ttft.median, 4),
        "ttft_ratio_spread": [round(ttft.low, 4), round(ttft.high, 4)],
        "decode_floor_tps": DECODE_FLOOR_TPS,
        "meets_floor": short["app"].decode_tps >= DECODE_FLOOR_TPS,
        "followup_prompt_tokens": followup.prompt_tokens,
        "followup_cached_tokens": followup.cached_tokens,
        "followup_prefilled_tokens": followup.prefilled_tokens,
        "prompts": {name: {"app": vars(f["app"]), "raw": vars(f["raw"]),
                           "ratios": {k: v.as_dict() for k, v in f["ratios"].items()}}
                    for name, f in figures.items()},
    }
    return out


def format_table(r: dict) -> str:
    rows = [f"assistant bench: {r['model']}",
            f"  {r['machine']}, {r['device']}, mlx {r['mlx']}; {r['max_tokens']} tokens "
            f"decoded per run; medians of {r['repeats']} interleaved app/raw pairs", ""]
    header = (f"  {'prompt':<16}{'figure':<16}{'app':>10}{'raw mlx-lm':>12}{'app/raw':>10}"
              f"{'spread':>16}")
    rows += [header, "  " + "-" * (len(header) - 2)]
    for name, f in r["prompts"].items():
        app, raw = f["app"], f["raw"]
        label = f"{name} ({app['prompt_tokens']} tok)"
        for key, title, fmt in (("ttft_s", "TTFT s", ".3f"), ("prefill_tps", "prefill tok/s", ".1f"),
                                ("decode_tps", "decode tok/s", ".1f"),
                                ("peak_memory_gb", "peak mem GB", ".3f")):
            rel = f["ratios"][key]
            spread = f"{rel['min']:.3f}–{rel['max']:.3f}"
            rows.append(f"  {label:<16}{title:<16}{app[key]:>10{fmt}}{raw[key]:>12{fmt}}"
                        f"{rel['median']:>10.3f}{spread:>16}")
            label = ""
    rows.append("")
    low, high = r["decode_ratio_spread"]
    rows.append(f"  decode ratio (worst prompt): {r['decode_ratio']:.3f} ({low:.3f}–{high:.3f})"
                "   (TTFT: lower is better; the rest: higher is better)")
    mark = "meets" if r["meets_floor"] else "BELOW"
    rows.append(f"  decode floor {r['decode_floor_tps']:.0f} tok/s: app {r['decode_tps']:.1f} "
                f"tok/s, {mark} the floor")
    rows.append(f"  follow-up turn: {r['followup_prompt_tokens']} prompt tokens, "
                f"{r['followup_cached_tokens']} reused from the cache, "
                f"{r['followup_prefilled_tokens']} prefilled")
    if "cache_reuse" in r:
        rows += format_reuse(r)
    if "tui_decode_ratio" in r:
        low, high = r["tui_decode_ratio_spread"]
        rows.append(f"  chat app (headless): decode {r['tui_decode_tps']:.1f} tok/s against raw "
                    f"{r['tui_raw_decode_tps']:.1f}, ratio {r['tui_decode_ratio']:.3f} "
                    f"({low:.3f}–{high:.3f})")
        if r["key_latency_median_ms"] is not None:
            rows.append(f"  key pressed while streaming: handled in {r['key_latency_median_ms']:.1f}"
                        f" ms median, {r['key_latency_max_ms']:.1f} ms max "
                        f"({r['key_presses']} presses)")
        else:
            rows.append("  key pressed while streaming: no key fell inside a run this short")
        if r.get("first_frame_s") is not None:
            rows.append(f"  real command in tmux: first frame {r['first_frame_s']:.2f} s, model "
                        f"loaded {r['app_model_loaded_s']:.2f} s")
    return "\n".join(rows)
