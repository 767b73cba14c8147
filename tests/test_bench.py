"""`assistant bench` runs end to end and reports every figure. Speed itself is never
asserted here: it lives in the printed table (BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ASSISTANT = str(Path(sys.executable).with_name("assistant"))
KEYS = {"ttft_s", "prefill_tps", "decode_tps", "peak_memory_gb", "raw_decode_tps",
        "decode_ratio", "followup_prompt_tokens", "followup_cached_tokens",
        "followup_cached_ratio_plain", "followup_cached_ratio_after_tools",
        "tool_round_cached_ratio"}
REUSE = ("followup_cached_ratio_plain", "followup_cached_ratio_after_tools",
         "tool_round_cached_ratio")


def bench(fixture_model, *extra):
    return subprocess.run([ASSISTANT, "bench", "--model", str(fixture_model), "--max-tokens",
                           "8", "--long-prompt-tokens", "96", "--repeats", "1", *extra],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())


def test_bench_json_reports_every_figure(fixture_model):
    result = bench(fixture_model, "--json", "--no-tui")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert KEYS <= set(out)
    for side in ("app", "raw"):
        for prompt in ("short", "long"):
            run = out["prompts"][prompt][side]
            assert run["generated_tokens"] == 8  # same token count on both sides
            assert run["decode_tps"] > 0 and run["ttft_s"] > 0
    assert out["prompts"]["long"]["app"]["prompt_tokens"] >= 96
    assert out["prompts"]["long"]["app"]["prompt_tokens"] == out["prompts"]["long"]["raw"]["prompt_tokens"]
    # The follow-up turn reuses the first turn's prompt from the cache.
    assert 0 < out["followup_cached_tokens"] < out["followup_prompt_tokens"]
    assert all(0 < out[key] <= 1 for key in REUSE)


def test_cache_reuse_counts_what_idle_prefill_leaves_to_do(engine):
    """Counts, not time: with idle prefill only each new message (or tool result) and the
    template tokens around it are prefilled; without it, the history is prefilled too."""
    from assistant.bench.reuse import measure_reuse

    with_idle, without = measure_reuse(engine), measure_reuse(engine, idle_prefill=False)
    for key in REUSE:
        assert with_idle[key] >= 0.95 and with_idle[key] > without[key]
    new = {"followup_plain": "Now say it again in one sentence.",
           "followup_after_tools": "Which of those needs me first?",
           "tool_round": "2026-03-14T09:26:53+01:00 (Saturday, CET)"}
    for name, text in new.items():
        counts = with_idle["cache_reuse"][name]
        prefilled = counts["prompt_tokens"] - counts["cached_tokens"]
        # The new text, plus what closes its message and opens the answer (at most
        # "\n</tool_response><|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n").
        assert prefilled <= len(engine.prompts.counter.encode_plain(text)) + 14


def test_bench_table_with_the_chat_app(fixture_model):
    result = bench(fixture_model)
    assert result.returncode == 0, result.stderr
    for needle in ("decode tok/s", "raw mlx-lm", "app/raw", "decode floor 55 tok/s",
                   "follow-up turn", "chat app (headless)", "key pressed while streaming",
                   "cache reuse when the request arrives"):
        assert needle in result.stdout


TOOL_KEYS = {"tool_call_valid_rate", "tool_call_valid_rate_unconstrained",
             "tool_call_decode_ratio", "free_text_decode_ratio"}


def test_tool_call_bench_reports_both_sides(fixture_model):
    result = subprocess.run([ASSISTANT, "bench", "--model", str(fixture_model),
                             "--tool-calls", "3", "--baseline", "2", "--json"],
                            capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert TOOL_KEYS <= set(out) and out["tool_call_trials"] == 3
    assert out["tool_call_trials_unconstrained"] == out["tool_call_pairs"] == 2
    # Every constrained trial is a valid call: the grammar guarantees it, whatever the seed.
    assert out["tool_call_valid_rate"] == 1.0
    assert out["tool_call_decode_ratio"] > 0 and out["free_text_decode_ratio"] > 0
    assert out["free_text_pairs"] >= 5


def test_tool_call_bench_without_the_grammar(fixture_model):
    result = subprocess.run([ASSISTANT, "bench", "--model", str(fixture_model),
                             "--tool-calls", "1", "--no-constrain"],
                            capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    assert "valid calls, unconstrained" in result.stdout
    assert "constrained " not in result.stdout.replace("unconstrained", "")


def test_ratios_are_medians_of_interleaved_pairs_with_their_spread(fixture_model):
    result = subprocess.run([ASSISTANT, "bench", "--model", str(fixture_model), "--max-tokens",
                             "8", "--long-prompt-tokens", "96", "--json", "--no-tui"],
                            capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["repeats"] == 5  # the default: five pairs
    worst = min(out["prompts"].values(), key=lambda p: p["ratios"]["decode_tps"]["median"])
    for prompt in out["prompts"].values():
        for spread in prompt["ratios"].values():
            assert spread["pairs"] == 5
            assert spread["min"] <= spread["median"] <= spread["max"]
    assert out["decode_ratio"] == worst["ratios"]["decode_tps"]["median"]
    assert out["decode_ratio_spread"] == [worst["ratios"]["decode_tps"]["min"],
                                          worst["ratios"]["decode_tps"]["max"]]


def test_startup_bench_times_the_real_commands(fixture_model):
    result = subprocess.run([ASSISTANT, "bench", "--startup", "--model", str(fixture_model),
                             "--repeats", "1", "--json"], capture_output=True, text=True,
                            timeout=900, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["pairs"] == 1 and out["max_tokens"] == 8 and out["prompt"] == "Hello"
    for side in ("tools", "no_tools"):
        low, high = out[f"ask_wall_ratio_{side}_spread"]
        assert 0 < low <= out[f"ask_wall_ratio_{side}"] <= high
        assert len(out["walls_s"][side]) == 1
    raw = out["commands"]["raw"]
    assert f"-m mlx_lm generate --model {fixture_model} --max-tokens 8 --system-prompt" in raw
    assert raw.endswith("--temp 0.6 --top-p 0.95 --top-k 20 --prompt Hello")
    assert out["commands"]["no_tools"].endswith("--no-tools Hello")
