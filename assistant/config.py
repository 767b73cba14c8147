"""Every path the app uses, and the user's settings file.

All paths follow the platform's conventions (``platformdirs``); ``ASSISTANT_HOME`` moves
them all under one directory, which is what tests do.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import platformdirs

APP_NAME = "assistant"
HOME_ENV = "ASSISTANT_HOME"
DEFAULT_MODEL = "mlx-community/Qwen3-0.6B-4bit"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    log_dir: Path

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.toml"


def paths() -> Paths:
    home = os.environ.get(HOME_ENV)
    if home:
        root = Path(home).expanduser()
        return Paths(root / "config", root / "data", root / "cache", root / "logs")
    dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
    return Paths(
        Path(dirs.user_config_dir),
        Path(dirs.user_data_dir),
        Path(dirs.user_cache_dir),
        Path(dirs.user_log_dir),
    )


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    top_k: int
    min_p: float = 0.0
    presence_penalty: float = 0.0


# Qwen's published presets; greedy decoding makes Qwen3 loop, so there is none.
THINKING_SAMPLING = Sampling(temperature=0.6, top_p=0.95, top_k=20)
DIRECT_SAMPLING = Sampling(temperature=0.7, top_p=0.8, top_k=20)


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL
    thinking: bool = True
    max_tokens: int = 4096
    thinking_budget: int = 2048
    context_limit: int = 32768
    notes_dir: str = "~/Notes"
    constrained_tool_calls: bool = True
    keep_system_turns: bool = True  # the system turn's KV cache, on disk between runs
    adapter: str | None = None  # a LoRA/DoRA adapter folder loaded on top of the model
    # With ``model = "http://HOST:PORT/v1"`` (an OpenAI-compatible inference server):
    remote_model: str | None = None  # the server's name for the model; its only one if unset
    api_key_env: str | None = None  # the environment variable that holds the server's key
    request_timeout: float = 120.0  # seconds to wait for the server's next bytes
    sampling_thinking: Sampling = THINKING_SAMPLING
    sampling_direct: Sampling = DIRECT_SAMPLING


SETTINGS_TEMPLATE = f"""\
# Settings for `assistant`. Command-line flags override these.
model = "{DEFAULT_MODEL}"   # a Hugging Face repo id or a local directory
thinking = true                 # start in thinking mode
max_tokens = 4096               # longest answer, thinking included
thinking_budget = 2048          # thinking tokens before the model must answer
context_limit = 32768           # tokens of conversation kept in view
notes_dir = "~/Notes"           # the only folder the built-in notes server may touch
constrained_tool_calls = true   # a tool call can only name an offered tool, with valid arguments
keep_system_turns = true        # keep the prefilled system turn (tools) on disk: ask starts
                                # sooner; up to 4 turns, about 115 MB each for Qwen3-0.6B
# adapter = "~/.local/share/assistant/adapters/tools-1"  # a LoRA adapter (assistant tune)
# On an inference server instead (see the README): model = "http://127.0.0.1:8080/v1"
# remote_model = "Qwen/Qwen3-8B"  # the server's name for the model (its only one if unset)
# api_key_env = "MY_SERVER_KEY"   # the environment variable that holds its API key
# request_timeout = 120           # seconds to wait for the server

# temperature in (0, 2], top_p in (0, 1], top_k 0 (off) to 151935, min_p in [0, 1),
# presence_penalty in [0, 2]; a value outside its range is reported and not used.
[sampling.thinking]
temperature = 0.6
top_p = 0.95
top_k = 20

