"""How fast the chat app is: it must not slow generation, keys must stay quick while it
streams, and the first frame must come before the model has loaded.

    measure_tui(model_path, max_tokens, prompt)  # headless app vs raw mlx-lm, one process
    measure_startup(model_path)                   # the real command in tmux

Both sides of ``measure_tui`` run on the same loaded model, the same templated prompt and
the same number of tokens (end-of-turn tokens are banned), in ``repeats`` interleaved
pairs; the decode ratio is the median of the per-pair ratios, with their spread
(``stats``). TESTING.md §5: these are figures to print, never test assertions.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from textual import events
from textual.binding import Binding

from assistant.bench.stats import ratios
from assistant.chat.store import ChatStore
from assistant.config import DIRECT_SAMPLING, Settings
from assistant.tui.app import ChatApp, create_app

DEFAULT_PROMPT = "Explain in one paragraph why the sky is blue."


class _TimedApp(ChatApp):
    """The app with one invisible key whose handling time is recorded."""

    BINDINGS = ChatApp.BINDINGS + [Binding("f12", "ping", show=False)]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pinged: list[float] = []

    def action_ping(self) -> None:
        self.pinged.append(time.perf_counter())


def measure_tui(model_path: Path | str, max_tokens: int = 128, prompt: str = DEFAULT_PROMPT,
                *, repeats: int = 2) -> dict:
    """Decode speed inside the running app against raw ``stream_generate``, and how long
    a key pressed while the app streams takes to be handled."""
    return asyncio.run(_measure_tui(Path(model_path), max_tokens, prompt, repeats))


async def _measure_tui(model_path: Path, max_tokens: int, prompt: str, repeats: int) -> dict:
    from mlx_lm.sample_utils import make_logits_processors

    from assistant.engine import Engine

    with Engine(model_path) as engine, tempfile.TemporaryDirectory() as tmp:
        engine.wait_loaded()
        ban = make_logits_processors(
            logit_bias={t: -float("inf") for t in engine.tokenizer.eos_token_ids})
        base = create_app(Settings(thinking=False), engine=engine, no_tools=True)
        app = _TimedApp(model=str(model_path), settings=base.settings, thinking=False,
                        servers=[], engine=engine, store=ChatStore(Path(tmp) / "chats.db"),
                        options={"logits_processors": ban, "max_tokens": max_tokens,
                                 "direct_sampling": DIRECT_SAMPLING, "seed": 0})
        tui, raw, latencies = [], [], []
        async with app.run_test(size=(80, 24)) as pilot:
            while not app._engine_ready.is_set():
                await pilot.pause(0.05)
            messages = app._system(None) + [{"role": "user", "content": prompt}]
            _raw_decode(engine, messages, ban, 8)  # warm-up
            for run in range(repeats + 1):  # the first app run is a warm-up too
                await app.action_new_chat()
                app.input.text = prompt
                await pilot.press("enter")
                sent: list[float] = []
                app.pinged.clear()
                while app.busy:  # a key every 50 ms while it streams, as a terminal sends it
                    sent.append(time.perf_counter())
                    app.post_message(events.Key("f12", None))
                    await asyncio.sleep(0.05)
                await app.workers.wait_for_complete()
                await pilot.pause()
                if run:
                    latencies += [done - at for at, done in zip(sent, app.pinged)]
                if run:
                    stats = app.last_stats[-1]
                    assert stats.generated_tokens == max_tokens, stats
                    tui.append(stats.decode_tps)
                    raw.append(_raw_decode(engine, messages, ban, max_tokens))
            await app.action_quit()
        app.close_backends()
    latencies.sort()
    ratio = ratios(tui, raw)
    return {
        "model": str(model_path),
        "max_tokens": max_tokens,
        "tui_decode_tps": statistics.median(tui),
        "raw_decode_tps": statistics.median(raw),
        "tui_decode_ratio": ratio.median,
        "tui_decode_ratio_spread": [ratio.low, ratio.high],
        "pairs": ratio.pairs,
        "key_presses": len(latencies),
        "key_latency_median_ms": statistics.median(latencies) * 1000 if latencies else None,
        "key_latency_max_ms": latencies[-1] * 1000 if latencies else None,
    }


def _raw_decode(engine, messages: list[dict], processors, max_tokens: int) -> float:
    """Raw ``mlx_lm.stream_generate`` on the engine's thread, as ``assistant bench`` does."""
    from assistant.bench.decode import raw_run

    return raw_run(engine, messages, max_tokens=max_tokens, processors=processors).decode_tps


# -- the real command in tmux -----------------------------------------------------------

class Tmux:
    """One tmux session on a private server socket, driven like a person would."""

    def __init__(self, width: int = 80, height: int = 24):
        self.socket = f"assistant-{uuid.uuid4().hex[:8]}"
        self.width, self.height = width, height

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True).stdout

    def start(self, command: list[str], env: dict[str, str]) -> None:
        line = " ".join(["env", *(f"{k}={v}" for k, v in env.items()), *command])
        self._tmux("-f", "/dev/null", "new-session", "-d", "-s", "main", "-x",
                   str(self.width), "-y", str(self.height), line)
        self._tmux("set-option", "-t", "main", "remain-on-exit", "on")

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "main")

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "main", *keys)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "main", "-l", text)

    def wait_for(self, text: str, timeout: float = 30.0, every: float = 0.01) -> float:
        """Poll the screen until ``text`` shows; return the time it was first seen."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if text in self.screen():
                return time.perf_counter()
            time.sleep(every)
        raise TimeoutError(f"{text!r} did not appear; the screen shows:\n{self.screen()}")

    def exited(self) -> bool:
        return self._tmux("display", "-p", "-t", "main", "#{pane_dead}").strip() == "1"

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)


def assistant_command() -> list[str]:
    return [str(Path(sys.executable).with_name("assistant"))]


def processes_with(marker: str) -> list[str]:
    """Running processes whose environment contains ``marker`` (our children included)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                state = (proc / "stat").read_text().split(") ")[-1][:1]
                if state != "Z":
                    found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def measure_startup(model_path: Path | str, *, mcp: bool = False) -> dict:
    """Process start to first frame, to model loaded, and quit to process gone, for the
    real ``assistant`` command in an 80x24 tmux pane."""
    if shutil.which("tmux") is None:
        raise RuntimeError("tmux is not installed")
    with tempfile.TemporaryDirectory() as home:
        tmux = Tmux()
        env = {"ASSISTANT_HOME": home, "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color"}
        command = [*assistant_command(), "--model", str(model_path), "--no-think"]
        if not mcp:
            command.append("--no-tools")
        try:
            start = time.perf_counter()
            tmux.start(command, env)
            first_frame = tmux.wait_for("MCP ")  # the status bar: the first full frame
            loaded = tmux.wait_for("ctx ", timeout=120)
            quit_at = time.perf_counter()
            tmux.send("C-q")
            while not tmux.exited():
                time.sleep(0.01)
            gone = time.perf_counter()
            left = [p for p in processes_with(home) if "tmux" not in p]
        finally:
            tmux.kill()
    return {"first_frame_s": first_frame - start, "model_loaded_s": loaded - start,
            "quit_s": gone - quit_at, "processes_left": left}


def main() -> None:
    """``python -m assistant.bench.chat_app MODEL_DIR [MAX_TOKENS]``: print the figures."""
    model = sys.argv[1]
    tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    for name, figures in (("startup", measure_startup(model)),
                          ("tui", measure_tui(model, tokens))):
        print(name)
        for key, value in figures.items():
            print(f"  {key:24} {value:.3f}" if isinstance(value, float)
                  else f"  {key:24} {value}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
