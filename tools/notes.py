"""MCP server "notes": list, search, read and append Markdown/text notes inside one root folder.

Each note is also a resource, ``notes:///{+path}`` (``notes:///journal/today.md``), read
with the same checks as ``read_note``, and ``notes:///`` lists them; the prompts
``summarize_note`` and ``find_in_notes`` give a user something to start from, and a note's
path is completed (``completion/complete``) from the notes there are.

Run: python -m assistant.tools.notes [--root DIR]  (else $ASSISTANT_NOTES_ROOT, else ~/Notes)

No path outside the root is ever read or written. Requests are checked lexically (no absolute
paths, no "..", no hidden names) and by realpath; files are then opened one component at a time
from a descriptor on the root with O_NOFOLLOW, so a symlink swapped in after the check is refused
rather than followed. Listing and search never follow symlinks at all. A regular file with more
than one hard link is never opened: its other name may be outside the root, and no check on
this side can prove otherwise.
"""

from __future__ import annotations

import argparse
import codecs
import errno
import os
import stat
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import Completion, ToolAnnotations
from pydantic import Field

from assistant.text import scrub

NOTE_SUFFIXES = (".md", ".markdown", ".txt")
READ_CAP = 256 * 1024
SEARCH_FILE_CAP = 1024 * 1024
SEARCH_MAX_LIMIT = 100
SEARCH_MAX_FILES = 5000
LINE_CAP = 240
LIST_CAP = 500
APPEND_CAP = 64 * 1024
# Folders below the root that the tools go into. Real notes sit a few levels deep; the cap keeps
# one approved append from building a tree so deep that walking or opening it breaks.
MAX_DEPTH = 64
MAX_PATH_CHARS = 1024
NAME_MAX_BYTES = 255  # the longest file name Linux and macOS file systems take
LEFT_OUT_SHOWN = 5

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# O_NONBLOCK: opening a FIFO named like a note must fail or return at once, never hang the server.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
_APPEND_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
ADDITIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)


