"""Saved chats in SQLite: every message is written as it is completed, and an answer
while it streams.

WAL journal and one short transaction per write, so a crash loses nothing the user
typed or already saw. Messages are kept in the chat template's format (role, content,
reasoning, tool calls, tool name) so a chat resumes by reading them back.

Faults never reach the user as a traceback. A file that is not a database or is
truncated is moved aside with a timestamp (never deleted) and a fresh store is started; a
store that cannot be written (a read-only folder or file) is copied into memory so the
chat goes on unsaved; a lock held by another process is waited on, then reported as a
``StoreError``; a damaged page fails only the reads and writes that touch it. What the
user should be told is queued in ``take_notices()``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from assistant.config import paths
from assistant.errors import UserError
from assistant.text import scrub, scrub_data

try:
    import fcntl
except ImportError:  # no flock: every other writer's stream counts as interrupted
    fcntl = None

DEFAULT_TITLE = "New chat"
BUSY_TIMEOUT = 5.0  # seconds to wait for another process's write lock
PARTIAL_TIMEOUT = 0.1  # a streaming snapshot never holds the answer up; the next one will do

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
    writer TEXT,
    PRIMARY KEY (chat_id, position)
);
"""

# SQLite's primary result codes, by what they mean for the user.
_DAMAGED = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_LOCKED = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_UNWRITABLE = {3, 8, 10, 13, 14}  # PERM, READONLY, IOERR, FULL, CANTOPEN


def store_file() -> Path:
    return paths().data_dir / "chats.db"


