"""Saved chats in SQLite: every message is written as it is completed.

WAL journal and one short transaction per message, so a crash loses nothing the user
typed or already saw. Messages are kept in the chat template's format (role, content,
reasoning, tool calls, tool name) so a chat resumes by reading them back.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from assistant.config import paths

DEFAULT_TITLE = "New chat"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chats (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    thinking INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS messages (
    chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL DEFAULT '',
    reasoning TEXT,
    tool_calls TEXT,
    name TEXT,
    status TEXT NOT NULL DEFAULT 'complete',
    stats TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (chat_id, position)
);
"""


def store_file() -> Path:
    return paths().data_dir / "chats.db"


@dataclass(frozen=True)
class ChatInfo:
    id: int
    title: str
    created: float
    updated: float
    model: str
    thinking: bool


@dataclass(frozen=True)
class StoredMessage:
    position: int
    role: str
    content: str
    reasoning: str | None
    tool_calls: list | None
    name: str | None
    status: str  # complete | stopped
    stats: dict | None
    created: float

    def as_message(self) -> dict:
        """The message as the chat template takes it."""
        message = {"role": self.role, "content": self.content}
        if self.reasoning:
            message["reasoning_content"] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.name is not None:
            message["name"] = self.name
        return message


class ChatStore:
    """A small class over one SQLite file. Safe to call from any thread."""

    def __init__(self, path: Path | None = None):
        self.path = path or store_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- chats --------------------------------------------------------------------------

    def create_chat(self, title: str = DEFAULT_TITLE, *, model: str = "",
                    thinking: bool = True) -> int:
        now = time.time()
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT INTO chats (title, created, updated, model, thinking) VALUES (?,?,?,?,?)",
                (title, now, now, model, int(thinking)))
        return cursor.lastrowid

    def chats(self) -> list[ChatInfo]:
        """Every chat, the most recently updated first."""
        with self._lock:
            rows = self._db.execute("SELECT id, title, created, updated, model, thinking "
                                    "FROM chats ORDER BY updated DESC, id DESC").fetchall()
        return [ChatInfo(*row[:5], bool(row[5])) for row in rows]

    def chat(self, chat_id: int) -> ChatInfo | None:
        return next((c for c in self.chats() if c.id == chat_id), None)

    def rename(self, chat_id: int, title: str) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE chats SET title = ? WHERE id = ?", (title, chat_id))

    def update_chat(self, chat_id: int, *, model: str | None = None,
                    thinking: bool | None = None) -> None:
        with self._lock, self._db:
            if model is not None:
                self._db.execute("UPDATE chats SET model = ? WHERE id = ?", (model, chat_id))
            if thinking is not None:
                self._db.execute("UPDATE chats SET thinking = ? WHERE id = ?",
                                 (int(thinking), chat_id))

    def delete(self, chat_id: int) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM chats WHERE id = ?", (chat_id,))

    # -- messages -----------------------------------------------------------------------

    def add_message(self, chat_id: int, message: dict, *, status: str = "complete",
                    stats: dict | None = None) -> int:
        """Append ``message`` (chat-template format) and commit; return its position."""
        now = time.time()
        tool_calls = message.get("tool_calls")
        with self._lock, self._db:
            (position,) = self._db.execute(
                "SELECT COUNT(*) FROM messages WHERE chat_id = ?", (chat_id,)).fetchone()
            self._db.execute(
                "INSERT INTO messages (chat_id, position, role, content, reasoning, tool_calls,"
                " name, status, stats, created) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (chat_id, position, message["role"], message.get("content") or "",
                 message.get("reasoning_content"),
                 json.dumps(tool_calls, ensure_ascii=False) if tool_calls else None,
                 message.get("name"), status,
                 json.dumps(stats) if stats is not None else None, now))
            self._db.execute("UPDATE chats SET updated = ? WHERE id = ?", (now, chat_id))
        return position

    def messages(self, chat_id: int) -> list[StoredMessage]:
        with self._lock:
            rows = self._db.execute(
                "SELECT position, role, content, reasoning, tool_calls, name, status, stats,"
                " created FROM messages WHERE chat_id = ? ORDER BY position",
                (chat_id,)).fetchall()
        return [StoredMessage(pos, role, content, reasoning,
                              json.loads(calls) if calls else None, name, status,
                              json.loads(stats) if stats else None, created)
                for pos, role, content, reasoning, calls, name, status, stats, created in rows]

    def history(self, chat_id: int) -> list[dict]:
        """The messages to give the engine to go on with this chat."""
        return [m.as_message() for m in self.messages(chat_id)]

    def export_markdown(self, chat_id: int) -> str:
        chat = self.chat(chat_id)
        if chat is None:
            raise KeyError(chat_id)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.created))
        lines = [f"# {chat.title}", "", f"*{when} · {chat.model or 'model unknown'}*", ""]
        for m in self.messages(chat_id):
            stopped = " *(stopped)*" if m.status == "stopped" else ""
            if m.role == "user":
                lines += [f"## You{stopped}", "", m.content, ""]
            elif m.role == "assistant":
                lines += [f"## Assistant{stopped}", ""]
                if m.reasoning:
                    lines += ["<details><summary>Thinking</summary>", "", m.reasoning, "",
                              "</details>", ""]
                if m.content:
                    lines += [m.content, ""]
                for call in m.tool_calls or []:
                    fn = call.get("function", {})
                    args = json.dumps(fn.get("arguments"), ensure_ascii=False)
                    lines += [f"Tool call: `{fn.get('name')}` `{args}`", ""]
            elif m.role == "tool":
                lines += [f"### Tool result: {m.name}{stopped}", "", "```", m.content, "```", ""]
        return "\n".join(lines).rstrip() + "\n"


def title_from(text: str, limit: int = 48) -> str:
    """A chat's title from its first message: the first line, cut at a word."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), DEFAULT_TITLE)
    if len(line) <= limit:
        return line
    return line[:limit].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"
