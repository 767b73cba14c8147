"""Every path the app uses, and the user's settings file.

All paths follow the platform's conventions (``platformdirs``); ``ASSISTANT_HOME`` moves
them all under one directory, which is what tests do.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
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

[sampling.thinking]
temperature = 0.6
top_p = 0.95
top_k = 20

[sampling.non_thinking]
temperature = 0.7
top_p = 0.8
top_k = 20
"""

_SCALARS = {"model": str, "thinking": bool, "max_tokens": int, "thinking_budget": int,
            "context_limit": int, "notes_dir": str}
_SAMPLING_TABLES = {"thinking": "sampling_thinking", "non_thinking": "sampling_direct"}


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

    warnings: list[str] = []
    changes: dict = {}
    for key, value in data.items():
        if key == "sampling" and isinstance(value, dict):
            for table, table_value in value.items():
                attr = _SAMPLING_TABLES.get(table)
                if attr is None or not isinstance(table_value, dict):
                    warnings.append(f"{path}: unknown setting sampling.{table}; ignored")
                    continue
                changes[attr] = _sampling(getattr(settings, attr), table_value,
                                          f"{path}: sampling.{table}", warnings)
        elif key in _SCALARS:
            if _is(value, _SCALARS[key]) and (_SCALARS[key] is not int or value > 0):
                changes[key] = value
            else:
                warnings.append(f"{path}: {key} = {value!r} is not a valid "
                                f"{_describe(_SCALARS[key])}; using {getattr(settings, key)!r}")
        else:
            warnings.append(f"{path}: unknown setting {key!r}; ignored")
    return replace(settings, **changes), warnings


def _sampling(base: Sampling, table: dict, where: str, warnings: list[str]) -> Sampling:
    names = {f.name: f.type for f in fields(Sampling)}
    changes = {}
    for key, value in table.items():
        if key not in names:
            warnings.append(f"{where}.{key}: unknown setting; ignored")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            warnings.append(f"{where}.{key} = {value!r} is not a number >= 0; ignored")
        elif key == "top_k" and not isinstance(value, int):
            warnings.append(f"{where}.top_k = {value!r} is not a whole number; ignored")
        else:
            changes[key] = value
    return replace(base, **changes)


def _is(value, kind) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _describe(kind) -> str:
    return {str: "string", bool: "true/false", int: "positive whole number"}[kind]
