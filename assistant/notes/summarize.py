"""Summarizing notes: each note in chunks, the chunks merged, then a digest of all notes.

Every chunk is summarized under the same system prompt, and the calls share one KV
cache, so that instruction prefix is prefilled once rather than per chunk. Results are
cached by note content, model, prompt text and options: a re-run over unchanged notes
costs no model tokens, and an edited note costs only itself and the digest.

Before a run, ``Summarizer.estimate`` says what it will cost (tokens and time, from the
speed this model measured on an earlier run), so that a front end can ask first.

With ``parallel`` above one, independent calls (notes, and the parts of one note) are
sent at once, at most that many in flight, for an inference server that batches them.
Only threads that wait on the engine hold a slot; threads that wait on other work never
do, so a note waiting for its parts cannot starve the parts of their slots.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from assistant.config import Settings, paths
from assistant.errors import UserError
from assistant.engine import ChatCache, Engine, Generation, GenerationOptions, TurnStats
from assistant.notes.chunking import chunk_markdown
from assistant.notes.reader import NOTE_PATTERNS, Note, Skipped, find_notes
from assistant.prompts import load as load_prompt
from assistant.text import scrub

# What each length asks for, and the most tokens one summary may take.
LENGTHS = {
    "short": ("two or three short bullet points", 160),
    "medium": ("five to eight bullet points", 320),
    "long": ("a detailed outline of up to fifteen bullet points", 640),
}
PROMPT_OVERHEAD = 64  # template tokens around a chunk, plus the file name
MIN_SUMMARY_TOKENS = 48  # a summary may take up to half its text's tokens, but at least this

# A run estimated to take longer than this is asked about first: two minutes is about as
# long as someone waits at a terminal without deciding to do something else meanwhile.
LARGE_RUN_SECONDS = 120
# Speeds assumed until a run of the model has measured its own: the decode speed the app is
# built to reach at least on Apple Silicon, and a prefill speed well below what a 0.6B model
# reaches there. A run records what it measured, and later estimates use that instead.
ASSUMED_DECODE_TPS = 55.0
ASSUMED_PREFILL_TPS = 500.0
MIN_MEASURED_TOKENS = 32  # fewer decoded tokens than this say too little about the speed
MAX_PARALLEL = 32  # requests in flight at most; more only queues them up at the server


class SummaryError(Exception):
    """The model failed on a note (the run stops; what was finished is cached)."""


@dataclass(frozen=True)
class SummaryOptions:
    length: str = "medium"
    thinking: bool = False
    use_cache: bool = True
    patterns: tuple[str, ...] = NOTE_PATTERNS
    chunk_tokens: int | None = None  # None: as much as the context window allows
    max_tokens: int | None = None  # longest summary; None: as the length sets it
    # Extra mlx-lm logits processors (scripted output in tests, fixed lengths in benchmarks).
    logits_processors: Sequence[Callable] = ()
    # Model calls in flight at once. The local engine runs them one at a time anyway; an
    # inference server that batches requests answers several in the time of about one.
    parallel: int = 1


@dataclass
class NoteSummary:
    display: str
    path: str
    sha256: str
    summary: str
    note_tokens: int
    chunks: int
    prefill_tokens: int = 0  # model tokens spent on this run; 0 when it came from the cache
    decode_tokens: int = 0
    from_cache: bool = False
    warning: str | None = None


@dataclass
class SummaryRun:
    notes: list[NoteSummary] = field(default_factory=list)
    digest: str = ""
    skipped: list[Skipped] = field(default_factory=list)
    total: int = 0  # notes found
    interrupted: bool = False
    digest_prefill_tokens: int = 0
    digest_decode_tokens: int = 0
    digest_from_cache: bool = False

    @property
    def note_tokens(self) -> int:
        return sum(n.note_tokens for n in self.notes)

    @property
    def model_tokens(self) -> int:
        return (sum(n.prefill_tokens + n.decode_tokens for n in self.notes)
                + self.digest_prefill_tokens + self.digest_decode_tokens)

    @property
    def markdown(self) -> str:
        parts = ["# Notes", ""]
        for note in self.notes:
            parts += [f"## {note.display}", "", note.summary.strip(), ""]
        if self.digest:
            parts += ["# Digest", "", self.digest.strip(), ""]
        return "\n".join(parts)

    def to_json(self) -> dict:
        prefill = sum(n.prefill_tokens for n in self.notes) + self.digest_prefill_tokens
        decode = sum(n.decode_tokens for n in self.notes) + self.digest_decode_tokens
        return {
            "notes": [asdict(n) for n in self.notes],
            "digest": self.digest,
            "skipped": [{"path": s.display, "reason": s.reason} for s in self.skipped],
            "interrupted": self.interrupted,
            "stats": {
                "notes_found": self.total,
                "notes_summarized": sum(not n.from_cache for n in self.notes),
                "notes_from_cache": sum(n.from_cache for n in self.notes),
                "note_tokens": self.note_tokens,
                "prefill_tokens": prefill,
                "decode_tokens": decode,
                "model_tokens": prefill + decode,
                "model_tokens_per_note_token": round(
                    (prefill + decode) / self.note_tokens, 4) if self.note_tokens else 0.0,
                "digest_from_cache": self.digest_from_cache,
            },
        }


class SummaryCache:
    """One JSON file per result, named by a hash of everything the result depends on."""

    def __init__(self, root: Path | None = None):
        self.root = root or paths().cache_dir / "summaries"

    def get(self, key: str, *fields: str) -> dict | None:
        """The entry, if it holds each of ``fields`` as text; a damaged one counts as none."""
        value = self._load(self.root / key[:2] / f"{key}.json")
        if not isinstance(value, dict) or not all(isinstance(value.get(f), str) for f in fields):
            return None
        # A "\ud800" escape in the file would not survive being written out again.
        return {f: scrub(value[f]) for f in fields} | {
            k: v for k, v in value.items() if k not in fields}

    def put(self, key: str, value: dict) -> None:
        self._store(self.root / key[:2], f"{key}.json", value)

    def speed(self, model: str) -> tuple[float, float] | None:
        """(prefill, decode) tokens per second that the last run of ``model`` measured."""
        entry = self._load(self.root / "speed.json")
        entry = entry.get(model) if isinstance(entry, dict) else None
        try:
            prefill, decode = float(entry["prefill_tps"]), float(entry["decode_tps"])
        except (TypeError, KeyError, ValueError):
            return None
        ok = all(math.isfinite(v) and v > 0 for v in (prefill, decode))
        return (prefill, decode) if ok else None

    def record_speed(self, model: str, prefill_tps: float, decode_tps: float) -> None:
        speeds = self._load(self.root / "speed.json")
        speeds = speeds if isinstance(speeds, dict) else {}
        speeds[model] = {"prefill_tps": round(prefill_tps, 1), "decode_tps": round(decode_tps, 1)}
        self._store(self.root, "speed.json", speeds)

    @staticmethod
    def _load(path: Path):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    @staticmethod
    def _store(folder: Path, name: str, value) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # Two notes with the same text, summarized side by side, store the same entry.
        tmp = folder / f"{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        tmp.replace(folder / name)


@dataclass(frozen=True)
class Estimate:
    """What a run will cost, before it starts. Decode is an upper bound: every summary as
    long as it may be; prefill counts each note once, plus the prompts around it."""

    notes: int  # notes to summarize (the rest come from the cache)
    prefill_tokens: int
    decode_tokens: int
    prefill_tps: float
    decode_tps: float
    measured: bool  # speeds from an earlier run of this model, not assumed

    @property
    def seconds(self) -> float:
        return self.prefill_tokens / self.prefill_tps + self.decode_tokens / self.decode_tps

    @property
    def large(self) -> bool:
        return self.seconds > LARGE_RUN_SECONDS

    def describe(self) -> str:
        speed = f"{self.decode_tps:.0f} tok/s" + ("" if self.measured else ", assumed")
        return (f"{self.notes:,} note{'s' if self.notes != 1 else ''} to summarize: about "
                f"{self.prefill_tokens:,} tokens to read and up to {self.decode_tokens:,} to "
                f"write, up to {_duration(self.seconds)} (at {speed})")


def _duration(seconds: float) -> str:
    minutes = math.ceil(seconds / 60)
    if seconds < 60:
        return f"{math.ceil(seconds)} s"
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


# done, total, model tok/s, the note being summarized (with parallel > 1: the note that
# just finished, reported from the thread that finished it)
Progress = Callable[[int, int, float, str], None]


class Summarizer:
    def __init__(self, engine: Engine, count: Callable[[str], int], settings: Settings,
                 options: SummaryOptions = SummaryOptions(), cache: SummaryCache | None = None):
        if options.length not in LENGTHS:
            raise ValueError(f"length must be one of {', '.join(LENGTHS)}")
        if not 1 <= options.parallel <= MAX_PARALLEL:
            raise ValueError(f"parallel must be 1 to {MAX_PARALLEL}")
        self.engine, self.count, self.settings, self.options = engine, count, settings, options
        self.cache = cache or SummaryCache()
        words, self.max_tokens = LENGTHS[options.length]
        self.max_tokens = options.max_tokens or self.max_tokens
        self.prompts = {kind: load_prompt(f"summarize_{kind}").replace("{length}", words)
                        for kind in ("chunk", "merge", "digest")}
        # One KV cache per prompt kind: each keeps its instruction prefix between calls.
        # Calls in flight together must not share one, so with parallel > 1 each call
        # starts from a fresh cache instead.
        self.caches = {kind: ChatCache() for kind in self.prompts}
        self.cancel_event = threading.Event()
        # Every model call of this run, in the order they ended (their start order with
        # parallel = 1).
        self.calls: list[tuple[str, TurnStats]] = []
        self._lock = threading.Lock()  # calls, token counts and the generations in flight
        self._inflight: set[Generation] = set()
        self._slots = threading.BoundedSemaphore(options.parallel)
        self._stop = threading.Event()  # a call failed: every other call ends too
        self._parts: ThreadPoolExecutor | None = None  # the parts of a note, side by side
        self._spent_tokens, self._started = 0, time.perf_counter()
        self.budget = self._budget()
        if self.budget < 2 * MIN_SUMMARY_TOKENS:
            raise UserError(f"a {engine.context_window}-token context window is too small to "
                            f"summarize with --length {options.length}; raise context_limit "
                            "in the settings or use a shorter --length")
        self._model_id = engine.identity
        self._model_key = hashlib.sha256(json.dumps(self._model_id).encode()).hexdigest()
        self._counts: dict[str, int] = {}  # note sha256 -> tokens, counted once per run

    # -- identity of a result -------------------------------------------------------

    def _budget(self) -> int:
        prompt = max(self.count(p) for p in self.prompts.values())
        fits = self.engine.context_window - prompt - PROMPT_OVERHEAD - self.max_tokens
        return min(self.options.chunk_tokens or fits, fits)

    def _key(self, kind: str, content: str) -> str:
        prompts = [self.prompts["digest"]] if kind == "digest" else \
            [self.prompts["chunk"], self.prompts["merge"]]
        parts = [kind, *self._model_id, *prompts, self.options.length, self.options.thinking,
                 self.max_tokens, self.budget, content]
        return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()

    def _note_tokens(self, note: Note) -> int:
        if note.sha256 not in self._counts:
            self._counts[note.sha256] = self.count(note.text)
        return self._counts[note.sha256]

    # -- the cost, before the run ------------------------------------------------------

    def estimate(self, notes: list[Note]) -> Estimate:
        """Tokens and time the run over ``notes`` will take, counting what the cache holds
        as free; speeds as this model measured them last, else the assumed ones."""
        cache = self.cache if self.options.use_cache else None
        prefill = decode = calls = todo = summaries = 0
        for note in notes:
            if cache and cache.get(self._key("note", note.sha256), "summary"):
                summaries += self.max_tokens
                continue
            todo += 1
            tokens = self._note_tokens(note)
            chunks = max(1, math.ceil(tokens / self.budget))
            each = max(MIN_SUMMARY_TOKENS, min(self.max_tokens, tokens // chunks // 2))
            prefill += tokens + chunks * PROMPT_OVERHEAD
            decode += chunks * each
            calls += chunks
            if chunks > 1:  # the merge reads the parts and writes one summary
                prefill += chunks * each + PROMPT_OVERHEAD
                decode += self.max_tokens
                calls += 1
            summaries += min(each, self.max_tokens)
        if notes and not (cache and cache.get(self._digest_key(notes), "digest")):
            prefill += summaries + len(notes) * 8 + PROMPT_OVERHEAD
            decode += 2 * self.max_tokens
            calls += 1
        if calls:
            prefill += sum(self.count(p) for p in self.prompts.values())  # prefilled once each
        if self.options.thinking:
            decode += calls * self.settings.thinking_budget
        measured = self.cache.speed(self._model_key)
        prefill_tps, decode_tps = measured or (ASSUMED_PREFILL_TPS, ASSUMED_DECODE_TPS)
        return Estimate(todo, prefill, decode, prefill_tps, decode_tps, measured is not None)

    def _record_speed(self) -> None:
        """Keep this run's measured speeds for the next estimate."""
        stats = [st for _, st in self.calls]
        decoded = sum(st.generated_tokens for st in stats if st.decode_tps > 0)
        prefilled = sum(st.prefilled_tokens for st in stats if st.prompt_tps > 0)
        if decoded < MIN_MEASURED_TOKENS or not prefilled:
            return
        decode_s = sum(st.generated_tokens / st.decode_tps for st in stats if st.decode_tps > 0)
        prefill_s = sum(st.prefilled_tokens / st.prompt_tps for st in stats if st.prompt_tps > 0)
        try:
            self.cache.record_speed(self._model_key, prefilled / prefill_s, decoded / decode_s)
        except OSError:
            pass  # only the next estimate is less exact

    # -- the run --------------------------------------------------------------------

    def run(self, notes: list[Note], skipped: list[Skipped] = (),
            on_progress: Progress | None = None) -> SummaryRun:
        """Summaries in the order of ``notes``, then the digest. Interrupted (Ctrl+C or
        ``cancel``), it returns the notes finished so far, all cached; a failed call
        raises ``SummaryError`` once every other call has ended."""
        run = SummaryRun(skipped=list(skipped), total=len(notes))
        self._stop.clear()
        try:
            if self.options.parallel > 1:
                self._run_parallel(notes, run, on_progress)
            else:
                self._run_sequential(notes, run, on_progress)
        except (KeyboardInterrupt, _Cancelled):
            with self._lock:
                left = list(self._inflight)
            for generation in left:  # only a sequential run leaves one, on this thread
                generation.cancel()
                generation.result()  # let the engine stop before we go on
            run.interrupted = True
        finally:
            self._record_speed()
        return run

    def _run_sequential(self, notes: list[Note], run: SummaryRun,
                        on_progress: Progress | None) -> None:
        for done, note in enumerate(notes):
            if on_progress:
                on_progress(done, len(notes), self._speed(), note.display)
            run.notes.append(self.summarize_note(note))
            self._check_cancel()
        if on_progress:
            on_progress(len(notes), len(notes), self._speed(), "digest")
        if run.notes:
            self._digest(run)

    def _run_parallel(self, notes: list[Note], run: SummaryRun,
                      on_progress: Progress | None) -> None:
        """Notes on one pool, their parts on another, the engine calls bounded by the slots.
        This thread only waits, so Ctrl+C reaches it there, and it ends every call and
        every thread before it returns or raises."""
        total, finished = len(notes), {}
        reported = threading.Lock()  # one progress report at a time, counts in order

        def one(index: int, note: Note) -> None:
            self._check_cancel()  # a cached note would not reach a model call to see it
            summary = self.summarize_note(note)
            with reported:
                finished[index] = summary
                if on_progress:
                    on_progress(len(finished), total, self._speed(), note.display)

        width = self.options.parallel
        notes_pool = ThreadPoolExecutor(width, thread_name_prefix="summarize-note")
        self._parts = ThreadPoolExecutor(width, thread_name_prefix="summarize-part")
        try:
            if on_progress:
                on_progress(0, total, 0.0, notes[0].display if notes else "")
            self._settle([notes_pool.submit(one, i, note) for i, note in enumerate(notes)])
            run.notes = [finished[i] for i in range(total)]
            if on_progress:
                on_progress(total, total, self._speed(), "digest")
            if run.notes:
                self._settle([notes_pool.submit(self._digest, run)])
        except BaseException:
            self._halt()
            raise
        finally:
            _join(notes_pool)  # notes first: they wait on parts
            _join(self._parts)
            self._parts = None
            if not run.notes:
                run.notes = [finished[i] for i in sorted(finished)]

    def _settle(self, futures: list[Future]) -> None:
        """Wait for every future, then raise the first failure, a failed call before a
        cancelled one (the cancellations are what the failure caused)."""
        wait(futures)
        failures = [f.exception() for f in futures if f.exception() is not None]
        if failures:
            raise next((e for e in failures if not isinstance(e, _Cancelled)), failures[0])

    def _map(self, fn: Callable[[_T], str], items: list[_T]) -> list[str]:
        """``fn`` over ``items``: one after another, or side by side on the parts pool in a
        parallel run (the calling thread then waits, holding no slot)."""
        if self._parts is None or len(items) < 2:
            return [fn(item) for item in items]
        futures = [self._parts.submit(fn, item) for item in items]
        self._settle(futures)
        return [f.result() for f in futures]

    def cancel(self) -> None:
        """End the run: every call in flight is cancelled, finished notes stay cached."""
        self.cancel_event.set()
        self._halt()

    def _halt(self) -> None:
        self._stop.set()
        with self._lock:
            for generation in self._inflight:
                generation.cancel()

    def summarize_note(self, note: Note) -> NoteSummary:
        tokens = self._note_tokens(note)
        key = self._key("note", note.sha256)
        cached = self.cache.get(key, "summary") if self.options.use_cache else None
        if cached is not None:
            chunks = cached.get("chunks")
            return NoteSummary(note.display, str(note.path), note.sha256, cached["summary"],
                               tokens, chunks if isinstance(chunks, int) else 1, from_cache=True,
                               warning=note.encoding_warning)
        result = NoteSummary(note.display, str(note.path), note.sha256, "", tokens, 0,
                             warning=note.encoding_warning)
        chunks = chunk_markdown(note.text, self.budget, self.count)
        result.chunks = len(chunks)

        def part(numbered: tuple[int, str]) -> str:
            i, chunk = numbered
            label = note.display if len(chunks) == 1 else \
                f"{note.display} (part {i + 1} of {len(chunks)})"
            return self._ask("chunk", f"File: {label}\n\n{chunk}", result, self._cap(chunk))

        summaries = self._map(part, list(enumerate(chunks)))
        result.summary = summaries[0] if len(summaries) == 1 else self._reduce(
            "merge", [f"Part {i + 1}:\n{s}" for i, s in enumerate(summaries)], result)
        self.cache.put(key, {"summary": result.summary, "chunks": result.chunks})
        return result

    def _digest(self, run: SummaryRun) -> None:
        sections = [f"### {n.display}\n{n.summary.strip()}" for n in run.notes]
        key = self._digest_key(run.notes)
        cached = self.cache.get(key, "digest") if self.options.use_cache else None
        if cached is not None:
            run.digest, run.digest_from_cache = cached["digest"], True
            return
        spent = NoteSummary("digest", "", "", "", 0, 0)
        run.digest = self._reduce("digest", sections, spent)
        run.digest_prefill_tokens, run.digest_decode_tokens = spent.prefill_tokens, spent.decode_tokens
        self.cache.put(key, {"digest": run.digest})

    def _digest_key(self, notes: Sequence[Note | NoteSummary]) -> str:
        return self._key("digest", "\n\n".join(f"{n.display}\n{n.sha256}" for n in notes))

    def _reduce(self, kind: str, parts: list[str], spent: NoteSummary) -> str:
        """One call if the parts fit the window; otherwise in groups, then over the groups."""
        budget = self.budget
        while True:
            groups, current, size = [], [], 0
            for part in parts:
                n = self.count(part) + 2
                if current and size + n > budget:
                    groups.append(current)
                    current, size = [], 0
                current.append(part)
                size += n
            groups.append(current)
            if len(groups) == len(parts) > 1:  # no group holds two parts: pair them anyway
                groups = [parts[i:i + 2] for i in range(0, len(parts), 2)]
            outputs = self._map(lambda g: self._ask(
                kind, "\n\n".join(g), spent, self.max_tokens * (2 if kind == "digest" else 1)),
                groups)
            if len(outputs) == 1:
                return outputs[0]
            parts = outputs

    def _cap(self, text: str) -> int:
        """A summary is shorter than what it summarizes: at most half its tokens."""
        return max(MIN_SUMMARY_TOKENS, min(self.max_tokens, self.count(text) // 2))

    def _ask(self, kind: str, text: str, spent: NoteSummary, max_tokens: int) -> str:
        self._check_cancel()
        s = self.settings
        options = GenerationOptions(
            thinking=self.options.thinking,
            max_tokens=max_tokens + (s.thinking_budget if self.options.thinking else 0),
            thinking_budget=s.thinking_budget if self.options.thinking else None,
            thinking_sampling=s.sampling_thinking, direct_sampling=s.sampling_direct,
            logits_processors=self.options.logits_processors)
        messages = [{"role": "system", "content": self.prompts[kind]},
                    {"role": "user", "content": text}]
        chat = self.caches[kind] if self.options.parallel == 1 else None
        with self._slots:
            self._check_cancel()  # the run may have ended while this call waited for a slot
            with self._lock:
                generation = self.engine.generate(messages, options, chat)
                self._inflight.add(generation)
                if self._halted():  # cancelled between the check and the add
                    generation.cancel()
            result = generation.result()
            # Left in the set if Ctrl+C ends the wait above: run() then waits for the end.
            with self._lock:
                self._inflight.discard(generation)
        if result.error:
            self._halt()
            raise SummaryError(result.error.error)
        if result.finish_reason == "cancelled":
            raise _Cancelled
        stats = result.stats
        with self._lock:
            self.calls.append((kind, stats))
            spent.prefill_tokens += stats.prefilled_tokens
            spent.decode_tokens += stats.generated_tokens
            self._spent_tokens += stats.generated_tokens
        return result.text

    def _halted(self) -> bool:
        return self.cancel_event.is_set() or self._stop.is_set()

    def _check_cancel(self) -> None:
        if self._halted():
            raise _Cancelled

    def _speed(self) -> float:
        elapsed = time.perf_counter() - self._started
        return self._spent_tokens / elapsed if elapsed > 0 else 0.0


class _Cancelled(Exception):
    pass


_T = TypeVar("_T")


def _join(pool: ThreadPoolExecutor) -> None:
    """Wait for every thread of ``pool``; queued work not started is dropped. A second
    Ctrl+C while waiting must not leave threads running behind a traceback."""
    while True:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
            return
        except KeyboardInterrupt:
            continue


def summarize(engine: Engine, note_paths: list[Path], *, count: Callable[[str], int],
              settings: Settings, options: SummaryOptions = SummaryOptions(),
              on_progress: Progress | None = None,
              cancel: threading.Event | None = None) -> SummaryRun:
    """Find the notes under ``note_paths`` and summarize them (for the TUI's /summarize)."""
    scan = find_notes(list(note_paths), patterns=options.patterns)
    if scan.stopped:
        raise UserError(scan.stopped)
    summarizer = Summarizer(engine, count, settings, options)
    if cancel is not None:
        summarizer.cancel_event = cancel
    return summarizer.run(scan.notes, scan.skipped, on_progress)