class StoreError(UserError):
    """A chat store operation failed; ``kind`` is locked | damaged | unwritable."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _kind(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return "unwritable"
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in _DAMAGED:
        return "damaged"
    if code in _LOCKED:
        return "locked"
    if code in _UNWRITABLE:
        return "unwritable"
    text = str(exc).lower()
    if "locked" in text:
        return "locked"
    if "readonly" in text or "unable to open" in text:
        return "unwritable"
    # Anything else (a constraint, a schema change racing another process) is no sign
    # of damage: the file must never be moved aside for it.
    return "error"


def _schema_current(db: sqlite3.Connection) -> bool:
    return "writer" in {row[1] for row in db.execute("PRAGMA table_info(messages)")}


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
    # assistant and user: complete | stopped | streaming | interrupted;
    # tool: ok | error | denied | skipped | stopped ("complete" in older files)
    status: str
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


def _loads(text: str | None):
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:  # damaged text inside a readable page
        return None


class ChatStore:
    """A small class over one SQLite file. Safe to call from any thread."""

    def __init__(self, path: Path | None = None, *, timeout: float = BUSY_TIMEOUT):
        self.path = path or store_file()
        self.timeout = timeout
        self.unsaved: str | None = None  # why chats are only kept in memory, if they are
        self.moved_aside: Path | None = None
        self._notices: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._ready = False
        self._live_fd: int | None = None
        self._token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._db = self._open()

    # -- opening, and what to do when that fails -----------------------------------------

    def _connect(self, target: str, *, uri: bool = False) -> sqlite3.Connection:
        db = sqlite3.connect(target, uri=uri, timeout=self.timeout, isolation_level=None,
                             check_same_thread=False)
        # Damaged bytes in a readable page come back as U+FFFD, not as a decode error.
        db.text_factory = lambda b: b.decode("utf-8", "replace")
        return db

    def _prepare(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        if not _schema_current(db):
            # Several processes may open a new or older file at once: the first to take
            # the write lock brings the schema up to date, the others then find it done.
            db.execute("BEGIN IMMEDIATE")
            try:
                if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages'"
                                  ).fetchone():
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        db.execute(statement)
                if not _schema_current(db):  # a file from before streams were saved
                    db.execute("ALTER TABLE messages ADD COLUMN writer TEXT")
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        db.execute("SELECT COUNT(*) FROM chats").fetchone()  # the chat list must be readable
        self._ready = True

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return self._to_memory(f"{self.path.parent} cannot be created "
                                   f"({exc.strerror or exc})")
        # SQLite opens a file it may not write without complaint, and in WAL mode such a
        # store can even seem to take writes it then drops: ask the file system first.
        try:
            for where in (self.path, self.path.parent):
                if where.exists() and not os.access(where, os.W_OK):
                    return self._to_memory(f"{where} is read-only")
        except OSError as exc:  # a folder that cannot even be searched
            return self._to_memory(f"{self.path} cannot be reached ({exc.strerror or exc})")
        try:
            db = self._connect(str(self.path))
        except sqlite3.Error as exc:
            return self._to_memory(f"{self.path} cannot be opened ({exc})")
        try:
            self._prepare(db)
            return db
        except sqlite3.DatabaseError as exc:
            kind = _kind(exc)
            if kind == "locked":
                return db  # prepared on the first call that gets through
            db.close()
            if kind == "damaged" and self.moved_aside is None:
                return self._start_over()
            return self._to_memory(f"{self.path} cannot be opened ({exc})")

    def _start_over(self) -> sqlite3.Connection:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{n}")
        try:
            for suffix in ("-wal", "-shm", ""):  # the journal belongs with its file
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    part.rename(f"{aside}{suffix}")
        except OSError as exc:
            return self._to_memory(f"{self.path} is damaged and cannot be moved ({exc})")
        self.moved_aside = aside
        self._notices.append(("Chats file damaged", (
            f"{self.path} was damaged; it is kept as {aside.name} in the same folder and a "
            "fresh one was started.")))
        return self._open()

    def _to_memory(self, reason: str) -> sqlite3.Connection:
        """Go on in memory, with a copy of whatever of the file can still be read."""
        memory = self._connect(":memory:")
        uri = self.path.absolute().as_uri()  # quoted: a path may hold '?', '#' or '%'
        for target in (f"{uri}?mode=ro", f"{uri}?immutable=1"):
            try:
                if not self.path.exists():
                    break
                source = self._connect(target, uri=True)
                try:
                    source.backup(memory)
                    break
                finally:
                    source.close()
            except (sqlite3.Error, OSError):
                continue
        try:
            self._prepare(memory)
        except sqlite3.DatabaseError:  # the copy was damaged: start empty
            memory.close()
            memory = self._connect(":memory:")
            self._prepare(memory)
        self.unsaved = reason
        self._notices.append(("Chats not saved", (
            f"{reason}: this session's chats are kept only until you quit; make it writable "
            "to save them.")))
        return memory

    def take_notices(self) -> list[tuple[str, str]]:
        """What the user should be told about the store since the last call: (title, line)."""
        with self._lock:
            notices, self._notices = self._notices, []
        return notices

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            if self._live_fd is not None:
                try:
                    os.unlink(self._live_file(self._token))
                except OSError:
                    pass
                os.close(self._live_fd)
                self._live_fd = None

    # -- one place where SQLite errors become StoreErrors ------------------------------

    def _error(self, exc: BaseException, doing: str) -> StoreError:
        kind = _kind(exc)
        if kind == "locked":
            return StoreError(kind, f"{self.path.name} is locked by another program "
                              f"(waited {self.timeout:g} s) while trying to {doing}")
        if kind == "damaged":
            return StoreError(kind, f"part of {self.path} is damaged; could not {doing}")
        return StoreError(kind, f"could not {doing} in {self.path}: {exc}")

    def _ensure_ready(self) -> None:
        if not self._ready:
            try:
                self._prepare(self._db)
            except sqlite3.DatabaseError as exc:
                if _kind(exc) == "locked":
                    raise
                self._db.close()
                self._db = self._to_memory(f"{self.path} cannot be used ({exc})")

    @contextmanager
    def _reading(self, doing: str):
        with self._lock:
            try:
                self._ensure_ready()
                yield self._db
            except sqlite3.DatabaseError as exc:
                raise self._error(exc, doing) from exc

    def _write(self, doing: str, work, *, timeout: float | None = None):
        """Run ``work(db)`` in one ``BEGIN IMMEDIATE`` transaction: the write lock is taken
        before anything is read, so what it reads (a position) is still true at commit."""
        with self._lock:
            for attempt in (1, 2):
                db = self._db
                try:
                    self._ensure_ready()
                    db = self._db
                    if timeout is not None:
                        db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        result = work(db)
                        db.execute("COMMIT")
                        return result
                    except BaseException:
                        if db.in_transaction:
                            db.execute("ROLLBACK")
                        raise
                except sqlite3.DatabaseError as exc:
                    if _kind(exc) == "unwritable" and self.unsaved is None and attempt == 1:
                        db.close()  # e.g. the disk went read-only: go on in memory
                        self._db = self._to_memory(f"{self.path} cannot be written ({exc})")
                        continue
                    raise self._error(exc, doing) from exc
                finally:
                    if timeout is not None:
                        try:
                            self._db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                        except sqlite3.Error:
                            pass

    # -- chats --------------------------------------------------------------------------

    def create_chat(self, title: str = DEFAULT_TITLE, *, model: str = "",
                    thinking: bool = True) -> int:
        now = time.time()
        return self._write("create a chat", lambda db: db.execute(
            "INSERT INTO chats (title, created, updated, model, thinking) VALUES (?,?,?,?,?)",
            (scrub(title), now, now, scrub(model), int(thinking))).lastrowid)

    def chats(self) -> list[ChatInfo]:
        """Every chat, the most recently updated first."""
        with self._reading("list the chats") as db:
            rows = db.execute("SELECT id, title, created, updated, model, thinking "
                              "FROM chats ORDER BY updated DESC, id DESC").fetchall()
        return [ChatInfo(*row[:5], bool(row[5])) for row in rows]

    def chat(self, chat_id: int) -> ChatInfo | None:
        with self._reading("read a chat") as db:
            row = db.execute("SELECT id, title, created, updated, model, thinking "
                             "FROM chats WHERE id = ?", (chat_id,)).fetchone()
        return ChatInfo(*row[:5], bool(row[5])) if row else None

    def rename(self, chat_id: int, title: str) -> None:
        self._write("rename the chat", lambda db: db.execute(
            "UPDATE chats SET title = ? WHERE id = ?", (scrub(title), chat_id)))

    def update_chat(self, chat_id: int, *, model: str | None = None,
                    thinking: bool | None = None) -> None:
        def work(db):
            if model is not None:
                db.execute("UPDATE chats SET model = ? WHERE id = ?", (scrub(model), chat_id))
            if thinking is not None:
                db.execute("UPDATE chats SET thinking = ? WHERE id = ?",
                           (int(thinking), chat_id))

        self._write("save the chat's settings", work)

    def delete(self, chat_id: int) -> None:
        self._write("delete the chat", lambda db: db.execute(
            "DELETE FROM chats WHERE id = ?", (chat_id,)))

    # -- messages -----------------------------------------------------------------------

    def add_message(self, chat_id: int, message: dict, *, status: str = "complete",
                    stats: dict | None = None, position: int | None = None) -> int:
        """Append ``message`` (chat-template format) and commit; return its position.
        With ``position`` (from ``save_partial``), that streaming row is finished instead."""
        message = scrub_data(message)
        tool_calls = message.get("tool_calls")
        values = (message["role"], message.get("content") or "",
                  message.get("reasoning_content"),
                  json.dumps(tool_calls, ensure_ascii=False) if tool_calls else None,
                  message.get("name"), status, json.dumps(stats) if stats is not None else None)

        def work(db):
            now = time.time()
            at = position
            if at is None or not db.execute(
                    "UPDATE messages SET role = ?, content = ?, reasoning = ?, tool_calls = ?,"
                    " name = ?, status = ?, stats = ?, writer = NULL"
                    " WHERE chat_id = ? AND position = ? AND role = 'assistant'"
                    " AND status IN ('streaming', 'interrupted')",
                    (*values, chat_id, at)).rowcount:
                at = self._next_position(db, chat_id)
                db.execute(
                    "INSERT INTO messages (chat_id, position, role, content, reasoning,"
                    " tool_calls, name, status, stats, created) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (chat_id, at, *values, now))
            db.execute("UPDATE chats SET updated = ? WHERE id = ?", (now, chat_id))
            return at

        return self._write("save a message", work)

    def save_partial(self, chat_id: int, position: int | None, content: str,
                     reasoning: str = "") -> int | None:
        """Save an answer while it streams, as a row marked ``streaming``; return its
        position for the next call. Never waits long: if another process holds the lock,
        this snapshot is skipped (None or the old position is returned)."""
        values = (scrub(content), scrub(reasoning) or None, self._live_token())

        def work(db):
            if position is not None:
                db.execute("UPDATE messages SET content = ?, reasoning = ?, writer = ?"
                           " WHERE chat_id = ? AND position = ?", (*values, chat_id, position))
                return position
            at = self._next_position(db, chat_id)
            db.execute("INSERT INTO messages (chat_id, position, role, content, reasoning,"
                       " status, writer, created) VALUES (?,?,'assistant',?,?,'streaming',?,?)",
                       (chat_id, at, *values, time.time()))
            return at

        try:
            return self._write("save the answer so far", work, timeout=PARTIAL_TIMEOUT)
        except StoreError as exc:
            if exc.kind == "locked":
                return position
            raise

    @staticmethod
    def _next_position(db: sqlite3.Connection, chat_id: int) -> int:
        (position,) = db.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM messages"
                                 " WHERE chat_id = ?", (chat_id,)).fetchone()
        return position

    def messages(self, chat_id: int) -> list[StoredMessage]:
        with self._reading("read this chat's messages") as db:
            rows = db.execute(
                "SELECT position, role, content, reasoning, tool_calls, name, status, stats,"
                " created, writer FROM messages WHERE chat_id = ? ORDER BY position",
                (chat_id,)).fetchall()
        messages = []
        for pos, role, content, reasoning, calls, name, status, stats, created, writer in rows:
            if status == "streaming" and not self._is_live(writer):
                status = "interrupted"
                self._mark_interrupted(chat_id, pos, writer)
            messages.append(StoredMessage(pos, role, content, reasoning, _loads(calls), name,
                                          status, _loads(stats), created))
        return messages

    def history(self, chat_id: int) -> list[dict]:
        """The messages to give the engine to go on with this chat."""
        return [m.as_message() for m in self.messages(chat_id)]

    # -- which streams are still being written -------------------------------------------
    # A streaming row names its writer; each writer holds an flock on a file of its own
    # while its store is open. The kernel drops that lock when the process dies, however
    # it dies, so a row whose writer's file can be locked by someone else was cut off by a
    # crash, while a second app open on the same file leaves a live stream alone.

    def _live_file(self, token: str) -> Path:
        return self.path.with_name(f"{self.path.name}.live") / token

    def _live_token(self) -> str | None:
        if self.unsaved is not None:
            return self._token  # memory: only this process can see the row
        if self._live_fd is None and fcntl is not None:
            try:
                self._live_file(self._token).parent.mkdir(exist_ok=True)
                fd = os.open(self._live_file(self._token), os.O_CREAT | os.O_RDWR, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._live_fd = fd
            except OSError:
                return None  # nobody can tell it is live: it will read as interrupted
        return self._token

    def _is_live(self, writer: str | None) -> bool:
        if writer is None or fcntl is None:
            return False
        if writer == self._token:
            return True
        try:
            fd = os.open(self._live_file(writer), os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        try:
            os.unlink(self._live_file(writer))  # its owner is gone
        except OSError:
            pass
        finally:
            os.close(fd)
        return False

    def _mark_interrupted(self, chat_id: int, position: int, writer: str | None) -> None:
        try:
            self._write("mark an interrupted answer", lambda db: db.execute(
                "UPDATE messages SET status = 'interrupted', writer = NULL WHERE chat_id = ?"
                " AND position = ? AND status = 'streaming' AND writer IS ?",
                (chat_id, position, writer)), timeout=PARTIAL_TIMEOUT)
        except StoreError:
            pass  # read as interrupted anyway; the next reader tries again

    # -- export -------------------------------------------------------------------------

    def export_markdown(self, chat_id: int) -> str:
        chat = self.chat(chat_id)
        if chat is None:
            raise KeyError(chat_id)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.created))
        lines = [f"# {chat.title}", "", f"*{when} · {chat.model or 'model unknown'}*", ""]
        for m in self.messages(chat_id):
            mark = f" *({m.status})*" if m.status in ("stopped", "interrupted") else ""
            if m.role == "user":
                lines += [f"## You{mark}", "", m.content, ""]
            elif m.role == "assistant":
                lines += [f"## Assistant{mark}", ""]
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
                status = m.status if m.status not in ("complete", "ok") else ""
                mark = f" *({status})*" if status else ""
                lines += [f"### Tool result: {m.name}{mark}", "", "```", m.content, "```", ""]
        return "\n".join(lines).rstrip() + "\n"


def title_from(text: str, limit: int = 48) -> str:
    """A chat's title from its first message: the first line, cut at a word."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), DEFAULT_TITLE)
    if len(line) <= limit:
        return line
    return line[:limit].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"
