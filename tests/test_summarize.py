"""Summarizing notes through the real engine with scripted output (TESTING.md §2)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from assistant.config import Settings
from assistant.notes.reader import find_notes
from assistant.notes.summarize import (LARGE_RUN_SECONDS, SummaryCache, SummaryError,
                                       SummaryOptions, Summarizer)
from assistant.tokens import counter_for
from scripted import ByLastLine, Rounds

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


# -- side by side: --parallel ---------------------------------------------------------


def by_prompt(engine, hf_tokenizer, fixture_model, cache: Path, parallel: int, **script):
    """Summaries that depend on the request only, never on the order requests are served."""
    return Summarizer(engine, counter_for(fixture_model).count, Settings(),
                      SummaryOptions(length="short", chunk_tokens=300, parallel=parallel,
                                     logits_processors=[ByLastLine(hf_tokenizer, **script)]),
                      cache=SummaryCache(cache))


def new_threads(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in threading.enumerate() if t not in before]


def test_parallel_gives_the_sequential_summaries_in_order(
        engine, hf_tokenizer, fixture_model, notes, tmp_path):
    (notes / "plan.md").write_text(long_note(), encoding="utf-8")
    (notes / "pancakes.md").write_text(RECIPE.replace("butter", "oil"), encoding="utf-8")
    scan = find_notes([notes])
    before = set(threading.enumerate())
    one = by_prompt(engine, hf_tokenizer, fixture_model, tmp_path / "one", 1)
    run1 = one.run(scan.notes)
    four = by_prompt(engine, hf_tokenizer, fixture_model, tmp_path / "four", 4)
    progress = []
    run4 = four.run(scan.notes, on_progress=lambda *report: progress.append(report))
    assert not run4.interrupted and new_threads(before) == []

    assert [n.display for n in run4.notes] == [n.display for n in scan.notes]
    assert [(n.display, n.summary, n.chunks) for n in run4.notes] == [
        (n.display, n.summary, n.chunks) for n in run1.notes]
    assert max(n.chunks for n in run4.notes) >= 3  # plan.md: its parts side by side, merged
    assert len({n.summary for n in run1.notes}) == len(run1.notes)  # the script tells them apart
    assert run4.digest == run1.digest and run4.digest.startswith("- about ")
    assert sorted(kind for kind, _ in four.calls) == sorted(kind for kind, _ in one.calls)
    assert run4.model_tokens == sum(st.prefilled_tokens + st.generated_tokens
                                    for _, st in four.calls)
    # Calls in flight together share no KV cache: each started from an empty one.
    assert all(stats.cached_tokens == 0 for _, stats in four.calls)
    assert any(stats.cached_tokens > 0 for _, stats in one.calls)
    # Each note reported once as it finished, the count rising by one, then the digest.
    total = len(scan.notes)
    assert [done for done, *_ in progress] == list(range(total + 1)) + [total]
    assert sorted(name for *_, name in progress[1:-1]) == sorted(n.display for n in scan.notes)
    assert progress[-1][3] == "digest"

    again = by_prompt(engine, hf_tokenizer, fixture_model, tmp_path / "four", 4)
    run = again.run(scan.notes)
    assert again.calls == [] and run.model_tokens == 0 and run.digest_from_cache
    assert all(n.from_cache for n in run.notes)
    assert [n.summary for n in run.notes] == [n.summary for n in run1.notes]


class CountingEngine:
    """The real engine, counting the requests in flight (sent, answer not yet read): what
    an inference server that batches would be serving at once."""

    def __init__(self, engine):
        self.engine, self.now, self.most = engine, 0, 0
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def generate(self, messages, options=None, chat=None):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        return CountedGeneration(self, self.engine.generate(messages, options, chat))


class CountedGeneration:
    def __init__(self, owner: CountingEngine, generation):
        self.owner, self.generation, self.open = owner, generation, True

    def cancel(self):
        self.generation.cancel()

    def result(self):
        result = self.generation.result()
        with self.owner.lock:
            self.owner.now -= self.open
            self.open = False
        return result


@pytest.mark.parametrize("parallel", [1, 3])
def test_parallel_calls_overlap_up_to_the_limit(
        engine, hf_tokenizer, fixture_model, notes, tmp_path, parallel):
    (notes / "plan.md").write_text(long_note(), encoding="utf-8")
    for i in range(3):
        (notes / f"todo{i}.md").write_text(f"# Todo {i}\n\n- call Ana about demo {i}\n")
    counting = CountingEngine(engine)
    s = Summarizer(counting, counter_for(fixture_model).count, Settings(),
                   SummaryOptions(length="short", chunk_tokens=300, parallel=parallel,
                                  logits_processors=[ByLastLine(hf_tokenizer)]),
                   cache=SummaryCache(tmp_path / "cache"))
    run_ = s.run(find_notes([notes]).notes)
    assert max(n.chunks for n in run_.notes) >= 3 and counting.now == 0
    # Notes and the parts of plan.md were sent together, never more than the limit at once
    # (without one shared limit, note threads and part threads would add up past it).
    assert counting.most == 1 if parallel == 1 else 1 < counting.most <= parallel


def test_parallel_cancel_keeps_finished_notes_and_ends_every_thread(
        engine, hf_tokenizer, fixture_model, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(8):
        (folder / f"note{i}.md").write_text(f"# Note {i}\n\n" + MEETING)
    scan = find_notes([folder])
    before = set(threading.enumerate())
    s = by_prompt(engine, hf_tokenizer, fixture_model, tmp_path / "cache", 4)

    def progress(done, total, tps, current):
        if done == 2:
            s.cancel()

    run_ = s.run(scan.notes, on_progress=progress)
    assert run_.interrupted and run_.digest == "" and 2 <= len(run_.notes) < 8
    assert new_threads(before) == []
    assert not s._inflight  # every generation ended before run() returned
    finished = [n.display for n in run_.notes]
    assert finished == [n.display for n in scan.notes if n.display in finished]  # input order

    resumed = by_prompt(engine, hf_tokenizer, fixture_model, tmp_path / "cache", 4)
    run2 = resumed.run(scan.notes)
    assert not run2.interrupted
    assert [n.display for n in run2.notes if n.from_cache] == finished


def test_parallel_ctrl_c_cancels_the_calls_in_flight(
        engine, hf_tokenizer, fixture_model, tmp_path):
    """Ctrl+C reaches the main thread while it waits for the workers: the calls in flight
    are cancelled, not waited out, and every thread has ended when run() returns."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(8):
        (folder / f"note{i}.md").write_text(f"# Note {i}\n\n" + MEETING)
    scan = find_notes([folder])
    before = set(threading.enumerate())
    s = by_prompt(engine, hf_tokenizer, fixture_model, tmp_path / "cache", 4)
    sent = []

    def progress(done, total, tps, current):
        if done == 2 and not sent:
            sent.append(True)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run_ = s.run(scan.notes, on_progress=progress)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sent and run_.interrupted and run_.digest == ""
    assert new_threads(before) == [] and not s._inflight
    # Two notes were done and four in flight: waited out, they would make six.
    assert 2 <= len(run_.notes) <= 4