[sampling.non_thinking]
temperature = 0.7
top_p = 0.8
top_k = 20
"""

# Qwen3's longest context (with YaRN); the model's own limit applies on top of it.
MAX_CONTEXT = 131_072
# Qwen3's vocabulary: mlx-lm rejects a top_k that keeps every token, mid-answer.
QWEN3_VOCAB = 151_936


@dataclass(frozen=True)
class Rule:
    """What one setting may hold: its kind and, for numbers, its interval."""

    kind: str  # "whole", "number", "flag", "text" or "folder"
    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False  # the bound itself is excluded
    open_high: bool = False

    def holds(self, value) -> bool:
        if isinstance(value, bool) or self.kind == "flag":
            return isinstance(value, bool) and self.kind == "flag"
        if self.kind in ("text", "folder"):
            if not isinstance(value, str) or not value.strip() or _CONTROL.search(value):
                return False
            # A relative folder would follow whatever folder the app is started in.
            return self.kind == "text" or _absolute(value)
        if not isinstance(value, int if self.kind == "whole" else (int, float)):
            return False
        # NaN fails every comparison, so it never gets through.
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.kind in ("flag", "text", "folder"):
            return {"flag": "true or false", "text": "a non-empty string",
                    "folder": "an absolute folder (or one under ~)"}[self.kind]
        low, high = (f"{b:g}" if isinstance(b, float) else str(b) for b in (self.low, self.high))
        return (f"a {'whole ' if self.kind == 'whole' else ''}number in "
                f"{'(' if self.open_low else '['}{low}, {high}{')' if self.open_high else ']'}")


# Every setting and its legal values, in one place.
RULES = {
    "model":            Rule("text"),
    "thinking":         Rule("flag"),
    "max_tokens":       Rule("whole", 1, MAX_CONTEXT),
    "thinking_budget":  Rule("whole", 1, MAX_CONTEXT),
    "context_limit":    Rule("whole", 1, MAX_CONTEXT),
    "notes_dir":        Rule("folder"),
    "constrained_tool_calls": Rule("flag"),
    "keep_system_turns": Rule("flag"),
    "adapter":          Rule("folder"),
    "remote_model":     Rule("text"),
    "api_key_env":      Rule("text"),
    "request_timeout":  Rule("number", 0, 3600, open_low=True),
}
SAMPLING_RULES = {
    # 0 would be greedy in mlx-lm's make_sampler, and greedy makes Qwen3 loop.
    "temperature":      Rule("number", 0, 2, open_low=True),
    # 0 would silently switch it off; 1 keeps every token.
    "top_p":            Rule("number", 0, 1, open_low=True),
    "top_k":            Rule("whole", 0, QWEN3_VOCAB, open_high=True),  # 0: off
    "min_p":            Rule("number", 0, 1, open_high=True),  # 0: off; 1 is near-greedy
    "presence_penalty": Rule("number", 0, 2),  # Qwen advises up to 1.5 against repetition
}
_SAMPLING_TABLES = {"thinking": "sampling_thinking", "non_thinking": "sampling_direct"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def load_settings(path: Path | None = None) -> tuple[Settings, list[str]]:
    """Read the settings file; return the settings and one warning line per problem.

    A file that cannot be parsed is ignored as a whole, a bad value only for its key:
    a typo in the settings never stops the app.
    """
    path = path or paths().settings_file
    settings = Settings()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return settings, []
    except (OSError, UnicodeDecodeError) as exc:
        return settings, [f"{path}: cannot read the settings ({exc}); using the defaults"]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message ends with "(at line L, column C)".
        return settings, [f"{path}: {exc}; using the defaults until it is fixed"]
    except (ValueError, RecursionError) as exc:
        problem = ("it is nested too deeply" if isinstance(exc, RecursionError)
                   else "a number in it has too many digits")
        return settings, [f"{path}: {problem}; using the defaults until it is fixed"]

    warnings: list[str] = []
    changes: dict = {}
    for key, value in data.items():
        if key == "sampling" and not isinstance(value, dict):
            warnings.append(f"{path}: sampling = {short_repr(value)} is not a table "
                            "([sampling.thinking], [sampling.non_thinking]); ignored")
        elif key == "sampling":
            for table, table_value in value.items():
                attr = _SAMPLING_TABLES.get(table)
                if attr is None or not isinstance(table_value, dict):
                    warnings.append(f"{path}: unknown setting sampling.{table}; ignored")
                    continue
                changes[attr] = _sampling(getattr(settings, attr), table_value,
                                          f"{path}: sampling.{table}.", warnings)
        elif key in RULES:
            if RULES[key].holds(value):
                changes[key] = value
            else:
                warnings.append(_bad(f"{path}: ", key, value, getattr(settings, key)))
        else:
            warnings.append(f"{path}: unknown setting {key!r}; ignored")
    return replace(settings, **changes), warnings


def _sampling(base: Sampling, table: dict, where: str, warnings: list[str]) -> Sampling:
    changes = {}
    for key, value in table.items():
        if key not in SAMPLING_RULES:
            warnings.append(f"{where}{key}: unknown setting; ignored")
        elif SAMPLING_RULES[key].holds(value):
            changes[key] = value
        else:
            warnings.append(_bad(where, key, value, getattr(base, key)))
    return replace(base, **changes)


def _absolute(folder: str) -> bool:
    try:
        return Path(folder).expanduser().is_absolute()
    except RuntimeError:  # "~someone" who is not a user here
        return False


def _bad(where: str, key: str, value, default) -> str:
    rule = RULES.get(key) or SAMPLING_RULES[key]
    return f"{where}{key} = {short_repr(value)} is not {rule}; using {default!r}"


def short_repr(value: object) -> str:
    """A value as a warning line shows it: its repr, cut at 60 characters."""
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
