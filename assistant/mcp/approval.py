"""Who may run which tool: ask, allow for this chat, always, never.

Nothing runs without consent by default. Stored choices ("always" / "never") live in a
JSON file per server and tool and can be revoked; "for this chat" lives in memory. A
server's annotations are claims, so they only shape the default for servers the user
marked ``trust``: there a tool that says it is read-only and not destructive runs
without asking.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from assistant.config import paths
from assistant.mcp.toolinfo import ToolInfo

Choice = Literal["once", "chat", "always", "deny", "never"]
Policy = Literal["allow", "deny", "ask"]
CHOICES: tuple[Choice, ...] = ("once", "chat", "always", "deny", "never")


@dataclass(frozen=True)
class ApprovalRequest:
    tool: ToolInfo
    arguments: dict


# The front end's prompt: the CLI asks on the terminal, the TUI shows a modal.
Approver = Callable[[ApprovalRequest], Choice]


def approvals_file() -> Path:
    return paths().config_dir / "approvals.json"


class ApprovalStore:
    """The stored "always" and "never" choices, by server and tool."""

    def __init__(self, path: Path | None = None):
        self.path = path or approvals_file()

    def all(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return {}  # a damaged file means "ask again", the safe side
        return data if isinstance(data, dict) else {}

    def get(self, server: str, tool: str) -> str | None:
        tools = self.all().get(server)
        value = tools.get(tool) if isinstance(tools, dict) else None
        return value if value in ("always", "never") else None

    def set(self, server: str, tool: str, choice: str | None) -> None:
        """Store "always" or "never"; ``None`` revokes the stored choice."""
        data = self.all()
        tools = data.setdefault(server, {})
        if choice is None:
            tools.pop(tool, None)
            if not tools:
                data.pop(server)
        else:
            tools[tool] = choice
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.path)


class Approvals:
    """The policy for one chat: stored choices, this chat's allowances, trust."""

    def __init__(self, store: ApprovalStore, trusted: set[str] = frozenset()):
        self.store = store
        self.trusted = set(trusted)
        self.chat_allowed: set[tuple[str, str]] = set()

    def policy(self, tool: ToolInfo) -> Policy:
        stored = self.store.get(tool.server, tool.name)
        if stored == "never":
            return "deny"
        if stored == "always" or (tool.server, tool.name) in self.chat_allowed:
            return "allow"
        if tool.server in self.trusted and tool.read_only is True and tool.destructive is not True:
            return "allow"
        return "ask"

    def remember(self, tool: ToolInfo, choice: Choice) -> bool:
        """Record the user's answer; return whether the call may run."""
        if choice == "chat":
            self.chat_allowed.add((tool.server, tool.name))
        elif choice in ("always", "never"):
            self.store.set(tool.server, tool.name, choice)
        return choice in ("once", "chat", "always")
