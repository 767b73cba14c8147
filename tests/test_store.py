"""Saved chats on real SQLite: write, read back, resume, rename, delete, export, crash,
and faults on real files: damaged, truncated, locked, read-only, shared by processes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from assistant.chat.store import ChatStore, StoreError, store_file, title_from

TURN = [
    {"role": "user", "content": "What is 19*23?"},
    {"role": "assistant", "content": "", "reasoning_content": "use the calculator",
     "tool_calls": [{"type": "function",
                     "function": {"name": "calculate", "arguments": {"expression": "19*23"}}}]},
    {"role": "tool", "name": "calculate", "content": "437"},
    {"role": "assistant", "content": "It is **437**."},
]


def test_messages_round_trip_in_template_format(app_home):
    store = ChatStore()
    assert store.path == store_file() and str(store.path).startswith(str(app_home))
    chat = store.create_chat("Sums", model="qwen", thinking=False)
    for message in TURN:
        store.add_message(chat, message)
    assert store.history(chat) == TURN
    (info,) = store.chats()
    assert (info.title, info.model, info.thinking) == ("Sums", "qwen", False)
    assert [m.position for m in store.messages(chat)] == [0, 1, 2, 3]
    assert store.path.with_name("chats.db-wal").exists()  # WAL journal
    store.close()


def test_stopped_message_and_stats_are_kept():
    store = ChatStore()
    chat = store.create_chat()
    store.add_message(chat, {"role": "user", "content": "Tell me a story"})
    store.add_message(chat, {"role": "assistant", "content": "Once upon a"}, status="stopped",
                      stats={"decode_tps": 50.0})
    last = store.messages(chat)[-1]
    assert (last.status, last.stats, last.content) == ("stopped", {"decode_tps": 50.0},
                                                        "Once upon a")
    assert "*(stopped)*" in store.export_markdown(chat)


def test_rename_delete_and_order():
    store = ChatStore()
    first = store.create_chat("first")
    second = store.create_chat("second")
    store.add_message(first, {"role": "user", "content": "hi"})
    assert [c.id for c in store.chats()] == [first, second]  # the latest updated first
    store.rename(second, "renamed")
    assert store.chat(second).title == "renamed"
    store.delete(first)
    assert [c.id for c in store.chats()] == [second]
    assert store.messages(first) == []  # cascaded


def test_export_markdown():
    store = ChatStore()
    chat = store.create_chat("Sums", model="qwen")
    for message in TURN:
        store.add_message(chat, message)
    text = store.export_markdown(chat)
    assert text.startswith("# Sums\n")
    assert "## You\n\nWhat is 19*23?" in text
    assert "<summary>Thinking</summary>" in text and "use the calculator" in text
    assert 'Tool call: `calculate` `{"expression": "19*23"}`' in text
    assert "### Tool result: calculate\n\n```\n437\n```" in text
    assert text.rstrip().endswith("It is **437**.")


def test_a_crash_after_a_message_loses_nothing(app_home):
    """A process that dies right after adding a message: another connection reads it."""
    code = ("import os\nfrom assistant.chat.store import ChatStore\n"
            "s = ChatStore()\nc = s.create_chat('crash')\n"
            "s.add_message(c, {'role': 'user', 'content': 'do not lose me'})\n"
            "os._exit(9)\n")
    done = subprocess.run([sys.executable, "-c", code], check=False)
    assert done.returncode == 9
    other = sqlite3.connect(store_file())
    rows = other.execute("SELECT role, content FROM messages").fetchall()
    assert rows == [("user", "do not lose me")]
    # And a second connection sees a live store's writes at once.
    store = ChatStore()
    store.add_message(1, {"role": "assistant", "content": "kept"})
    assert other.execute("SELECT COUNT(*) FROM messages").fetchone() == (2,)
    other.close()


def test_title_from_first_line():
    assert title_from("\n  Plan the trip  \nmore") == "Plan the trip"
    long = title_from("word " * 30)
    assert long.endswith("…") and len(long) <= 49


# -- faults: real files damaged on disk, real second processes ---------------------------

def _chat_with(store, title, *texts):
    chat = store.create_chat(title)
    for text in texts:
        store.add_message(chat, {"role": "user", "content": text})
    return chat


def _saved_store(path=None):
    store = ChatStore(path)
    first = _chat_with(store, "first", "one", "two")
    store.close()  # checkpointed: everything is in the main file
    return first


def _aside(store):
    return sorted(store.path.parent.glob("chats.db.damaged-*"))


@pytest.mark.parametrize("damage", ["not-a-database", "truncated", "cut-in-header"])
def test_a_damaged_file_is_moved_aside_and_a_fresh_store_starts(damage):
    path = store_file()
    if damage == "not-a-database":
        path.parent.mkdir(parents=True)
        path.write_bytes(b"these are my notes, not a database\n" * 200)
    else:
        _saved_store()
        size = {"truncated": path.stat().st_size // 2, "cut-in-header": 60}[damage]
        with open(path, "r+b") as f:
            f.truncate(size)
    before = path.read_bytes()
    store = ChatStore()
    (aside,) = _aside(store)
    assert aside.read_bytes() == before  # kept as it was, never deleted
    assert re.fullmatch(r"chats\.db\.damaged-\d{8}-\d{6}", aside.name)
    ((title, line),) = store.take_notices()
    assert title == "Chats file damaged" and aside.name in line and "\n" not in line
    assert store.chats() == [] and store.unsaved is None
    chat = _chat_with(store, "fresh", "hello")
    store.close()
    assert ChatStore().history(chat) == [{"role": "user", "content": "hello"}]
    assert len(_aside(ChatStore())) == 1  # the fresh file is fine: nothing more moved


def _damage_chat_page(path, chat_id):
    """Overwrite the first overflow page of ``chat_id``'s long message with 0xFF."""
    db = sqlite3.connect(path)
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    rows = db.execute("SELECT pageno, path FROM dbstat WHERE name = 'messages'"
                      " AND pagetype = 'overflow' ORDER BY path").fetchall()
    db.close()
    assert rows, "the long message needs overflow pages"
    with open(path, "r+b") as f:
        f.seek((rows[0][0] - 1) * page_size)
        f.write(b"\xff" * page_size)


