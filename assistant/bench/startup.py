"""``assistant bench --startup``: how long ``assistant ask`` takes, start to exit,
against ``python -m mlx_lm generate`` with the same model, prompt and token count.

The raw side gets what ``ask`` gives the model by default: the app's system prompt and
the thinking mode's sampling preset (mlx-lm alone decodes greedily, and on the tiny
fixture an argmax is several times cheaper than top-k/top-p over 151,936 logits, which
would be measured as start-up). The tool definitions are left out of the raw side: they
are part of what ``ask`` with tools costs. After the warm-up group their system turn is
saved (``engine/system_turn.py``) and later runs load it, as every run after a user's
first does; the first run with a new tool set prefills it once.

Each side is the real command in a fresh process, as a user runs it. The three commands
(raw mlx-lm, ``ask`` with the built-in servers, ``ask --no-tools``) run as one group,
in an order that rotates from group to group, after one warm-up group (which also leaves
the servers' tool lists in the bench's own app home, as any earlier run would). Each
ratio is ask ÷ raw within one group; the median over the groups is reported with its
spread (see ``stats``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from assistant.bench.stats import MIN_PAIRS, median, ratios
from assistant.errors import UserError

PROMPT = "Hello"
MAX_TOKENS = 8
SIDES = ("raw", "tools", "no_tools")


def commands(model: Path, max_tokens: int) -> dict[str, list[str]]:
    from assistant.config import THINKING_SAMPLING as preset
    from assistant.prompts import load

    script = Path(sys.executable).with_name("assistant")
    ask = [str(script)] if script.exists() else [sys.executable, "-m", "assistant"]
    ask += ["ask", "--model", str(model), "--max-tokens", str(max_tokens), PROMPT]
    return {
        "raw": [sys.executable, "-m", "mlx_lm", "generate", "--model", str(model),
                "--max-tokens", str(max_tokens), "--system-prompt", load("system"),
                "--temp", str(preset.temperature), "--top-p", str(preset.top_p),
                "--top-k", str(preset.top_k), "--prompt", PROMPT],
        "tools": ask,
        "no_tools": [*ask[:-1], "--no-tools", PROMPT],
    }


def _wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"the bench run `{' '.join(command[:3])} …` failed "
                        f"(exit {done.returncode}): {last}")
    return wall


def measure_startup(model: Path, *, max_tokens: int = MAX_TOKENS, pairs: int = MIN_PAIRS,
                    progress=lambda msg: None) -> dict:
    runs = commands(model, max_tokens)
    walls: dict[str, list[float]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="assistant-bench-") as home:
        config = Path(home) / "config"
        config.mkdir()
        (config / "settings.toml").write_text(f'notes_dir = "{Path(home) / "notes"}"\n')
        env = {**os.environ, "ASSISTANT_HOME": home, "HF_HUB_OFFLINE": "1"}
        progress("start-up: warming up")
        for side in SIDES:
            _wall(runs[side], env)
        for n in range(pairs):
            progress(f"start-up: group {n + 1}/{pairs}")
            order = SIDES[n % 3:] + SIDES[:n % 3]  # each side leads in turn
            for side in order:
                walls[side].append(_wall(runs[side], env))
    tools = ratios(walls["tools"], walls["raw"])
    no_tools = ratios(walls["no_tools"], walls["raw"])
    return {
        "model": str(model),
        "max_tokens": max_tokens,
        "prompt": PROMPT,
        "pairs": pairs,
        "ask_wall_ratio_tools": round(tools.median, 4),
        "ask_wall_ratio_tools_spread": [round(tools.low, 4), round(tools.high, 4)],
        "ask_wall_ratio_no_tools": round(no_tools.median, 4),
        "ask_wall_ratio_no_tools_spread": [round(no_tools.low, 4), round(no_tools.high, 4)],
        "raw_wall_s": round(median(walls["raw"]), 3),
        "ask_wall_s_tools": round(median(walls["tools"]), 3),
        "ask_wall_s_no_tools": round(median(walls["no_tools"]), 3),
        "walls_s": {side: [round(w, 3) for w in values] for side, values in walls.items()},
        "commands": {side: shlex.join(command) for side, command in runs.items()},
    }


def format_table(r: dict) -> str:
    rows = [f"assistant bench --startup: {r['model']}",
            f"  `ask --max-tokens {r['max_tokens']} \"{r['prompt']}\"` against "
            f"`python -m mlx_lm generate`, start to exit; median of {r['pairs']} interleaved "
            "groups", "",
            f"  {'command':<22}{'wall s':>9}{'ask/raw':>10}{'spread':>18}",
            "  " + "-" * 57,
            f"  {'mlx_lm generate':<22}{r['raw_wall_s']:>9.2f}"]
    for side, label in (("tools", "ask"), ("no_tools", "ask --no-tools")):
        low, high = r[f"ask_wall_ratio_{side}_spread"]
        rows.append(f"  {label:<22}{r[f'ask_wall_s_{side}']:>9.2f}"
                    f"{r[f'ask_wall_ratio_{side}']:>10.3f}{f'{low:.3f}–{high:.3f}':>18}")
    return "\n".join(rows)
