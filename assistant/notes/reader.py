"""Find note files under the paths the user gives, and read them safely.

Nothing here writes: files are opened read-only. A file that cannot be used as a note
(binary, too big, not a regular file, unreadable, ...) lands in ``ScanResult.skipped``
with a short human reason instead of stopping the scan. The scan never leaves the folders
it was given through a symlinked folder, and stops at a cap on what one run looks at
(``ScanResult.stopped`` says why), so that a path like /proc or ~ can't run it away.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from pathspec import GitIgnoreSpec

from assistant.text import scrub

NOTE_PATTERNS = ("*.md", "*.markdown", "*.txt")
MAX_BYTES = 1_000_000
# Files and folders one scan looks at. A large notes vault holds a few thousand; tens of
# thousands mean a path that is not a notes folder (a home folder, /proc, node_modules),
# and stopping early beats walking it for minutes.
MAX_SCAN_ENTRIES = 20_000
# Note bytes one scan reads. Every note is held in memory until the run ends, and 200 MB of
# text is weeks of model time at any speed this model reaches.
MAX_SCAN_BYTES = 200_000_000

_SNIFF = 8192  # bytes looked at to decide "binary", as git and grep do
_CONTROL_RATIO = 0.10  # real text has next to no control characters besides \t \n \r \f \v ESC
_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\r\f\v\x1b") + b"\x7f"
# UTF-32's little-endian BOM begins with UTF-16's, so it is tried first.
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# When charset-normalizer finds several decodings equally plausible (common for short
# notes), the most widespread legacy encodings win: Western Windows, then Chinese, ...
_PREFERRED = ("cp1252", "gb18030", "cp932", "big5", "cp949", "cp1251")


@dataclass(frozen=True)
class Note:
    """One note, read and decoded."""

    path: Path  # as found (under its argument; symlinks not resolved)
    display: str  # relative to the argument it came from, '/'-separated
    text: str  # decoded, newlines normalised to "\n"
    bytes: int  # size of the raw file
    sha256: str  # hex digest of the raw bytes, a cache key that ignores the decoding
    encoding_warning: str | None = None  # e.g. "decoded as cp1252, not UTF-8"


@dataclass(frozen=True)
class Skipped:
    """A path that was not read as a note, and why (a short phrase for the user)."""

    path: Path
    reason: str
    display: str


@dataclass
class ScanResult:
    notes: list[Note] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    stopped: str | None = None  # the cap that ended the scan early, said for the user


class _NotRegular(Exception):
    """The path turned out not to be a regular file once opened."""


def find_notes(
    paths: list[Path],
    *,
    patterns: tuple[str, ...] = NOTE_PATTERNS,
    max_bytes: int = MAX_BYTES,
    max_entries: int = MAX_SCAN_ENTRIES,
    max_total_bytes: int = MAX_SCAN_BYTES,
) -> ScanResult:
    """Read every note under ``paths``, in argument order, each folder in sorted order.

    Files named explicitly are read whatever their name; folders are walked recursively,
    keeping files that match ``patterns`` (case-insensitively), skipping hidden entries
    and whatever the folders' ``.gitignore`` files exclude. Symlinks are followed when
    they resolve, except a symlinked folder whose target lies outside every folder in
    ``paths``; no real folder or file is read twice. More than ``max_entries`` files and
    folders looked at, or ``max_total_bytes`` of notes read, stops the scan.
    """
    paths = [Path(p) for p in paths]
    roots = [_realpath(p) for p in paths if os.path.isdir(p)]
    scanner = _Scanner(tuple(p.lower() for p in patterns), max_bytes, roots,
                       max_entries, max_total_bytes)
    for arg in paths:
        if scanner.result.stopped:
            break
        scanner.add(arg)
    return scanner.result


class _Scanner:
    def __init__(self, patterns: tuple[str, ...], max_bytes: int, roots: list[str],
                 max_entries: int, max_total_bytes: int):
        self.patterns = patterns
        self.max_bytes = max_bytes
        self.roots = roots
        self.max_entries, self.max_total_bytes = max_entries, max_total_bytes
        self.entries = self.total_bytes = 0
        self.arg = ""
        self.result = ScanResult()
        self.dirs: dict[str, str] = {}  # real path -> display, for folders already walked
        self.files: dict[str, str] = {}  # real path -> display, for files already read

    def add(self, arg: Path) -> None:
        self.arg = str(arg)
        label = arg.name or str(arg)
        st = self._stat(arg, str(arg))
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            self._walk(arg, label)
        else:
            self._read(arg, label, st)

    def _skip(self, path: Path, display: str, reason: str) -> None:
        # Displays are for people and prompts: a name that is not UTF-8 is shown with U+FFFD.
        self.result.skipped.append(Skipped(path, scrub(reason), scrub(display)))

    def _stop(self, why: str) -> None:
        self.result.stopped = scrub(f"stopped scanning {self.arg}: {why}")

    def _stat(self, path: Path, display: str) -> os.stat_result | None:
        """stat() following symlinks; on failure record why and return None."""
        try:
            return os.stat(path)
        except OSError as e:
            if e.errno == errno.ELOOP:
                reason = "symlink loop"
            elif e.errno in (errno.ENOENT, errno.ENOTDIR) and os.path.islink(path):
                reason = "broken symlink"
            elif e.errno == errno.ENOENT:
                reason = "not found"
            else:
                reason = _unreadable(e)
            self._skip(path, display, reason)
            return None

    # -- folders ------------------------------------------------------------------------

    def _walk(self, root: Path, label: str) -> None:
        """Depth-first in sorted order, with an explicit stack: deep trees cannot overflow."""
        stack: list[tuple[Path, str, tuple, frozenset]] = []
        self._enter(root, "", label, (), frozenset(), stack)
        while stack and not self.result.stopped:
            self._visit(*stack.pop(), stack)

    def _enter(self, folder, prefix, label, ignores, ancestors, stack) -> None:
        """Queue a folder's entries, unless its real folder is an ancestor or already done,
        or lies outside the folders given (through a symlink: /proc/N/cwd leads to /)."""
        try:
            real = os.path.realpath(folder)
        except OSError as e:  # a link on the way that can't be read, as /proc/1/cwd
            self._skip(folder, label, _unreadable(e))
            return
        if not any(os.path.commonpath([root, real]) == root for root in self.roots):
            self._skip(folder, label, "symlink to a folder outside the folders given")
            return
        if real in ancestors:
            self._skip(folder, label, "symlink loop")
            return
        if real in self.dirs:
            self._skip(folder, label, f"same folder as {self.dirs[real]}")
            return
        self.dirs[real] = label
        try:
            with os.scandir(folder) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError as e:
            self._skip(folder, label, _unreadable(e))
            return
        if ".gitignore" in names:
            spec = self._gitignore(folder / ".gitignore", _join(prefix, ".gitignore"))
            if spec is not None:
                ignores = (*ignores, (folder, spec))
        ancestors = ancestors | {real}
        for name in reversed(names):  # the stack pops them in sorted order
            stack.append((folder / name, _join(prefix, name), ignores, ancestors))

    def _visit(self, path: Path, display: str, ignores, ancestors, stack) -> None:
        self.entries += 1
        if self.entries > self.max_entries:
            self._stop(f"more than {self.max_entries:,} files and folders, the most one run "
                       "looks at; summarize a subfolder instead")
            return
        if path.name.startswith("."):
            # A hidden folder is reported once, never its contents; .gitignore is settings.
            if path.name != ".gitignore":
                self._skip(path, display, "hidden")
            return
        if _ignored(path, os.path.isdir(path), ignores):
            self._skip(path, display, "ignored by .gitignore")
            return
        st = self._stat(path, display)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            self._enter(path, display, display, ignores, ancestors, stack)
        elif not any(fnmatchcase(path.name.lower(), p) for p in self.patterns):
            self._skip(path, display, "not a note (pattern)")
        else:
            self._read(path, display, st)

    def _gitignore(self, path: Path, display: str) -> GitIgnoreSpec | None:
        st = self._stat(path, display)
        if st is None or not stat.S_ISREG(st.st_mode):
            return None
        try:
            raw = _read_bytes(path, self.max_bytes)
            return GitIgnoreSpec.from_lines(raw.decode("utf-8", "replace").splitlines())
        except (OSError, _NotRegular, ValueError) as e:  # ValueError: a malformed pattern
            self._skip(path, display, _unreadable(e))
            return None

    # -- files --------------------------------------------------------------------------

    def _read(self, path: Path, display: str, st: os.stat_result) -> None:
        # A FIFO or device would block or never end; only regular files are notes.
        if not stat.S_ISREG(st.st_mode):
            self._skip(path, display, "not a regular file")
            return
        try:
            real = os.path.realpath(path)
        except OSError as e:
            self._skip(path, display, _unreadable(e))
            return
        if real in self.files:
            self._skip(path, display, f"same file as {self.files[real]}")
            return
        if st.st_size > self.max_bytes:
            self._skip(path, display, _too_big(st.st_size, self.max_bytes))
            return
        try:
            raw = _read_bytes(path, self.max_bytes)
        except _NotRegular:
            self._skip(path, display, "not a regular file")
            return
        except OSError as e:
            self._skip(path, display, _unreadable(e))
            return
        if len(raw) > self.max_bytes:  # it grew since stat()
            self._skip(path, display, _too_big(len(raw), self.max_bytes))
            return
        self.files[real] = display
        self.total_bytes += len(raw)
        if self.total_bytes > self.max_total_bytes:
            self._stop(f"more than {_human(self.max_total_bytes)} of notes, the most one run "
                       "reads; summarize a subfolder, or fewer files with --glob")
            return
        if looks_binary(raw):
            self._skip(path, display, "binary file")
            return
        text, warning = decode_text(raw)
        if not text.strip():
            self._skip(path, display, "empty")
            return
        digest = hashlib.sha256(raw).hexdigest()
        self.result.notes.append(Note(path, scrub(display), text, len(raw), digest, warning))


def _read_bytes(path: Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of a regular file, opened read-only.

    O_NONBLOCK makes opening a FIFO return at once (it would otherwise wait for a
    writer); fstat on the open file then rejects whatever is not a regular file, even if
    the path was swapped since it was listed.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotRegular("not a regular file")
        return f.read(limit + 1)


def looks_binary(raw: bytes) -> bool:
    """A NUL byte in the first 8 KiB (unless a UTF-16/32 BOM), or many control bytes."""
    head = raw[:_SNIFF]
    if not head or head.startswith(tuple(bom for bom, _ in _BOMS)):
        return False  # UTF-16/32 text is full of NUL bytes
    if b"\0" in head:
        return True
    controls = len(head) - len(head.translate(None, _CONTROL))
    return controls / len(head) > _CONTROL_RATIO


def decode_text(raw: bytes) -> tuple[str, str | None]:
    """Text from a note's bytes, and a warning when they were not UTF-8.

    Never fails: UTF-8 (with or without BOM), a UTF-16/32 BOM, then charset-normalizer's
    guess when it is installed, then cp1252, then latin-1 (which decodes any bytes).
    """
    encoding = None
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            encoding = codec
            break
    if encoding is None:
        try:
            return _newlines(raw.decode("utf-8-sig")), None
        except UnicodeDecodeError:
            encoding = _guess_encoding(raw)
    if encoding is None:
        try:
            raw.decode("cp1252")
            encoding = "cp1252"
        except UnicodeDecodeError:
            encoding = "latin-1"
    text = raw.decode(encoding, errors="replace")
    return _newlines(text), f"decoded as {encoding}, not UTF-8"


def _guess_encoding(raw: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes
    except ImportError:
        return None
    matches = list(from_bytes(raw))  # best first
    if not matches:
        return None
    best = matches[0]
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    for encoding in _PREFERRED:
        if any(encoding in m.could_be_from_charset for m in tied):
            return encoding
    return best.encoding


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _ignored(path: Path, is_dir: bool, ignores) -> bool:
    """git's rule: the deepest .gitignore with a matching pattern decides."""
    for base, spec in reversed(ignores):
        rel = path.relative_to(base).as_posix() + ("/" if is_dir else "")
        verdict = spec.check_file(rel).include
        if verdict is not None:
            return verdict
    return False


def _realpath(path) -> str:
    try:
        return os.path.realpath(path)
    except OSError:  # a link on the way can't be read: its folder is reported when walked
        return os.path.abspath(path)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _unreadable(e: Exception) -> str:
    detail = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return f"unreadable: {detail.lower()}"


def _too_big(size: int, limit: int) -> str:
    shown = _human(size)
    if shown == _human(limit):  # "larger than 1 MB (1 MB)" would read as a bug
        shown = f"{size:,} bytes"
    return f"larger than {_human(limit)} ({shown})"


def _human(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"