class NotesRoot:
    """All file access for one root folder; every method raises ToolError with a clear message."""

    def __init__(self, root: Path):
        self.root = os.path.realpath(root)

    # -- path checks ---------------------------------------------------------------------------

    def _parts(self, path: str, *, what: str, note: bool) -> list[str]:
        """Lexical checks; returns the path's components (empty for the root itself)."""
        if "\x00" in path:
            raise ToolError(f"invalid {what}: contains a NUL character")
        if len(path) > MAX_PATH_CHARS:
            raise ToolError(f"{what} is too long ({len(path)} characters, at most "
                            f"{MAX_PATH_CHARS})")
        if scrub(path) != path:
            raise ToolError(f"{what} {scrub(path)!r} is not valid Unicode (it holds a lone "
                            "surrogate, shown as \ufffd); give the name as plain text")
        if path.startswith(("/", "\\", "~/")) or path == "~" or os.path.isabs(path):
            raise ToolError(f"{what} {path!r} must be relative to the notes folder")
        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ToolError(f"{what} {path!r} must not contain '..'")
        if any(p.startswith(".") for p in parts):
            raise ToolError(f"{what} {path!r} names a hidden file or folder, which is off limits")
        if any(len(p.encode()) > NAME_MAX_BYTES for p in parts):
            raise ToolError(f"{what} {path!r} has a name longer than {NAME_MAX_BYTES} bytes")
        folders = len(parts) - 1 if note else len(parts)
        if folders > MAX_DEPTH:
            raise ToolError(f"{what} {path!r} is {folders} folders deep; notes go at most "
                            f"{MAX_DEPTH} folders deep")
        if note:
            if not parts:
                raise ToolError(f"{what} is empty: give a note path such as 'ideas.md'")
            if not parts[-1].lower().endswith(NOTE_SUFFIXES):
                raise ToolError(f"{path!r} is not a note: use one of {', '.join(NOTE_SUFFIXES)}")
        return parts

    def _resolve(self, path: str, *, what: str, note: bool) -> list[str]:
        """Components of the path's realpath relative to the root, refusing any escape."""
        parts = self._parts(path, what=what, note=note)
        real = os.path.realpath(os.path.join(self.root, *parts))
        if os.path.commonpath([self.root, real]) != self.root:
            raise ToolError(f"{what} {path!r} leads outside the notes folder")
        rel = os.path.relpath(real, self.root)
        resolved = [] if rel == "." else rel.split(os.sep)
        if any(p.startswith(".") for p in resolved):
            raise ToolError(f"{what} {path!r} points into a hidden file or folder")
        # A link named like a note must also point at a note.
        if note and not (resolved and resolved[-1].lower().endswith(NOTE_SUFFIXES)):
            raise ToolError(f"{path!r} points to a file that is not a note")
        return resolved

    def _open_dir(self, parts: list[str], *, create: bool = False) -> int:
        """A descriptor for root/parts, walked with O_NOFOLLOW so no component can be a symlink."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in parts:
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(name, 0o700, dir_fd=fd)
                    except FileExistsError:
                        pass  # made concurrently; the O_NOFOLLOW open below still checks it
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_file(self, parts: list[str], flags: int, *, create_dirs: bool = False) -> int:
        dir_fd = self._open_dir(parts[:-1], create=create_dirs)
        try:
            fd = os.open(parts[-1], flags, 0o600, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        try:
            _check_opened(fd, "/".join(parts))
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _os_error(exc: OSError, path: str) -> ToolError:
        if isinstance(exc, FileNotFoundError):
            return ToolError(f"{path!r} does not exist")
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            return ToolError(f"{path!r}: refusing to follow a symbolic link")
        if exc.errno == errno.ENOTDIR:
            return ToolError(f"{path!r}: part of the path is not a folder (or is a symbolic link)")
        if isinstance(exc, IsADirectoryError):
            return ToolError(f"{path!r} is not a regular file")
        if isinstance(exc, PermissionError):
            return ToolError(f"{path!r}: permission denied")
        return ToolError(f"{path!r}: {exc.strerror or exc}")

    # -- walking ---------------------------------------------------------------------------------

    def _walk(self, folder: str,
              left_out: list[str]) -> Iterator[tuple[str, int, str, os.stat_result]]:
        """(relative path, dir fd, name, lstat) of each visible regular note file.

        A folder's own notes come first, in name order, then its subfolders in name order.
        Notes and folders passed over for a reason the user should know land in ``left_out``.
        """
        base = self._resolve(folder, what="folder", note=False)
        try:
            top = self._open_dir(base)
        except OSError as exc:
            raise self._os_error(exc, folder) from None
        # An explicit stack rather than os.fwalk, which recurses once per level and raises
        # RecursionError on a deep tree. Each folder is opened from its parent's descriptor
        # with O_NOFOLLOW, so the walk can't be redirected out of the root by a swapped path;
        # a descriptor (an int on the stack) stays open until everything below it is done,
        # so at most MAX_DEPTH + 1 are open at once.
        stack: list = [top, (top, ".", "/".join(base), len(base))]
        try:
            while stack:
                item = stack.pop()
                if isinstance(item, int):
                    os.close(item)
                    continue
                parent, child, rel, depth = item
                try:
                    fd = os.open(child, _DIR_FLAGS, dir_fd=parent)
                except OSError:
                    continue  # gone, or swapped for a symlink, since it was listed
                stack.append(fd)
                try:
                    names = sorted(os.listdir(fd))
                except OSError:
                    continue
                folders = []
                for name in names:
                    if name.startswith("."):
                        continue
                    try:
                        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except OSError:
                        continue
                    path = f"{rel}/{name}" if rel else name
                    if stat.S_ISDIR(st.st_mode):
                        folders.append((name, path))
                    elif not (stat.S_ISREG(st.st_mode) and name.lower().endswith(NOTE_SUFFIXES)):
                        continue  # symlinks, FIFOs and files that are not notes
                    elif st.st_nlink > 1:
                        left_out.append(f"{_shorten(path)} {_hard_links(st.st_nlink)} (not opened)")
                    else:
                        yield path, fd, name, st
                if folders and depth >= MAX_DEPTH:
                    left_out.append(f"{_shorten(rel)}: its subfolders are more than "
                                    f"{MAX_DEPTH} folders deep")
                    continue
                for name, path in reversed(folders):  # popped in name order
                    stack.append((fd, name, path, depth + 1))
        finally:
            for item in stack:
                if isinstance(item, int):
                    os.close(item)

    # -- tools ---------------------------------------------------------------------------------

    def list_notes(self, folder: str = "") -> str:
        left_out: list[str] = []
        found = sorted((rel, st.st_size, st.st_mtime)
                       for rel, _fd, _name, st in self._walk(folder, left_out))
        total = len(found)
        lines = []
        for rel, size, mtime in found[:LIST_CAP]:
            modified = datetime.fromtimestamp(mtime).astimezone().isoformat(timespec="minutes")
            # Such a name is shown with \ufffd, which no tool can open by.
            bad = "" if scrub(rel) == rel else "; the name is not valid UTF-8: rename it to use it"
            lines.append(f"{rel}  ({size} bytes, modified {modified}{bad})")
        where = f"folder {folder!r}" if folder.strip("./") else "the notes folder"
        if not total:
            return "\n".join([f"No notes in {where}.", *_left_out_lines(left_out)])
        head = f"{total} note{'s' if total != 1 else ''} in {where}:"
        if total > len(lines):
            lines.append(f"... and {total - len(lines)} more (list a subfolder to see them)")
        return "\n".join([head, *lines, *_left_out_lines(left_out)])

    def search_notes(self, query: str, limit: int = 20) -> str:
        needle = query.strip().casefold()
        if not needle:
            raise ToolError("query is empty")
        if len(needle) > 200:
            raise ToolError("query is too long (at most 200 characters)")
        limit = max(1, min(limit, SEARCH_MAX_LIMIT))
        hits: list[str] = []
        left_out: list[str] = []
        scanned = 0
        stopped = ""
        for rel, dirfd, name, _st in self._walk("", left_out):
            if scanned == SEARCH_MAX_FILES:
                stopped = f"(searched only the first {scanned} notes)"
                break
            scanned += 1
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=dirfd)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                try:
                    _check_opened(fd, rel)  # it may have been swapped since it was listed
                except OSError:
                    continue
                except ToolError as exc:
                    left_out.append(_shorten(str(exc)))
                    continue
                text = f.read(SEARCH_FILE_CAP).decode("utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), start=1):
                if needle not in line.casefold():
                    continue
                if len(hits) == limit:
                    stopped = f"(stopped at {limit} matches; refine the query or raise limit)"
                    break
                line = line.strip()
                if len(line) > LINE_CAP:
                    line = line[:LINE_CAP] + "…"
                hits.append(f"{rel}:{number}: {line}")
            if stopped:
                break
        if not hits:
            none = f"No matches for {query!r} in {scanned} notes."
            return "\n".join([f"{none} {stopped}" if stopped else none,
                              *_left_out_lines(left_out)])
        return "\n".join(filter(None, [f"Matches for {query!r}:", *hits, stopped,
                                       *_left_out_lines(left_out)]))

    def read_note(self, path: str) -> str:
        parts = self._resolve(path, what="path", note=True)
        try:
            fd = self._open_file(parts, _READ_FLAGS)
        except OSError as exc:
            raise self._os_error(exc, path) from None
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(READ_CAP + 1)
        truncated = len(data) > READ_CAP
        data = data[:READ_CAP]
        notices = []
        try:
            # Incremental so a multi-byte character cut by the cap isn't mistaken for bad UTF-8.
            text = codecs.getincrementaldecoder("utf-8-sig")().decode(data, final=not truncated)
        except UnicodeDecodeError:
            text = data.decode("utf-8", errors="replace")
            notices.append("[note: the file is not valid UTF-8; undecodable bytes shown as \ufffd]")
        if truncated:
            notices.append(f"[truncated: showing the first {READ_CAP} of {size} bytes]")
        if not text and not notices:
            return f"({path} is empty)"
        return "\n\n".join([text, *notices]) if notices else text

    def append_note(self, path: str, text: str) -> str:
        parts = self._resolve(path, what="path", note=True)
        clean = scrub(text)  # lone surrogates can't be written as UTF-8
        replaced = clean.count("\ufffd") - text.count("\ufffd")
        data = clean.encode("utf-8")
        if not data:
            raise ToolError("text is empty: nothing to append")
        if len(data) > APPEND_CAP:
            raise ToolError(f"text is too long ({len(data)} bytes, at most {APPEND_CAP})")
        try:
            fd = self._open_file(parts, _APPEND_FLAGS, create_dirs=True)
        except OSError as exc:
            raise self._os_error(exc, path) from None
        try:
            size = os.fstat(fd).st_size
            # Keep appended text on its own line.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            if not data.endswith(b"\n"):
                data += b"\n"
            os.write(fd, data)
            new_size = os.fstat(fd).st_size
        except OSError as exc:
            raise self._os_error(exc, path) from None
        finally:
            os.close(fd)
        done = f"Appended {len(data)} bytes to {'/'.join(parts)} (now {new_size} bytes)."
        if replaced:
            done += (f" {replaced} invalid character{'s' if replaced != 1 else ''} (lone "
                     "surrogates) became \ufffd.")
        return done


def _check_opened(fd: int, path: str) -> None:
    """Refuse an opened file that is not a regular file, or that has other names."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "not a regular file")
    if st.st_nlink > 1:
        raise ToolError(f"{path!r} {_hard_links(st.st_nlink)}: refusing to open it; replace "
                        "it with a plain copy (cp) to use it")