def test_parallel_failed_call_stops_the_run_and_keeps_what_finished(
        engine, hf_tokenizer, fixture_model, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    (folder / "a-broken.md").write_text("# Broken\n\nThis one fails: BOOM\n", encoding="utf-8")
    for i in range(7):
        (folder / f"note{i}.md").write_text(f"# Note {i}\n\n" + MEETING)
    scan = find_notes([folder])
    assert scan.notes[0].display == "a-broken.md"  # among the first four sent
    before = set(threading.enumerate())
    s = by_prompt(engine, hf_tokenizer, fixture_model, tmp_path / "cache", 4, fail_on="BOOM")
    with pytest.raises(SummaryError, match="scripted failure on 'This one fails: BOOM'"):
        s.run(scan.notes)
    assert new_threads(before) == [] and not s._inflight
    # What finished is cached; the broken note is not, and the run stopped: the calls in
    # flight were cancelled and the notes still queued never sent (else seven would be).
    ok = by_prompt(engine, hf_tokenizer, fixture_model, tmp_path / "cache", 4)
    run_ = ok.run(scan.notes)
    cached = [n.display for n in run_.notes if n.from_cache]
    assert "a-broken.md" not in cached and len(cached) <= 4
    assert len([k for k, _ in ok.calls if k == "chunk"]) == len(scan.notes) - len(cached)


def test_the_same_cache_entry_stored_from_several_threads(tmp_path):
    """Two notes with the same text, summarized side by side, store one entry twice."""
    cache, key, errors = SummaryCache(tmp_path), "ab" * 32, []

    def store(n):
        for _ in range(200):
            try:
                cache.put(key, {"summary": f"- from {n}", "chunks": 1})
            except OSError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=store, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert cache.get(key, "summary")["summary"] in {f"- from {n}" for n in range(4)}
    assert [p.name for p in (tmp_path / "ab").iterdir()] == [f"{key}.json"]  # no leftovers


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


def test_cli_parallel_run_keeps_the_order_of_notes(fixture_model, notes):
    for i in range(2):
        (notes / f"todo{i}.md").write_text(f"# Todo {i}\n\n- call Ana about demo {i}\n")
    (notes / "copy.md").write_text(MEETING)  # the same text as meeting.md, stored side by side
    outs = []
    for parallel in ("1", "3"):
        result = run(str(notes), "--model", str(fixture_model), "--format", "json",
                     "--max-tokens", "8", "--no-cache", "--parallel", parallel)
        assert result.returncode == 0, result.stderr
        outs.append(json.loads(result.stdout))
    sequential, parallel_ = ([n["display"] for n in out["notes"]] for out in outs)
    assert parallel_ == sequential and len(sequential) == 6
    assert outs[1]["stats"]["notes_summarized"] == 6 and outs[1]["digest"]


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


def interruptible() -> None:
    """In the child: Ctrl+C as a terminal gives it. A suite started in the background by a
    non-interactive shell (`.ci/run &`) hands its children SIGINT ignored, and Python then
    installs no KeyboardInterrupt for it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("parallel", ["1", "4"])
def test_cli_ctrl_c_keeps_finished_notes(fixture_model, tmp_path, app_home, parallel):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(12):
        (folder / f"note{i:02}.md").write_text(f"# Note {i}\n\n" + MEETING)
    proc = subprocess.Popen([ASSISTANT, "summarize", str(folder), "--model", str(fixture_model),
                             "--max-tokens", "40", "--parallel", parallel],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=os.environ.copy(),
                            preexec_fn=interruptible)
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
    assert b"Traceback" not in err
    if parallel == "1":
        assert b"## note00.md" in out  # what was finished is printed too
    else:  # notes finish in any order; each one printed is cached, in the input order
        printed = [line for line in out.split(b"\n") if line.startswith(b"## note")]
        assert 1 <= len(printed) <= done and printed == sorted(printed)


def test_estimate_counts_the_cache_and_learns_the_speed(
        engine, hf_tokenizer, fixture_model, notes):
    wordy = Rounds(hf_tokenizer, lambda n: f"- point {n}:" + " detail" * 30)

    def make():
        return Summarizer(engine, counter_for(fixture_model).count, Settings(),
                          SummaryOptions(length="short", logits_processors=[wordy]))

    scan = find_notes([notes])
    first = make().estimate(scan.notes)
    assert first.notes == 3 and not first.measured and not first.large
    assert first.decode_tokens >= 3 * 48 and first.prefill_tokens > sum(
        counter_for(fixture_model).count(n.text) for n in scan.notes)
    s = make()
    s.run(scan.notes)
    spent = sum(st.generated_tokens for _, st in s.calls)
    assert spent <= first.decode_tokens  # the estimate is an upper bound on decoding

    again = make().estimate(scan.notes)
    assert again.measured and (again.notes, again.prefill_tokens, again.decode_tokens) == (0, 0, 0)
    (notes / "recipe.txt").write_text(RECIPE + "\nServe with lemon.\n")
    edited = make().estimate(find_notes([notes]).notes)
    assert edited.notes == 1 and edited.measured and edited.decode_tokens > 0
    assert edited.decode_tps == again.decode_tps > 0


# -- large runs ask first -----------------------------------------------------------

# Each note may take up to 48 tokens to summarize: 200 of them at the assumed 55 tok/s are
# over the two minutes that make a run large.
MANY = 200


def many_notes(folder: Path) -> Path:
    folder.mkdir()
    for i in range(MANY):
        (folder / f"note{i:03}.md").write_text(f"# Note {i}\n\nCall Ana about the demo.\n")
    return folder


@contextmanager
def summarizing(fixture_model, folder: Path, *args: str, stdin=subprocess.DEVNULL):
    """The real command in the background, killed if a failed test leaves it running."""
    proc = subprocess.Popen([ASSISTANT, "summarize", str(folder), "--model", str(fixture_model),
                             *args], stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=os.environ.copy(),
                            preexec_fn=interruptible)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def interrupt_after_first_note(proc: subprocess.Popen, cache: Path) -> tuple[bytes, bytes]:
    deadline = time.monotonic() + 120
    while not list(cache.glob("*/*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=60)


def test_cli_large_run_without_a_terminal_needs_yes(fixture_model, tmp_path, app_home):
    assert MANY * 48 / 55 > LARGE_RUN_SECONDS
    folder = many_notes(tmp_path / "many")
    result = run(str(folder), "--model", str(fixture_model))
    assert result.returncode == 2, result.stderr
    err = result.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"assistant: {MANY} notes to summarize: about ")
    assert "to write, up to " in err and "(at 55 tok/s, assumed)" in err
    assert err.endswith("pass --yes to run it without a terminal")
    assert result.stdout == b""
    cache = app_home / "cache" / "summaries"
    assert not list(cache.glob("*/*.json"))  # nothing ran

    with summarizing(fixture_model, folder, "--yes") as proc:
        out, err = interrupt_after_first_note(proc, cache)
    assert proc.returncode == 130, err
    assert b"going ahead (--yes)" in err and f"of {MANY} notes".encode() in err
    assert b"## note000.md" in out


@contextmanager
def on_a_terminal(fixture_model, folder: Path, answer: bytes):
    """A run with a terminal as stdin, given `answer` once it asks; yields it and the question."""
    master, slave = pty.openpty()
    try:
        with summarizing(fixture_model, folder, stdin=slave) as proc:
            os.close(slave)
            asked = b""
            deadline = time.monotonic() + 120
            while not asked.endswith(b"[y/N] ") and time.monotonic() < deadline:
                if select.select([proc.stderr], [], [], 1)[0]:
                    chunk = os.read(proc.stderr.fileno(), 4096)
                    if not chunk:
                        break
                    asked += chunk
            os.write(master, answer)
            yield proc, asked
    finally:
        os.close(master)


def test_cli_large_run_asks_on_a_terminal(fixture_model, tmp_path, app_home):
    folder = many_notes(tmp_path / "many")
    cache = app_home / "cache" / "summaries"

    with on_a_terminal(fixture_model, folder, b"\n") as (proc, asked):  # Enter: the default
        out, err = proc.communicate(timeout=60)
    assert asked.startswith(f"assistant: {MANY} notes to summarize".encode()), asked
    assert asked.endswith(b"Go ahead? [y/N] ")
    assert proc.returncode == 1 and err == b"assistant: nothing summarized\n" and out == b""
    assert not list(cache.glob("*/*.json"))

    with on_a_terminal(fixture_model, folder, b"y\n") as (proc, asked):
        out, err = interrupt_after_first_note(proc, cache)
    assert asked.endswith(b"Go ahead? [y/N] ")
    assert proc.returncode == 130, err
    assert b"## note000.md" in out


# -- where the scan goes ------------------------------------------------------------


def test_cli_symlinks_out_of_the_folder_are_not_followed(fixture_model, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "meeting.md").write_text(MEETING)
    (folder / "recipe.txt").write_text(RECIPE)
    (folder / "root").symlink_to("/", target_is_directory=True)
    (folder / "home").symlink_to(tmp_path, target_is_directory=True)
    for i in range(25):
        (folder / f"photo{i:02}.jpg").write_bytes(b"\xff\xd8")
    result = run(str(folder), "--model", str(fixture_model), "--format", "json",
                 "--max-tokens", "8")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert sorted(n["display"] for n in out["notes"]) == ["meeting.md", "recipe.txt"]
    reasons = {s["path"]: s["reason"] for s in out["skipped"]}
    assert reasons["root"] == reasons["home"] == "symlink to a folder outside the folders given"
    assert len(out["skipped"]) == 27  # JSON lists them all; the terminal gets a summary
    err = result.stderr.decode().splitlines()
    assert "assistant: skipped 27:" in err
    assert err[err.index("assistant: skipped 27:") + 21] == (
        "  ... and 7 more: 6 not a note (pattern), 1 symlink to a folder outside the folders given")


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs Linux /proc")
def test_cli_proc_ends_with_one_line(fixture_model):
    result = run("/proc", "--model", str(fixture_model))
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "Traceback" not in err
    # /proc holds no notes; on a machine with many processes it is larger than the scan cap.
    capped = ("assistant: stopped scanning /proc: more than 20,000 files and folders, the most "
              "one run looks at; summarize a subfolder instead\n")
    assert err == capped or err.rstrip().endswith("(or --glob for other names)"), err[-500:]


def test_cli_damaged_cache_entries_are_redone_or_repaired(fixture_model, notes, app_home):
    first = run(str(notes), "--model", str(fixture_model), "--max-tokens", "8", "--quiet")
    assert first.returncode == 0, first.stderr
    entries = list((app_home / "cache" / "summaries").glob("*/*.json"))
    assert len(entries) == 4  # three notes and the digest
    for entry in entries:
        value = json.loads(entry.read_text())
        if "summary" in value:  # an escape for half a character, as a hand edit might leave
            entry.write_text(json.dumps({"summary": "- \ud800 kept", "chunks": "?"}))
        else:
            entry.write_text(json.dumps({"digest": 7}))
    second = run(str(notes), "--model", str(fixture_model), "--max-tokens", "8", "--format", "json")
    assert second.returncode == 0, second.stderr
    out = json.loads(second.stdout.decode("utf-8"))
    assert [n["summary"] for n in out["notes"]] == ["- \ufffd kept"] * 3
    assert out["stats"]["notes_from_cache"] == 3 and not out["stats"]["digest_from_cache"]
