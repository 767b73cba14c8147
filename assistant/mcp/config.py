"""Reading the ``mcpServers`` file (Claude Desktop's format) and our built-in servers.

    {"mcpServers": {
        "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "~"],
                  "env": {"KEY": "${KEY}"}, "cwd": "/tmp"},
        "remote": {"url": "http://127.0.0.1:8000/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}},
        "notes": {"disabled": true}
    }}

Our own keys per server: ``disabled``, ``timeout`` (seconds per call) and ``trust`` (let
the server's read-only/destructive annotations shape the approval default). An entry
named like a built-in server (notes, clock, calculator) with no command or url adjusts
that server instead of replacing it. The file is parsed when it is used, never at import,
and a broken file is reported with its line and column rather than stopping the app.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from assistant.config import paths, short_repr
from assistant.text import scrub_data

DEFAULT_TIMEOUT = 30.0
# Seconds a call may take: above 0, and at most an hour (JSON here allows NaN and
# Infinity, and a huge number overflows the clocks the SDK computes deadlines with).
TIMEOUT_RANGE = (0.0, 3600.0)
BUILTIN = ("notes", "clock", "calculator")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class ServerConfig:
    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    disabled: bool = False
    timeout: float = DEFAULT_TIMEOUT
    trust: bool = False
    builtin: bool = False

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"


def config_file() -> Path:
    return paths().config_dir / "mcp.json"


def builtin_servers(notes_root: Path | None = None) -> dict[str, ServerConfig]:
    """Our servers in ``tools/``, started with this interpreter so they run from a wheel."""
    servers = {name: ServerConfig(name, command=sys.executable,
                                  args=("-m", f"assistant.tools.{name}"), builtin=True)
               for name in BUILTIN}
    if notes_root is not None:
        servers["notes"] = replace(servers["notes"], args=(*servers["notes"].args, "--root",
                                                           str(notes_root)))
    return servers


def load_servers(path: Path | None = None, *, notes_root: Path | None = None
                 ) -> tuple[list[ServerConfig], list[str]]:
    """The servers to run (built-ins plus the file's) and one line per problem found.

    An unreadable or invalid file means no MCP servers at all; a bad entry skips that
    server alone.
    """
    path = path or config_file()
    servers = builtin_servers(notes_root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return list(servers.values()), []
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{path}: cannot read it ({exc}); running without MCP servers"]
    try:
        data = scrub_data(json.loads(text))
    except json.JSONDecodeError as exc:
        return [], [f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}; running without MCP "
                    "servers until it is fixed"]
    except (ValueError, RecursionError) as exc:  # a 5,000-digit number, deep nesting
        return [], [f"{path}: {_reason(exc)}; running without MCP servers until it is fixed"]
    entries = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        return [], [f'{path}: expected {{"mcpServers": {{...}}}}; running without MCP servers']

    problems: list[str] = []
    for name, entry in entries.items():
        notes: list[str] = []
        try:
            server = parse_entry(name, entry, servers.get(name), notes)
        except ValueError as exc:
            problems.append(f"{path}: server {name!r}: {exc}; skipped")
            servers.pop(name, None)
            continue
        problems += (f"{path}: server {name!r}: {note}" for note in notes)
        servers[name] = server
    return list(servers.values()), problems


def parse_entry(name: str, entry: object, builtin: ServerConfig | None = None,
                notes: list[str] | None = None) -> ServerConfig:
    """One server from its entry. A wrong shape raises ``ValueError``; a value out of its
    range is replaced by the default, with a line added to ``notes``."""
    if not isinstance(entry, dict):
        raise ValueError("expected an object")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError("names may use letters, digits, '.', '_' and '-' only")
    has_command, has_url = "command" in entry, "url" in entry
    if has_command and has_url:
        raise ValueError('give "command" (stdio) or "url" (HTTP), not both')
    base = builtin if builtin and not (has_command or has_url) else ServerConfig(name)
    if not (has_command or has_url or builtin):
        raise ValueError('needs "command" (stdio) or "url" (Streamable HTTP)')

    changes: dict = {}
    if has_command:
        changes["command"] = _expand(_string(entry, "command"))
        changes["builtin"] = False
    if has_url:
        url = _expand(_string(entry, "url"))
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url {url!r} is not http(s)")
        changes["url"] = url
        changes["builtin"] = False
    if "args" in entry:
        args = entry["args"]
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError('"args" must be a list of strings')
        changes["args"] = tuple(_expand(a) for a in args)
    for key in ("env", "headers"):
        if key in entry:
            value = entry[key]
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError(f'"{key}" must map names to strings')
            changes[key] = {k: _expand(v) for k, v in value.items()}
    if "cwd" in entry:
        changes["cwd"] = str(Path(_expand(_string(entry, "cwd"))).expanduser())
    for key in ("disabled", "trust"):
        if key in entry:
            if not isinstance(entry[key], bool):
                raise ValueError(f'"{key}" must be true or false')
            changes[key] = entry[key]
    if "timeout" in entry:
        timeout, (low, high) = entry["timeout"], TIMEOUT_RANGE
        # NaN fails every comparison, so it never gets through.
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) \
                and low < timeout <= high:
            changes["timeout"] = float(timeout)
        elif notes is not None:
            notes.append(f"timeout = {short_repr(timeout)} is not a number of seconds in "
                         f"({low:g}, {high:g}]; using {base.timeout:g}")
    return replace(base, **changes)


def _string(entry: dict, key: str) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f'"{key}" must be a non-empty string')
    return value


def _expand(value: str) -> str:
    """``${VAR}`` from the environment; an unset variable is an error, not an empty string."""
    def sub(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ValueError(f"${{{name}}} is used but not set in the environment")
        return os.environ[name]

    return _VAR.sub(sub, value)


def claude_config_file() -> Path:
    """Where Claude Desktop keeps its config on this platform."""
    if sys.platform == "darwin":
        return Path.home() / "Library/Application Support/Claude/claude_desktop_config.json"
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home())) / "Claude/claude_desktop_config.json"
    return Path.home() / ".config/Claude/claude_desktop_config.json"


def import_claude(source: Path, target: Path | None = None) -> tuple[list[str], list[str]]:
    """Copy Claude Desktop's servers into our file, keeping every server already there.

    Returns (names added, names kept because ours already had them). Raises ``ValueError``
    with a one-line reason when either file cannot be used.
    """
    target = target or config_file()
    theirs = _read_json(source).get("mcpServers")
    if not isinstance(theirs, dict):
        raise ValueError(f"{source} has no mcpServers")
    ours = _read_json(target) if target.exists() else {}
    servers = ours.setdefault("mcpServers", {})
    if not isinstance(servers, dict):
        raise ValueError(f"{target}: mcpServers is not an object")
    added, kept = [], []
    for name, entry in theirs.items():
        if name in servers:
            kept.append(name)
        else:
            servers[name] = entry  # verbatim: ${VAR} stays unexpanded on disk
            added.append(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(ours, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(target)
    return added, kept


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: {_reason(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def _reason(exc: Exception) -> str:
    """What ``json.loads`` raises besides a syntax error, in the user's words."""
    return ("it is nested too deeply" if isinstance(exc, RecursionError)
            else "a number in it has too many digits")