def _hard_links(count: int) -> str:
    return f"has {count} hard links, so it may also be a file outside the notes folder"


def _shorten(text: str) -> str:
    return text if len(text) <= LINE_CAP else "…" + text[-LINE_CAP:]


def _left_out_lines(left_out: list[str]) -> list[str]:
    if not left_out:
        return []
    lines = [f"Left out {len(left_out)}:", *(f"  {item}" for item in left_out[:LEFT_OUT_SHOWN])]
    if len(left_out) > LEFT_OUT_SHOWN:
        lines.append(f"  ... and {len(left_out) - LEFT_OUT_SHOWN} more")
    return lines


def _answer(tool: Callable[..., str], *args) -> str:
    """A tool's answer or error as text the wire can carry: a file name that is not valid
    UTF-8 holds lone surrogates once decoded, and the SDK would fail to send it and end the
    connection."""
    try:
        return scrub(tool(*args))
    except ToolError as exc:
        raise ToolError(scrub(str(exc))) from None


def build_server(root: Path) -> MCPServer:
    notes = NotesRoot(root)
    server = MCPServer(
        name="notes",
        instructions="Notes are Markdown or text files; paths are relative to the notes folder.",
    )

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def list_notes(
        folder: Annotated[str, Field(description="subfolder to list; empty for all")] = "",
    ) -> str:
        """List notes (.md, .markdown, .txt) with sizes and modification times."""
        return _answer(notes.list_notes, folder)

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def search_notes(
        query: Annotated[str, Field(description="text to find, case-insensitive")],
        limit: Annotated[int, Field(description="maximum matching lines")] = 20,
    ) -> str:
        """Search all notes for a text; returns path:line: matching line."""
        return _answer(notes.search_notes, query, limit)

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def read_note(path: Annotated[str, Field(description="note path, e.g. 'ideas.md'")]) -> str:
        """Read one note."""
        return _answer(notes.read_note, path)

    @server.tool(annotations=ADDITIVE, structured_output=False)
    def append_note(
        path: Annotated[str, Field(description="note path, e.g. 'journal/today.md'")],
        text: Annotated[str, Field(description="text to add at the end")],
    ) -> str:
        """Append text to a note, creating the note and its folders if missing."""
        return _answer(notes.append_note, path, text)

    @server.resource("notes:///", name="index", mime_type="text/plain",
                     description="The notes in the notes folder, with sizes and dates")
    def index() -> str:
        return _resource(notes.list_notes, "")

    @server.resource("notes:///{+path}", name="note", mime_type="text/markdown",
                     description="One note, by its path in the notes folder")
    def note(path: str) -> str:
        return _resource(notes.read_note, path)

    @server.prompt(description="Summarize one note in a few bullet points")
    def summarize_note(
        path: Annotated[str, Field(description="note path, e.g. 'ideas.md'")],
    ) -> str:
        text = _resource(notes.read_note, path)
        return f"Summarize this note ({path}) in a few short bullet points:\n\n{text}"

    @server.prompt(description="Find what the notes say about a topic")
    def find_in_notes(topic: Annotated[str, Field(description="what to look for")]) -> str:
        return (f"Search my notes for {topic!r} with search_notes, read the notes that "
                "match, and tell me what they say about it.")

    @server.completion()
    async def complete(ref, argument, context) -> Completion | None:
        """Note paths for a prompt's or the note template's ``path``, by prefix."""
        if argument.name != "path" or getattr(ref, "name", getattr(ref, "uri", None)) not in (
                "summarize_note", "notes:///{+path}"):
            return None
        return Completion(values=_note_paths(notes, argument.value))

    return server


