"""Saved chats on real SQLite: write, read back, resume, rename, delete, export, crash."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from assistant.chat.store import ChatStore, store_file, title_from

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
