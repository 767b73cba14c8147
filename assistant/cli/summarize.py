"""``assistant summarize PATH…``: notes in, a summary per note and a digest out."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from assistant.cli.terminal import counted, download_progress
from assistant.errors import EXIT_INTERRUPTED, UserError
from assistant.text import scrub

SKIPPED_SHOWN = 20  # skipped paths listed one per line; the rest are counted by reason


def run_summarize(args, settings) -> int:
    from assistant.engine import open_engine
    from assistant.notes.reader import NOTE_PATTERNS, ScanResult, find_notes
    from assistant.notes.summarize import SummaryError, SummaryOptions, Summarizer

    paths = [p for p in args.paths if p != "-"]
    scan = find_notes([Path(p) for p in paths],
                      patterns=tuple(args.glob) if args.glob else NOTE_PATTERNS)
    if scan.stopped:
        raise UserError(scan.stopped)
    if len(paths) > 1:
        scan = _qualified(scan, paths)
    if "-" in args.paths:
        scan = ScanResult([_stdin_note(), *scan.notes], scan.skipped)
    if not scan.notes:
        _print_skipped(scan.skipped)
        raise UserError("no notes found to summarize: give Markdown or text files or folders "
                        "(or --glob for other names)")
    options = SummaryOptions(
        length=args.length,
        thinking=bool(args.thinking),  # non-thinking unless --think
        use_cache=not args.no_cache,
        chunk_tokens=args.chunk_tokens,
        max_tokens=args.max_tokens,
        parallel=args.parallel,
    )
    progress = _Progress(enabled=not args.quiet and sys.stderr.isatty())
    with download_progress(args.model or settings.model) as shown:
        engine = open_engine(args.model, settings, adapter=args.adapter, progress=shown)
    with engine:
        engine.wait_loaded()
        summarizer = Summarizer(engine, engine.counter.count, settings, options)
        estimate = summarizer.estimate(scan.notes)
        if estimate.large and not _agreed(estimate, args):
            print("assistant: nothing summarized", file=sys.stderr)
            return 1
        try:
            run = summarizer.run(scan.notes, scan.skipped, progress.update)
        except SummaryError as exc:
            progress.clear()
            print(f"assistant: summarizing failed: {exc}; finished notes are cached, run "
                  "again to go on", file=sys.stderr)
            return 1
    progress.clear()

    _write(run, args)
    _print_skipped(run.skipped)
    for note in run.notes:
        if note.warning:
            print(f"assistant: warning: {note.display}: {note.warning}", file=sys.stderr)
    if run.interrupted:
        print(f"assistant: interrupted after {len(run.notes)} of {counted(run.total, 'note')}; "
              "those are "
              "cached, so running the same command again goes on from there", file=sys.stderr)
        return EXIT_INTERRUPTED
    stats = run.to_json()["stats"]
    if not args.quiet:
        print(f"assistant: {counted(stats['notes_summarized'], 'note')} summarized, "
              f"{stats['notes_from_cache']} from the cache; model tokens {stats['model_tokens']:,} "
              f"for {counted(stats['note_tokens'], 'note token')}", file=sys.stderr)
    return 0


def _qualified(scan, paths: list[str]):
    """With several folders, name notes by folder too: work/todo.md is not home/todo.md."""
    from dataclasses import replace

    folders = [Path(p) for p in paths if Path(p).is_dir()]

    def qualify(item):
        for folder in folders:
            try:
                rel = Path(item.path).relative_to(folder)
            except ValueError:
                continue
            return replace(item, display=scrub(f"{folder.name or folder}/{rel.as_posix()}"))
        return item

    return type(scan)([qualify(n) for n in scan.notes], [qualify(s) for s in scan.skipped])


def _stdin_note():
    import hashlib

    from assistant.notes.reader import Note, decode_text

    raw = sys.stdin.buffer.read()
    text, warning = decode_text(raw)
    if not text.strip():
        raise UserError("stdin is empty: pipe a note into assistant summarize -")
    return Note(Path("-"), "stdin", text, len(raw), hashlib.sha256(raw).hexdigest(), warning)


def _write(run, args) -> None:
    text = (json.dumps(run.to_json(), indent=2, ensure_ascii=False) if args.format == "json"
            else run.markdown)
    if args.output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    out = Path(args.output).expanduser()
    try:
        if not (out.is_dir() or args.output.endswith(("/", os.sep))):
            out.write_text(text, encoding="utf-8")
        else:
            _write_folder(run, out, args.format)
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or out}: {exc.strerror}") from None


def _write_folder(run, out: Path, form: str) -> None:
    """One file per note beside the folder's layout, and the digest: NAME.summary.md and
    digest.md, or with --format json NAME.summary.json (that note's entry of the JSON
    output) and digest.json (the rest of it: digest, skipped notes, figures)."""
    out.mkdir(parents=True, exist_ok=True)
    whole = run.to_json()
    for note, entry in zip(run.notes, whole.pop("notes")):
        target = out / f"{note.display}.summary.{form}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_dumps(entry) if form == "json"
                          else f"# {note.display}\n\n{note.summary.strip()}\n",
                          encoding="utf-8")
    (out / f"digest.{form}").write_text(_dumps(whole) if form == "json"
                                        else f"# Digest\n\n{run.digest.strip()}\n",
                                        encoding="utf-8")


def _dumps(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _agreed(estimate, args) -> bool:
    """A large run goes ahead with --yes, or with a yes typed at the terminal."""
    if args.yes:
        if not args.quiet:
            print(f"assistant: {estimate.describe()}; going ahead (--yes)", file=sys.stderr)
        return True
    if not sys.stdin.isatty():
        raise UserError(f"{estimate.describe()}; pass --yes to run it without a terminal")
    sys.stderr.write(f"assistant: {estimate.describe()}. Go ahead? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _print_skipped(skipped) -> None:
    if not skipped:
        return
    print(f"assistant: skipped {len(skipped)}:", file=sys.stderr)
    for item in skipped[:SKIPPED_SHOWN]:
        print(f"  {item.display}: {item.reason}", file=sys.stderr)
    rest = skipped[SKIPPED_SHOWN:]
    if rest:
        by_reason = Counter(item.reason for item in rest).most_common()
        print(f"  ... and {len(rest):,} more: "
              + ", ".join(f"{n:,} {reason}" for reason, n in by_reason), file=sys.stderr)


class _Progress:
    """notes done / total, model tok/s, ETA, on one stderr line."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.started = time.perf_counter()

    def update(self, done: int, total: int, tps: float, current: str) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        eta = f", ETA {elapsed / done * (total - done):.0f} s" if done and done < total else ""
        width = 24
        filled = width * done // max(total, 1)
        bar = "█" * filled + "·" * (width - filled)
        sys.stderr.write(f"\r\x1b[2K{bar} {done}/{counted(total, 'note')}, {tps:.1f} tok/s{eta}  "
                         f"{current[:40]}")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