def _note_paths(notes: NotesRoot, prefix: str, limit: int = 100) -> list[str]:
    found = []
    try:
        for rel, _fd, _name, _st in notes._walk("", []):
            if rel.startswith(prefix) and scrub(rel) == rel:
                found.append(rel)
                if len(found) == limit:
                    break
    except ToolError:
        pass
    return found


def _resource(read: Callable[..., str], *args) -> str:
    """A resource's text, or the tool's one-line error as the protocol's resource error."""
    try:
        return _answer(read, *args)
    except ToolError as exc:
        raise ResourceError(str(exc)) from None


def notes_root(arg: str | None) -> Path:
    root = Path(arg or os.environ.get("ASSISTANT_NOTES_ROOT") or "~/Notes").expanduser()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m assistant.tools.notes", description=__doc__)
    parser.add_argument("--root", help="notes folder (default: $ASSISTANT_NOTES_ROOT or ~/Notes)")
    args = parser.parse_args(argv)
    try:
        root = notes_root(args.root)
    except OSError as exc:
        sys.exit(f"notes: cannot use {exc.filename or 'the notes folder'} as notes folder: "
                 f"{exc.strerror or exc}; pass --root DIR or set ASSISTANT_NOTES_ROOT")
    build_server(root).run()


if __name__ == "__main__":
    main()
