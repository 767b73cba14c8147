"""notes/reader.py on real files: what is read, what is skipped and why, never written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from assistant.notes.reader import ScanResult, decode_text, find_notes, looks_binary

INBOX = """---
title: Inbox
tags: [work, weekly]
---

# Inbox

- [ ] Call the plumber about the kitchen sink
- [x] Send the Q3 report to Dana
- Read *Designing Data-Intensive Applications*, chapter 5

## Snippet

```bash
rsync -av --delete ~/notes/ backup:/srv/notes/
```
"""

ATLAS = """# Project Atlas

Atlas replaces the nightly batch import with a streaming pipeline. The first milestone
is a shadow run next to the old job; we compare row counts every morning.

## Risks

1. The vendor API rate-limits at 100 requests per minute.
2. Nobody owns the old cron job any more.
"""

DIARY_ZH = """# 2024年5月1日 星期三

今天天气很好，我们去公园散步。下午读完了《三体》的第二部，感觉比第一部更精彩！

## 待办

- 给妈妈打电话
- 整理书架
"""

LEGACY_EN = "Café notes\r\n\r\nMet the résumé team at the café — naïve “quotes” everywhere.\r\n"
LEGACY_ZH = "# 会议记录\n\n今天我们讨论了项目的进度。下一步是完成测试！\n"

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)) * 4


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def reasons(result: ScanResult) -> dict[str, str]:
    return {s.display: s.reason for s in result.skipped}


def displays(result: ScanResult) -> list[str]:
    return [n.display for n in result.notes]


@pytest.fixture
def notes(tmp_path) -> Path:
    """A realistic notes folder, with one of every kind of trouble."""
    root = tmp_path / "notes"
    write(root / "inbox.md", INBOX)
    write(root / "projects" / "atlas.markdown", ATLAS)
    write(root / "日记" / "2024-05-01.md", DIARY_ZH)
    write(root / "todo.txt", "buy milk\nrenew passport before June\n")
    write(root / "legacy.txt", LEGACY_EN.encode("cp1252"))
    write(root / "会议.md", LEGACY_ZH.encode("gb18030"))
    write(root / "photo.jpg", PNG)
    write(root / "scan.md", PNG)  # binary, whatever its name says
    write(root / "terminal.md", bytes(range(1, 32)) * 40 + b"some text")  # control soup
    write(root / "empty.md", "\n\n   \n")
    write(root / ".draft.md", "# not yet\n")
    write(root / ".obsidian" / "workspace.md", "# app state\n")
    write(root / ".obsidian" / "plugins" / "a.md", "# plugin\n")
    os.mkfifo(root / "pipe.md")
    return root


def test_reads_notes_and_skips_the_rest_with_reasons(notes):
    result = find_notes([notes])

    assert displays(result) == [
        "inbox.md", "legacy.txt", "projects/atlas.markdown", "todo.txt", "会议.md",
        "日记/2024-05-01.md",
    ]
    assert reasons(result) == {
        ".draft.md": "hidden",
        ".obsidian": "hidden",  # once, not every file inside it
        "empty.md": "empty",
        "photo.jpg": "not a note (pattern)",
        "pipe.md": "not a regular file",
        "scan.md": "binary file",
        "terminal.md": "binary file",
    }
    inbox = result.notes[0]
    raw = (notes / "inbox.md").read_bytes()
    assert inbox.path == notes / "inbox.md"
    assert inbox.text == INBOX
    assert inbox.bytes == len(raw)
    assert inbox.sha256 == hashlib.sha256(raw).hexdigest()
    assert inbox.encoding_warning is None
    diary = result.notes[-1]
    assert diary.text == DIARY_ZH and diary.encoding_warning is None


def test_legacy_encodings_are_decoded_with_a_warning(notes):
    by_name = {n.display: n for n in find_notes([notes]).notes}

    legacy = by_name["legacy.txt"]
    assert legacy.text == LEGACY_EN.replace("\r\n", "\n")
    assert legacy.encoding_warning == "decoded as cp1252, not UTF-8"
    # The cache key is the raw bytes, not the decoding.
    assert legacy.sha256 == hashlib.sha256(LEGACY_EN.encode("cp1252")).hexdigest()

    chinese = by_name["会议.md"]
    assert chinese.text == LEGACY_ZH
    assert chinese.encoding_warning == "decoded as gb18030, not UTF-8"


@pytest.mark.parametrize("raw, text, warning", [
    ("plain ascii".encode(), "plain ascii", None),
    ("\ufeff# BOM first\r\n".encode(), "# BOM first\n", None),
    ("# UTF-16 note\n".encode("utf-16"), "# UTF-16 note\n", "decoded as utf-16, not UTF-8"),
    ("# UTF-32 note\n".encode("utf-32"), "# UTF-32 note\n", "decoded as utf-32, not UTF-8"),
    ("Grüße aus München".encode("cp1252"), "Grüße aus München", "decoded as cp1252, not UTF-8"),
    ("中文笔记。".encode("gb18030"), "中文笔记。", "decoded as gb18030, not UTF-8"),
])
def test_decode_text(raw, text, warning):
    assert decode_text(raw) == (text, warning)
    assert not looks_binary(raw)


def test_decode_text_without_charset_normalizer(monkeypatch):
    monkeypatch.setitem(sys.modules, "charset_normalizer", None)  # as if not installed
    assert decode_text("Grüße".encode("cp1252")) == ("Grüße", "decoded as cp1252, not UTF-8")
    # 0x81 is not a cp1252 character; latin-1 decodes any byte.
    assert decode_text(b"caf\xe9 \x81") == ("caf\xe9 \x81", "decoded as latin-1, not UTF-8")


def test_oversize_files_are_skipped_before_reading(tmp_path):
    write(tmp_path / "huge.md", b"# log\n" + b"x" * 3_200_000)
    write(tmp_path / "small.md", "# fits\n" + "y" * 900)

    assert reasons(find_notes([tmp_path])) == {"huge.md": "larger than 1 MB (3.2 MB)"}
    assert reasons(find_notes([tmp_path], max_bytes=500)) == {
        "huge.md": "larger than 500 bytes (3.2 MB)",
        "small.md": "larger than 500 bytes (907 bytes)",
    }
    write(tmp_path / "edge.md", "z" * 1_000_001)
    assert reasons(find_notes([tmp_path / "edge.md"])) == {
        "edge.md": "larger than 1 MB (1,000,001 bytes)"}


def test_gitignore_in_root_and_subfolder(tmp_path):
    root = tmp_path / "vault"
    write(root / ".gitignore", "drafts/\n*.tmp.md\n/only-root.md\n")
    write(root / "only-root.md", "# ignored at the top\n")
    write(root / "a.tmp.md", "# scratch\n")
    write(root / "drafts" / "idea.md", "# half an idea\n")
    write(root / "kept.md", "# kept\n")
    write(root / "sub" / ".gitignore", "secret.md\n!keep.tmp.md\n")
    write(root / "sub" / "only-root.md", "# a '/'-anchored pattern applies to its own folder\n")
    write(root / "sub" / "secret.md", "# password hints\n")
    write(root / "sub" / "keep.tmp.md", "# the deeper .gitignore re-includes me\n")
    write(root / "sub" / "deeper" / "secret.md", "# no slash: matches at any depth\n")
    write(root / "other" / "secret.md", "# the sub/.gitignore does not reach here\n")

    result = find_notes([root])

    assert displays(result) == [
        "kept.md", "other/secret.md", "sub/keep.tmp.md", "sub/only-root.md"]
    assert reasons(result) == {
        "a.tmp.md": "ignored by .gitignore",
        "drafts": "ignored by .gitignore",  # once, not its contents
        "only-root.md": "ignored by .gitignore",
        "sub/deeper/secret.md": "ignored by .gitignore",
        "sub/secret.md": "ignored by .gitignore",
    }


def test_symlinks_are_followed_once_inside_and_loops_and_broken_ones_reported(tmp_path):
    root = tmp_path / "notes"
    elsewhere = tmp_path / "elsewhere"
    write(root / "a.md", "# A\n")
    write(root / "sub" / "b.md", "# B\n")
    write(elsewhere / "c.md", "# C from outside the folder\n")
    (root / "alias.md").symlink_to("a.md")
    (root / "outside").symlink_to(elsewhere, target_is_directory=True)
    (root / "sub" / "up").symlink_to("..", target_is_directory=True)  # back to an ancestor
    (root / "sub-again").symlink_to("sub", target_is_directory=True)
    (root / "broken.md").symlink_to("missing.md")
    (root / "self.md").symlink_to("self.md")
    (root / "ping.md").symlink_to("pong.md")
    (root / "pong.md").symlink_to("ping.md")

    result = find_notes([root])

    assert displays(result) == ["a.md", "sub/b.md"]
    assert reasons(result) == {
        "alias.md": "same file as a.md",
        "broken.md": "broken symlink",
        "outside": "symlink to a folder outside the folders given",
        "ping.md": "symlink loop",
        "pong.md": "symlink loop",
        "self.md": "symlink loop",
        "sub-again": "same folder as sub",
        "sub/up": "symlink loop",
    }
    # Given too, the other folder is inside the scan: the link is followed, once.
    both = find_notes([root, elsewhere])
    assert displays(both) == ["a.md", "outside/c.md", "sub/b.md"]
    assert both.notes[1].path == root / "outside" / "c.md"  # as found, not resolved
    assert reasons(both)["elsewhere"] == "same folder as outside"


def test_symlinked_folders_never_lead_out_of_the_folders_given(tmp_path):
    root = tmp_path / "notes"
    write(root / "a.md", "# A\n")
    (root / "everything").symlink_to("/", target_is_directory=True)
    (root / "home").symlink_to(tmp_path, target_is_directory=True)  # an ancestor, outside
    if Path("/proc/self/cwd").exists():
        (root / "proc").symlink_to("/proc", target_is_directory=True)

    result = find_notes([root])

    assert displays(result) == ["a.md"] and result.stopped is None
    outside = "symlink to a folder outside the folders given"
    assert {d: r for d, r in reasons(result).items() if d != "home"} == {
        "everything": outside, **({"proc": outside} if (root / "proc").exists() else {})}
    assert reasons(result)["home"] == outside


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs Linux /proc")
def test_proc_is_walked_without_its_links_out():
    # /proc/N/cwd and /proc/N/root lead to /: the scan stays in /proc, and stops at its cap
    # if this machine's /proc is larger than that.
    result = find_notes([Path("/proc")])
    seen = [*result.notes, *result.skipped]
    assert all(os.path.realpath(note.path).startswith("/proc/") for note in result.notes)
    assert not [item.display for item in seen
                if "/cwd/" in item.display or "/root/" in item.display]
    cwd = {s.reason for s in result.skipped if s.path.name in ("cwd", "root")}
    assert "symlink to a folder outside the folders given" in cwd
    assert result.stopped in (None, "stopped scanning /proc: more than 20,000 files and folders, "
                                    "the most one run looks at; summarize a subfolder instead")


def test_scan_caps_stop_it_with_a_reason(tmp_path):
    root = tmp_path / "notes"
    for i in range(30):
        write(root / f"sub{i % 3}" / f"n{i:02}.md", f"# Note {i}\n" + "text " * 20)
    whole = find_notes([root])
    assert len(whole.notes) == 30 and whole.stopped is None

    few = find_notes([root, tmp_path / "later.md"], max_entries=10)
    assert len(few.notes) < 10
    assert few.stopped == (f"stopped scanning {root}: more than 10 files and folders, the most "
                           "one run looks at; summarize a subfolder instead")
    assert "later.md" not in reasons(few)  # nothing after the stop is looked at

    small = find_notes([root], max_total_bytes=500)
    assert len(small.notes) == 4  # 4 notes of 117 bytes fit in 500, the fifth does not
    assert small.stopped == (f"stopped scanning {root}: more than 500 bytes of notes, the most "
                             "one run reads; summarize a subfolder, or fewer files with --glob")


def test_names_that_are_not_utf8_are_shown_with_a_replacement(tmp_path):
    root = tmp_path / "notes"
    root.mkdir()
    raw = os.path.join(os.fsencode(root), b"caf\xe9.md")
    with open(raw, "w") as f:
        f.write("# Caf\u00e9\n")
    with open(os.path.join(os.fsencode(root), b"\xff.jpg"), "wb") as f:
        f.write(b"\xff\xd8")

    result = find_notes([root])

    (note,) = result.notes
    assert note.display == "caf\ufffd.md" and note.text == "# Café\n"
    assert os.fsencode(note.path) == raw  # the file is still found by its real name
    assert reasons(result) == {"\ufffd.jpg": "not a note (pattern)"}
    json.dumps([note.display, *reasons(result)], ensure_ascii=False).encode("utf-8")


def test_explicit_files_are_read_whatever_their_name(tmp_path, notes):
    readme = write(tmp_path / "README", "Plain text without an extension.\n")
    hidden = notes / ".draft.md"

    result = find_notes([readme, hidden, notes / "scan.md", tmp_path / "nope.md",
                         notes / "inbox.md", notes])

    assert displays(result)[:3] == ["README", ".draft.md", "inbox.md"]
    assert "inbox.md" not in displays(result)[3:]  # read once
    skipped = [(s.display, s.reason) for s in result.skipped]
    assert skipped[:2] == [("scan.md", "binary file"), (str(tmp_path / "nope.md"), "not found")]
    assert ("inbox.md", "same file as inbox.md") in skipped


def test_order_is_deterministic(tmp_path):
    root = tmp_path / "n"
    for name in ["b.md", "a/z.md", "c.txt", "a/b/a.md", "B.md", "a.md", "ä.md"]:
        write(root / name, f"# {name}\n")

    first = find_notes([root])
    assert displays(first) == ["B.md", "a/b/a.md", "a/z.md", "a.md", "b.md", "c.txt", "ä.md"]
    assert find_notes([root]) == first


def test_notes_are_only_read(notes):
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in notes.rglob("*") if p.is_file()}

    find_notes([notes])

    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in notes.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_a_file_that_fails_to_read_is_reported():
    # /proc/self/mem is a regular file that cannot be read at offset 0, even by root.
    result = find_notes([Path("/proc/self/mem")])
    assert result.notes == []
    assert reasons(result) == {"mem": "unreadable: input/output error"}


# -- permission denied: real chmod 000, as a user that the permission bits stop ---------

def _scan_as_nobody(paths: list[Path]) -> dict[str, str]:
    """Scan in a child process that first drops root (the bits don't stop root)."""
    code = (
        "import json, os, sys, pathlib\n"
        # Python's own files are private to root here: import (and look up codecs) first.
        "from assistant.notes.reader import find_notes\n"
        "import codecs; codecs.lookup('utf-8-sig')\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "r = find_notes([pathlib.Path(p) for p in sys.argv[1:]])\n"
        "print(json.dumps({'notes': [n.display for n in r.notes],"
        " 'skipped': {s.display: s.reason for s in r.skipped}}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *map(str, paths)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "PermissionError" in done.stderr:
        pytest.skip("cannot drop privileges here")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def world_readable_dir():
    """tmp_path's parents are private to root; a user we switch to must reach the files."""
    path = Path(tempfile.mkdtemp(prefix="notes-perm-"))
    path.chmod(0o755)
    yield path
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755)
    shutil.rmtree(path)


def test_unreadable_files_and_folders_are_reported(world_readable_dir):
    root = world_readable_dir / "notes"
    write(root / "ok.md", "# fine\n")
    locked = write(root / "locked.md", "# private\n")
    write(root / "vault" / "inside.md", "# private too\n")
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    locked.chmod(0o000)
    (root / "vault").chmod(0o000)

    if os.geteuid() == 0:
        result = _scan_as_nobody([root, locked])
    else:
        scan = find_notes([root, locked])
        result = {"notes": displays(scan), "skipped": reasons(scan)}

    assert result["notes"] == ["ok.md"]
    assert result["skipped"] == {
        "locked.md": "unreadable: permission denied",
        "vault": "unreadable: permission denied",
    }