def test_a_damaged_page_fails_only_its_chat():
    store = ChatStore()
    good = _chat_with(store, "good", "fine", "also fine")
    bad = _chat_with(store, "bad", "short", "x" * 40_000)  # spills onto overflow pages
    other = _chat_with(store, "other", "still here")
    store.close()
    _damage_chat_page(store_file(), bad)

    store = ChatStore()
    assert _aside(store) == [] and store.take_notices() == []  # the file is mostly fine
    assert {c.title for c in store.chats()} == {"good", "bad", "other"}
    with pytest.raises(StoreError) as failed:
        store.messages(bad)
    assert failed.value.kind == "damaged" and "damaged" in str(failed.value)
    assert [m.content for m in store.messages(good)] == ["fine", "also fine"]
    store.add_message(other, {"role": "assistant", "content": "and more"})
    assert [m.content for m in store.messages(other)] == ["still here", "and more"]


def _hold_lock(path):
    """A second process that takes the write lock and keeps it until its stdin closes."""
    code = ("import sqlite3, sys\n"
            f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\nsys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_locked_store_waits_then_says_so():
    chat = _saved_store()
    holder = _hold_lock(store_file())
    try:
        store = ChatStore(timeout=0.5)
        assert [m.content for m in store.messages(chat)] == ["one", "two"]  # reads go on
        with pytest.raises(StoreError) as failed:
            store.add_message(chat, {"role": "user", "content": "three"})
        assert failed.value.kind == "locked" and "locked by another program" in str(
            failed.value)
        # A snapshot of a streaming answer does not wait: it is skipped.
        assert store.save_partial(chat, None, "partial") is None
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    store.add_message(chat, {"role": "user", "content": "three"})
    assert [m.content for m in store.messages(chat)] == ["one", "two", "three"]


def test_two_processes_adding_to_one_chat_lose_nothing():
    chat = _saved_store()
    code = ("import sys\nfrom assistant.chat.store import ChatStore\n"
            "store = ChatStore(timeout=60)\nprint('ready', flush=True)\nsys.stdin.readline()\n"
            "for i in range(150):\n"
            f"    store.add_message({chat}, {{'role': 'user',"
            " 'content': f'{sys.argv[1]} {i}'})\n")
    writers = [subprocess.Popen([sys.executable, "-c", code, name], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name in ("a", "b", "c")]
    for writer in writers:  # all started: then they write at once
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.flush()
    errors = [writer.communicate(timeout=300)[1] for writer in writers]
    assert [w.returncode for w in writers] == [0, 0, 0], errors
    messages = ChatStore().messages(chat)
    assert [m.position for m in messages] == list(range(2 + 450))
    for name in "abc":
        assert [m.content for m in messages if m.content.startswith(name + " ")] == [
            f"{name} {i}" for i in range(150)]  # each writer's messages, all, in order


@contextmanager
def unprivileged():
    """File permissions as a normal user has them (root ignores them): for the duration,
    act as ``nobody``. Paths used inside must be reachable by ``nobody``."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def open_home(monkeypatch):
    """An ASSISTANT_HOME that ``nobody`` can reach (pytest's tmp_path is private)."""
    home = Path(tempfile.mkdtemp(prefix="assistant-ro-"))
    home.chmod(0o755)
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    yield home
    for root, dirs, _ in os.walk(home):
        for name in dirs:
            (Path(root) / name).chmod(0o755)
    shutil.rmtree(home)


@pytest.mark.parametrize("read_only", ["folder", "file", "no-folder"])
def test_a_read_only_store_goes_on_unsaved(open_home, read_only):
    data = open_home / "data"
    if read_only == "no-folder":
        open_home.chmod(0o555)  # the data folder cannot even be created
    else:
        chat = _saved_store()
        (data / "chats.db").chmod(0o444) if read_only == "file" else data.chmod(0o555)
    before = sorted(p.name for p in data.iterdir()) if data.exists() else []
    kept = (data / "chats.db").read_bytes() if before else b""
    with unprivileged():
        store = ChatStore()
        ((title, line),) = store.take_notices()
        assert title == "Chats not saved" and str(data) in line and "\n" not in line
        assert store.unsaved
        if before:  # the saved chats can still be read
            assert [m.content for m in store.messages(chat)] == ["one", "two"]
        new = _chat_with(store, "unsaved", "goes on")
        store.add_message(new, {"role": "assistant", "content": "in memory"})
        assert [m.content for m in store.messages(new)] == ["goes on", "in memory"]
        store.close()
    if before:
        assert (data / "chats.db").read_bytes() == kept
        open_home.chmod(0o755)
        data.chmod(0o755)
        assert [c.title for c in ChatStore().chats()] == ["first"]


# -- streams cut off by a crash -------------------------------------------------------

_STREAM = ("import os, signal, sys\nfrom assistant.chat.store import ChatStore\n"
           "store = ChatStore()\nchat = store.create_chat('crash')\n"
           "store.add_message(chat, {'role': 'user', 'content': 'tell me'})\n"
           "at = store.save_partial(chat, None, 'Once', 'plan')\n"
           "store.save_partial(chat, at, 'Once upon a time', 'plan it')\n"
           "print(chat, flush=True)\n"
           "sys.stdin.readline()\n"
           "os.kill(os.getpid(), signal.SIGKILL)\n")


def test_a_streaming_answer_cut_by_kill_reads_as_interrupted():
    writer = subprocess.Popen([sys.executable, "-c", _STREAM], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    chat = int(writer.stdout.readline())
    # While its writer lives, another store sees a stream, not an interruption.
    assert ChatStore().messages(chat)[-1].status == "streaming"
    writer.stdin.write("die\n")
    writer.stdin.flush()
    assert writer.wait(timeout=60) == -signal.SIGKILL
    raw = sqlite3.connect(store_file())
    assert raw.execute("SELECT content, reasoning, status FROM messages WHERE position = 1"
                       ).fetchone() == ("Once upon a time", "plan it", "streaming")
    last = ChatStore().messages(chat)[-1]
    assert (last.role, last.content, last.reasoning, last.status) == (
        "assistant", "Once upon a time", "plan it", "interrupted")
    assert raw.execute("SELECT status FROM messages WHERE position = 1").fetchone() == (
        "interrupted",)  # written back, so every later reader agrees
    assert "## Assistant *(interrupted)*" in ChatStore().export_markdown(chat)
    raw.close()


def test_a_finished_stream_is_one_complete_row():
    store = ChatStore()
    chat = _chat_with(store, "s", "hi")
    at = store.save_partial(chat, None, "Hel")
    assert store.messages(chat)[-1].status == "streaming"  # our own stream is live
    assert store.save_partial(chat, at, "Hello th") == at
    final = {"role": "assistant", "content": "Hello there."}
    assert store.add_message(chat, final, status="complete", stats={"n": 1}, position=at) == at
    assert store.history(chat) == [{"role": "user", "content": "hi"}, final]
    assert store.messages(chat)[-1].status == "complete"


def test_tool_outcomes_are_kept_and_exported():
    store = ChatStore()
    chat = store.create_chat("tools")
    for message in TURN[:2]:
        store.add_message(chat, message)
    store.add_message(chat, {"role": "tool", "name": "calculate", "content": "Cancelled"},
                      status="denied")
    assert store.messages(chat)[-1].status == "denied"
    assert "### Tool result: calculate *(denied)*" in store.export_markdown(chat)


def test_lone_surrogates_are_stored_as_replacement_characters():
    store = ChatStore()
    chat = store.create_chat("bad \ud800 title", model="m\udfff")
    store.add_message(chat, {"role": "assistant", "content": "a\ud800b",
                             "reasoning_content": "r\udc80",
                             "tool_calls": [{"type": "function", "function": {
                                 "name": "t\ud800", "arguments": {"k\ud801": "v\udfff"}}}]})
    at = store.save_partial(chat, None, "p\ud800", "q\udc00")
    store.rename(chat, "renamed \ud800")
    (first, partial) = store.messages(chat)
    assert first.content == "a\ufffdb" and first.reasoning == "r\ufffd"
    assert first.tool_calls[0]["function"] == {"name": "t\ufffd",
                                               "arguments": {"k\ufffd": "v\ufffd"}}
    assert (partial.position, partial.content, partial.reasoning) == (at, "p\ufffd", "q\ufffd")
    assert store.chat(chat).title == "renamed \ufffd" and store.chat(chat).model == "m\ufffd"


OLD_SCHEMA = """
CREATE TABLE chats (id INTEGER PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL,
    updated REAL NOT NULL, model TEXT NOT NULL DEFAULT '', thinking INTEGER NOT NULL DEFAULT 1);
CREATE TABLE messages (chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    position INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL DEFAULT '',
    reasoning TEXT, tool_calls TEXT, name TEXT, status TEXT NOT NULL DEFAULT 'complete',
    stats TEXT, created REAL NOT NULL, PRIMARY KEY (chat_id, position));
INSERT INTO chats VALUES (1, 'Before', 0, 0, '', 1);
INSERT INTO messages (chat_id, position, role, content, created) VALUES (1, 0, 'user', 'hi', 0);
"""


def test_processes_opening_an_older_file_at_once_update_it_and_move_nothing():
    path = store_file()
    path.parent.mkdir(parents=True)
    for round_ in range(3):
        (path.parent / "chats.db").unlink(missing_ok=True)
        db = sqlite3.connect(path)
        db.executescript(OLD_SCHEMA)
        db.close()
        code = ("import sys\nfrom assistant.chat.store import ChatStore\n"
                "sys.stdin.readline()\nstore = ChatStore(timeout=60)\n"
                "print(store.moved_aside, store.unsaved, len(store.messages(1)))\n")
        openers = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(4)]
        for opener in openers:  # all imported and waiting: then they open at once
            opener.stdin.write("go\n")
            opener.stdin.flush()
        results = [opener.communicate(timeout=300) for opener in openers]
        assert [out.split() for out, _ in results] == [["None", "None", "1"]] * 4, results
        assert sorted(p.name for p in path.parent.iterdir() if "damaged" in p.name) == []


def test_only_corruption_counts_as_damage():
    from assistant.chat.store import _kind

    not_a_db = sqlite3.DatabaseError("file is not a database")
    not_a_db.sqlite_errorcode = 26
    assert _kind(not_a_db) == "damaged"
    for message in ("duplicate column name: writer", "FOREIGN KEY constraint failed",
                    "Cannot operate on a closed database."):
        assert _kind(sqlite3.OperationalError(message)) != "damaged", message


def test_a_store_in_a_folder_named_with_uri_characters_reads_when_read_only(open_home):
    folder = open_home / "odd?name#100%"
    store = ChatStore(folder / "chats.db")
    chat = store.create_chat("Kept")
    store.add_message(chat, {"role": "user", "content": "hello"})
    store.close()
    (folder / "chats.db").chmod(0o444)
    folder.chmod(0o555)
    try:
        with unprivileged():
            copy = ChatStore(folder / "chats.db")
            assert copy.unsaved and [m.content for m in copy.messages(chat)] == ["hello"]
            copy.close()
    finally:
        folder.chmod(0o755)
