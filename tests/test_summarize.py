"""Summarizing notes through the real engine with scripted output (TESTING.md §2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant.config import Settings
from assistant.notes.reader import find_notes
from assistant.notes.summarize import SummaryOptions, Summarizer
from assistant.tokens import counter_for
from scripted import Rounds

ASSISTANT = str(Path(sys.executable).with_name("assistant"))

MEETING = """# Weekly sync — platform team

Date: 2026-11-20. Present: Maria, Ken, Priya.

## Release
- The release branch was cut on Tuesday; two regressions in the sync service were fixed.
- The flaky upload test is still quarantined.

## Infrastructure
Disk usage on the build machines crossed 80% again. Maria will move old artifacts to cold
storage and add an alert at 70%.

## Open questions
Should the metrics exporter run as a sidecar or in-process? Ken measures both next week.
"""

CHINESE = """# 读书笔记：《人类简史》

## 第一部分 认知革命
大约七万年前，智人开始出现新的思维和沟通方式。语言让我们能够讨论虚构的事物，
比如神话、国家和公司，这使大规模合作成为可能。

## 待办
- 下周六之前读完第二部分
- 和小王讨论农业革命是不是“史上最大骗局”
"""

RECIPE = """# Pancakes

Mix 200 g flour, 2 eggs, 300 ml milk and a pinch of salt. Rest 30 minutes.
Fry in a hot pan with a little butter, about a minute per side.
"""


def long_note() -> str:
    sections = []
    for i in range(1, 9):
        body = " ".join(f"Paragraph {i}.{j}: the migration moves table {j} of service {i} "
                        f"to the new cluster and keeps a rollback plan." for j in range(6))
        sections.append(f"## Step {i}\n\n{body}\n\n```sql\nALTER TABLE t{i} ADD COLUMN c{i} INT;\n```\n")
    return "# Migration plan\n\n" + "\n".join(sections)


@pytest.fixture
def notes(tmp_path) -> Path:
    root = tmp_path / "notes"
    (root / "books").mkdir(parents=True)
    (root / "meeting.md").write_text(MEETING, encoding="utf-8")
    (root / "books" / "sapiens.md").write_text(CHINESE, encoding="utf-8")
    (root / "recipe.txt").write_text(RECIPE, encoding="utf-8")
    return root


def summarizer(engine, hf_tokenizer, fixture_model, **options):
    def say(n):
        return f"- point {n}"

    scripted = Rounds(hf_tokenizer, say)
    return Summarizer(engine, counter_for(fixture_model).count, Settings(),
                      SummaryOptions(length="short", logits_processors=[scripted], **options))


def test_single_pass_notes_and_digest(engine, hf_tokenizer, fixture_model, notes):
    scan = find_notes([notes])
    s = summarizer(engine, hf_tokenizer, fixture_model)
    run = s.run(scan.notes, scan.skipped)
    assert [n.display for n in run.notes] == ["meeting.md", "recipe.txt", "books/sapiens.md"] or \
        sorted(n.display for n in run.notes) == ["books/sapiens.md", "meeting.md", "recipe.txt"]
    assert all(n.chunks == 1 and not n.from_cache for n in run.notes)
    assert [kind for kind, _ in s.calls] == ["chunk", "chunk", "chunk", "digest"]
    assert [n.summary for n in run.notes] == ["- point 0", "- point 1", "- point 2"]
    assert run.digest == "- point 3"
    # The instruction prefix is prefilled once: later chunk calls reuse it from the cache.
    first, *later = [stats for kind, stats in s.calls if kind == "chunk"]
    assert first.cached_tokens == 0
    system_tokens = len(hf_tokenizer.apply_chat_template(
        [{"role": "system", "content": s.prompts["chunk"]}], tokenize=True, return_dict=False))
    assert all(stats.cached_tokens >= system_tokens for stats in later)
    md = run.markdown
    assert md.index("## meeting.md") < md.index("# Digest")
    assert run.model_tokens == sum(st.prefilled_tokens + st.generated_tokens for _, st in s.calls)


def test_long_note_is_chunked_and_merged(engine, hf_tokenizer, fixture_model, tmp_path):
    note = tmp_path / "plan.md"
    note.write_text(long_note(), encoding="utf-8")
    s = summarizer(engine, hf_tokenizer, fixture_model, chunk_tokens=300)
    run = s.run(find_notes([note]).notes)
    (summary,) = run.notes
    count = counter_for(fixture_model).count
    assert summary.note_tokens > 900 and summary.chunks >= 3
    kinds = [kind for kind, _ in s.calls]
    assert kinds == ["chunk"] * summary.chunks + ["merge", "digest"]
    assert summary.summary == f"- point {summary.chunks}"  # the merge's output
    # Each chunk call prefilled about its chunk, not the whole note.
    for _, stats in s.calls[: summary.chunks]:
        assert stats.prefilled_tokens < 300 + 80
    # Model tokens stay close to note tokens: prefixes come from the cache.
    assert run.model_tokens / count(note.read_text()) < 1.5


def test_cache_hit_costs_nothing_and_an_edit_costs_one_note(
        engine, hf_tokenizer, fixture_model, notes):
    first = summarizer(engine, hf_tokenizer, fixture_model)
    run1 = first.run(find_notes([notes]).notes)
    again = summarizer(engine, hf_tokenizer, fixture_model)
    run2 = again.run(find_notes([notes]).notes)
    assert again.calls == [] and run2.model_tokens == 0
    assert all(n.from_cache for n in run2.notes) and run2.digest_from_cache
    assert [n.summary for n in run2.notes] == [n.summary for n in run1.notes]

    (notes / "recipe.txt").write_text(RECIPE + "\nServe with lemon and sugar.\n")
    edited = summarizer(engine, hf_tokenizer, fixture_model)
    run3 = edited.run(find_notes([notes]).notes)
    assert [k for k, _ in edited.calls] == ["chunk", "digest"]
    assert [n.display for n in run3.notes if not n.from_cache] == ["recipe.txt"]
    # And without the cache everything runs again.
    fresh = summarizer(engine, hf_tokenizer, fixture_model, use_cache=False)
    fresh.run(find_notes([notes]).notes)
    assert [k for k, _ in fresh.calls] == ["chunk"] * 3 + ["digest"]


def test_interruption_keeps_what_was_finished(engine, hf_tokenizer, fixture_model, notes):
    s = summarizer(engine, hf_tokenizer, fixture_model)

    def progress(done, total, tps, current):
        if done == 1:
            s.cancel()

    run = s.run(find_notes([notes]).notes, on_progress=progress)
    assert run.interrupted and len(run.notes) == 1 and run.digest == ""
    resumed = summarizer(engine, hf_tokenizer, fixture_model)
    run2 = resumed.run(find_notes([notes]).notes)
    assert not run2.interrupted
    assert [n.from_cache for n in run2.notes] == [True, False, False]


# -- the real command ---------------------------------------------------------------


def run(*args, input=None, timeout=300):
    return subprocess.run([ASSISTANT, "summarize", *args], input=input, capture_output=True,
                          stdin=None if input is not None else subprocess.DEVNULL,
                          timeout=timeout, env=os.environ.copy())


def test_cli_json_stdin_and_skips(fixture_model, notes):
    (notes / "photo.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (notes / "huge.md").write_text("x" * 1_100_000)
    (notes / "loop.md").symlink_to(notes / "loop.md")
    (notes / "latin1.md").write_bytes("# Caf\xe9 cr\xe8me\n\nTr\xe8s bon.\n".encode("cp1252"))
    (notes / "sub.md").mkdir()
    result = run(str(notes), "-", "--model", str(fixture_model), "--format", "json",
                 "--max-tokens", "12", input="# From stdin\n\n- one line\n".encode())
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    displays = {n["display"] for n in out["notes"]}
    assert {"stdin", "meeting.md", "books/sapiens.md", "latin1.md"} <= displays
    reasons = {s["path"]: s["reason"] for s in out["skipped"]}
    assert reasons["photo.md"] == "binary file"
    assert reasons["huge.md"].startswith("larger than")
    assert reasons["loop.md"] == "symlink loop"
    err = result.stderr.decode()
    assert "skipped" in err and "binary file" in err and "symlink loop" in err
    assert "latin1.md: decoded as cp1252" in err
    assert out["stats"]["note_tokens"] > 0 and out["stats"]["model_tokens"] > 0


def test_cli_markdown_to_a_folder_and_cache(fixture_model, notes, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    first = run(str(notes), "--model", str(fixture_model), "--max-tokens", "12", "-o", str(out))
    assert first.returncode == 0, first.stderr
    assert (out / "meeting.md.summary.md").is_file() and (out / "digest.md").is_file()
    assert (out / "books" / "sapiens.md.summary.md").is_file()
    second = run(str(notes), "--model", str(fixture_model), "--max-tokens", "12", "--quiet")
    assert second.returncode == 0
    assert second.stdout.decode().startswith("# Notes")


def test_cli_two_folders_with_the_same_note_names(fixture_model, tmp_path):
    for folder in ("work", "home"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "todo.md").write_text(f"# {folder} todo\n\n- one thing\n")
    out = tmp_path / "new-folder"
    result = run(str(tmp_path / "work"), str(tmp_path / "home"), "--model", str(fixture_model),
                 "--max-tokens", "8", "--quiet", "-o", f"{out}/")
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.md")) == [
        "digest.md", "home/todo.md.summary.md", "work/todo.md.summary.md"]


def test_cli_small_context_window_is_one_line(fixture_model, tmp_path, app_home):
    (app_home / "config").mkdir(parents=True)
    (app_home / "config" / "settings.toml").write_text("context_limit = 300\n")
    (tmp_path / "a.md").write_text("# A\n\nSome text.\n")
    result = run(str(tmp_path / "a.md"), "--model", str(fixture_model))
    assert result.returncode == 2
    assert len(result.stderr.decode().strip().splitlines()) == 1
    assert b"too small to summarize" in result.stderr


def test_reduce_converges_when_parts_are_large(engine, hf_tokenizer, fixture_model, tmp_path):
    note = tmp_path / "plan.md"
    note.write_text(long_note()[:2500], encoding="utf-8")
    # Every summary is over half the budget, so no two fit in one merge call.
    wordy = Rounds(hf_tokenizer, lambda n: f"- point {n}:" + " detail" * 60)
    s = Summarizer(engine, counter_for(fixture_model).count, Settings(),
                   SummaryOptions(chunk_tokens=100, logits_processors=[wordy]))
    assert s.budget == 100
    run_ = s.run(find_notes([note]).notes)
    (summary,) = run_.notes
    merges = sum(kind == "merge" for kind, _ in s.calls)
    assert summary.chunks >= 4
    assert merges < 2 * summary.chunks  # pairs at worst: it halves each round, never loops


def test_cli_nothing_to_summarize(fixture_model, tmp_path):
    (tmp_path / "only.bin").write_bytes(b"\x00\x01")
    result = run(str(tmp_path / "only.bin"), str(tmp_path / "missing"), "--model", str(fixture_model))
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "no notes found" in err and "not found" in err and "binary file" in err


def test_cli_ctrl_c_keeps_finished_notes(fixture_model, tmp_path, app_home):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(12):
        (folder / f"note{i:02}.md").write_text(f"# Note {i}\n\n" + MEETING)
    proc = subprocess.Popen([ASSISTANT, "summarize", str(folder), "--model", str(fixture_model),
                             "--max-tokens", "40"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=os.environ.copy())
    cache = app_home / "cache" / "summaries"
    deadline = time.monotonic() + 120
    while not list(cache.glob("*/*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted after" in err and b"of 12 notes" in err
    done = len(list(cache.glob("*/*.json")))
    assert 1 <= done < 12
    assert b"## note00.md" in out  # what was finished is printed too
