"""Our own MCP servers (tools/), started over real stdio as a user's config starts them:
`command` = this Python, `args` = ["-m", "assistant.tools.<name>", ...].

Each test starts its server inside one `anyio.run`, so the client context is entered and left
in the same task.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult

from assistant.tools import notes as notes_module

CALL_TIMEOUT = 20.0  # a hang guard, not a speed assertion
SESSION_TIMEOUT = 60.0


def run_server(module: str, *args: str, env: dict[str, str] | None = None,
               body: Callable[[Client], Awaitable[None]]) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", f"assistant.tools.{module}", *args], env=env)

    async def main() -> None:
        with anyio.fail_after(SESSION_TIMEOUT):
            async with Client(params) as client:
                assert client.server_info is not None and client.server_info.name == module
                await body(client)

    try:
        anyio.run(main)
    except BaseExceptionGroup as group:
        # The SDK's task groups nest the real failure two levels deep; show it plainly.
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if leaf is group:
            raise
        raise leaf from None


async def call(client: Client, tool: str, **arguments) -> CallToolResult:
    return await client.call_tool(tool, arguments, read_timeout_seconds=CALL_TIMEOUT)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


def ok(result: CallToolResult) -> str:
    assert not result.is_error, text_of(result)
    return text_of(result)


def error(result: CallToolResult, *needles: str) -> str:
    message = text_of(result)
    assert result.is_error, f"expected an error, got: {message!r}"
    assert "Traceback" not in message
    for needle in needles:
        assert needle in message, message
    return message


def snapshot(top: Path, skip: Path) -> dict[str, bytes | str]:
    """Every path under `top` except `skip`, with file contents and link targets."""
    seen: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]
        for name in dirnames + filenames:
            path = here / name
            key = str(path.relative_to(top))
            if path.is_symlink():
                seen[key] = "-> " + os.readlink(path)
            elif path.is_file():
                seen[key] = path.read_bytes()
            else:
                seen[key] = "dir"
    return seen


# -- notes ----------------------------------------------------------------------------------

SECRET = "TOP-SECRET-outside-the-root"

PROJECT_NOTE = """\
# Project Atlas

## Status
- Search across notes works.
- Next: wire the calendar into the weekly review.

## Open questions
1. Should archived notes show up in search?
"""

MEETING_NOTE = """\
# 会议记录 2024-05-01

## 项目进度
- 完成了搜索功能
- 下周讨论日历集成

## 待办
- [ ] 整理周报
"""


@pytest.fixture
def notes_env(tmp_path):
    """A notes root with real-looking notes, and secrets outside it that must stay untouched."""
    root = tmp_path / "Notes"
    (root / "work").mkdir(parents=True)
    (root / "journal" / "2024").mkdir(parents=True)
    (root / ".obsidian").mkdir()
    (root / "work" / "atlas.md").write_text(PROJECT_NOTE, encoding="utf-8")
    (root / "work" / "会议记录.md").write_text(MEETING_NOTE, encoding="utf-8")
    (root / "journal" / "2024" / "05-01.markdown").write_text(
        "Walked by the river. Thought about the Atlas search feature.\n", encoding="utf-8")
    (root / "todo.txt").write_text("buy milk\ncall Ana about the atlas demo\n", encoding="utf-8")
    (root / ".obsidian" / "workspace.md").write_text("atlas hidden config\n", encoding="utf-8")
    (root / ".draft.md").write_text("atlas hidden draft\n", encoding="utf-8")
    (root / "photo.png").write_bytes(b"\x89PNG atlas")

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text(f"{SECRET}\natlas\n", encoding="utf-8")
    (root / "leak.md").symlink_to(outside / "secret.md")
    (root / "dangling.md").symlink_to(outside / "created-through-link.md")
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)
    return root, outside


def test_notes_list_search_read_happy_paths(notes_env):
    root, _ = notes_env

    async def body(client: Client) -> None:
        listing = ok(await call(client, "list_notes"))
        lines = listing.splitlines()
        assert lines[0] == "4 notes in the notes folder:"
        paths = [line.split("  (")[0] for line in lines[1:]]
        assert paths == ["journal/2024/05-01.markdown", "todo.txt", "work/atlas.md",
                         "work/会议记录.md"]
        size = len(PROJECT_NOTE.encode())
        assert f"work/atlas.md  ({size} bytes, modified " in listing
        # hidden files, non-notes and every symlink are left out
        for absent in (".obsidian", ".draft", "photo.png", "leak.md", "dangling.md", "elsewhere"):
            assert absent not in listing

        sub = ok(await call(client, "list_notes", folder="work"))
        assert [line.split("  (")[0] for line in sub.splitlines()[1:]] == ["work/atlas.md",
                                                                            "work/会议记录.md"]
        assert ok(await call(client, "list_notes", folder="journal/2024/")).count("\n") == 1

        found = ok(await call(client, "search_notes", query="ATLAS"))
        # a folder's own files come before its subfolders
        assert found.splitlines()[1:] == [
            "todo.txt:2: call Ana about the atlas demo",
            "journal/2024/05-01.markdown:1: Walked by the river. "
            "Thought about the Atlas search feature.",
            "work/atlas.md:1: # Project Atlas",
        ]
        assert SECRET not in found and "hidden" not in found

        chinese = ok(await call(client, "search_notes", query="搜索"))
        assert chinese.splitlines()[1:] == ["work/会议记录.md:4: - 完成了搜索功能"]

        limited = ok(await call(client, "search_notes", query="a", limit=2))
        assert len([line for line in limited.splitlines() if ".m" in line or ".txt" in line]) == 2
        assert "stopped at 2 matches" in limited

        assert "No matches" in ok(await call(client, "search_notes", query="zebra"))
        error(await call(client, "search_notes", query="   "), "empty")

        assert ok(await call(client, "read_note", path="work/atlas.md")) == PROJECT_NOTE
        assert ok(await call(client, "read_note", path="work/会议记录.md")) == MEETING_NOTE
        assert ok(await call(client, "read_note", path="./todo.txt")).startswith("buy milk")
        error(await call(client, "read_note", path="work/missing.md"), "does not exist")
        error(await call(client, "read_note", path="work"), "not a note")
        error(await call(client, "read_note", path="photo.png"), "not a note")
        error(await call(client, "read_note", path=".obsidian/workspace.md"), "hidden")

    run_server("notes", "--root", str(root), body=body)


def test_notes_read_caps_and_decodes(tmp_path):
    root = tmp_path / "Notes"
    root.mkdir()
    (root / "latin1.md").write_bytes("# Café notes\nrésumé\n".encode("latin-1"))
    # 3-byte characters so the 256 KiB cap falls inside one of them
    (root / "big.md").write_text("长" * 100_000, encoding="utf-8")
    (root / "bom.md").write_bytes(b"\xef\xbb\xbfhello\n")
    (root / "blank.md").write_bytes(b"")
    os.mkfifo(root / "pipe.md")  # must be refused at once, not block the server

    async def body(client: Client) -> None:
        latin = ok(await call(client, "read_note", path="latin1.md"))
        assert latin.startswith("# Caf\ufffd notes\nr\ufffdsum\ufffd\n")
        assert "not valid UTF-8" in latin

        big = ok(await call(client, "read_note", path="big.md"))
        body_text, notice = big.rsplit("\n\n", 1)
        assert notice == "[truncated: showing the first 262144 of 300000 bytes]"
        assert body_text == "长" * (262144 // 3)
        assert "\ufffd" not in big and "UTF-8" not in big

        assert ok(await call(client, "read_note", path="bom.md")) == "hello\n"
        assert ok(await call(client, "read_note", path="blank.md")) == "(blank.md is empty)"
        error(await call(client, "read_note", path="pipe.md"), "not a regular file")
        error(await call(client, "append_note", path="pipe.md", text="x"), "not a regular file")
        assert "pipe.md" not in ok(await call(client, "list_notes"))

    run_server("notes", "--root", str(root), body=body)


def test_notes_append(tmp_path):
    root = tmp_path / "Notes"
    root.mkdir()
    (root / "inbox.md").write_text("# Inbox\n- first", encoding="utf-8")  # no final newline

    async def body(client: Client) -> None:
        ok(await call(client, "append_note", path="inbox.md", text="- second"))
        ok(await call(client, "append_note", path="inbox.md", text="- 第三项：买牛奶\n"))
        assert (root / "inbox.md").read_text(encoding="utf-8") == (
            "# Inbox\n- first\n- second\n- 第三项：买牛奶\n")

        message = ok(await call(client, "append_note", path="journal/2024/06-01.md",
                                text="Rainy day."))
        assert "journal/2024/06-01.md" in message
        created = root / "journal" / "2024" / "06-01.md"
        assert created.read_text(encoding="utf-8") == "Rainy day.\n"
        assert stat.S_IMODE((root / "journal").stat().st_mode) == 0o700
        assert stat.S_IMODE(created.stat().st_mode) == 0o600
        assert ok(await call(client, "read_note", path="journal/2024/06-01.md")) == "Rainy day.\n"

        for bad in ("script.sh", "notes", "journal/2024", "data.md.exe"):
            error(await call(client, "append_note", path=bad, text="x"), "not a note")
        error(await call(client, "append_note", path=".hidden/x.md", text="x"), "hidden")
        error(await call(client, "append_note", path="inbox.md", text=""), "empty")
        error(await call(client, "append_note", path="inbox.md", text="x" * 70_000), "too long")

    run_server("notes", "--root", str(root), body=body)
    assert sorted(p.name for p in root.iterdir()) == ["inbox.md", "journal"]


READ_ESCAPES = [
    ("../outside/secret.md", "'..'"),
    (None, "relative"),  # the absolute path of the secret, filled in below
    ("/etc/passwd", "relative"),
    ("work/../../outside/secret.md", "'..'"),
    ("work/../work/../../outside/secret.md", "'..'"),
    ("leak.md", "outside the notes folder"),  # symlink to a file outside
    ("elsewhere/secret.md", "outside the notes folder"),  # through a symlinked folder
    ("~/secret.md", "relative"),
]


def test_notes_read_refuses_every_escape(notes_env, tmp_path):
    root, outside = notes_env
    before = snapshot(tmp_path, skip=root)

    async def body(client: Client) -> None:
        problems = []
        for path, needle in READ_ESCAPES:
            path = path or str(outside / "secret.md")
            result = await call(client, "read_note", path=path)
            message = text_of(result)
            leaked = SECRET in message or "root:" in message
            if not result.is_error or needle not in message or leaked:
                problems.append(f"read_note({path!r}) -> {result.is_error} {message!r}")
        for folder in ("elsewhere", "..", "/", str(outside), "work/../..", "work/../../outside"):
            result = await call(client, "list_notes", folder=folder)
            if not result.is_error or "secret" in text_of(result):
                problems.append(f"list_notes({folder!r}) -> {text_of(result)!r}")
        # list and search don't follow the symlinks that lead out
        listing = ok(await call(client, "list_notes"))
        if "secret" in listing or "leak" in listing:
            problems.append(f"list_notes() shows outside files: {listing!r}")
        found = ok(await call(client, "search_notes", query=SECRET))
        if not found.startswith("No matches"):
            problems.append(f"search_notes() read outside files: {found!r}")
        assert not problems, "\n".join(problems)

    run_server("notes", "--root", str(root), body=body)
    assert snapshot(tmp_path, skip=root) == before


def test_notes_append_refuses_every_escape(notes_env, tmp_path):
    root, outside = notes_env
    before_outside = snapshot(tmp_path, skip=root)
    before_root = snapshot(root, skip=root / "nothing")
    attempts = [
        "../x.md",
        "../outside/secret.md",
        str(tmp_path / "x.md"),
        "/tmp/assistant-notes-escape.md",
        "sub/../../x.md",
        "leak.md",  # symlink to an existing file outside
        "dangling.md",  # symlink to a missing file outside: must not be created
        "elsewhere/new.md",  # through a symlinked folder
        "elsewhere/deeper/new.md",
    ]

    async def body(client: Client) -> None:
        problems = []
        for path in attempts:
            result = await call(client, "append_note", path=path, text="injected")
            if not result.is_error or "Traceback" in text_of(result):
                problems.append(f"append_note({path!r}) -> {text_of(result)!r}")
        assert not problems, "\n".join(problems)

    run_server("notes", "--root", str(root), body=body)
    assert snapshot(tmp_path, skip=root) == before_outside
    assert snapshot(root, skip=root / "nothing") == before_root
    assert not Path("/tmp/assistant-notes-escape.md").exists()


class SwappingRoot(notes_module.NotesRoot):
    """Swaps a path component for a symlink to `target` right after the checks pass: the race
    the O_NOFOLLOW walk exists for. Each call starts from the real, unswapped tree."""

    def __init__(self, root: Path, swap: Path, target: Path):
        super().__init__(root)
        self.swap, self.target = swap, target
        self.is_folder = swap.is_dir()

    def _resolve(self, path, **kwargs):
        if self.swap.is_symlink():
            self.swap.unlink()
            if self.is_folder:
                self.swap.mkdir()
            (self.swap / "log.md" if self.is_folder else self.swap).write_text("mine\n")
        parts = super()._resolve(path, **kwargs)
        if self.is_folder:
            shutil.rmtree(self.swap)
        else:
            self.swap.unlink()
        self.swap.symlink_to(self.target)
        return parts


@pytest.mark.parametrize("swap_what", ["file", "folder"])
def test_notes_refuse_symlink_swapped_in_after_the_check(tmp_path, swap_what):
    root = tmp_path / "Notes"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "log.md").write_text("mine\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "log.md").write_text(f"{SECRET}\n")
    if swap_what == "file":
        notes = SwappingRoot(root, root / "sub" / "log.md", outside / "log.md")
    else:
        notes = SwappingRoot(root, root / "sub", outside)
    before = snapshot(outside, skip=outside / "nothing")

    with pytest.raises(ToolError, match="symbolic link"):
        notes.append_note("sub/log.md", "injected")
    assert snapshot(outside, skip=outside / "nothing") == before
    with pytest.raises(ToolError, match="symbolic link"):
        notes.read_note("sub/log.md")
    if swap_what == "folder":
        with pytest.raises(ToolError, match="symbolic link"):
            notes.append_note("sub/new/deep.md", "injected")
        assert snapshot(outside, skip=outside / "nothing") == before


def test_notes_follow_symlinks_that_stay_inside(tmp_path):
    root = tmp_path / "Notes"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a.md").write_text("inside\n")
    (root / "alias.md").symlink_to(root / "real" / "a.md")
    (root / "shortcut").symlink_to(root / "real", target_is_directory=True)
    (root / ".git").mkdir()
    (root / ".git" / "config.md").write_text("hidden\n")
    (root / "peek.md").symlink_to(root / ".git" / "config.md")

    async def body(client: Client) -> None:
        assert ok(await call(client, "read_note", path="alias.md")) == "inside\n"
        assert ok(await call(client, "read_note", path="shortcut/a.md")) == "inside\n"
        ok(await call(client, "append_note", path="shortcut/b.md", text="via link"))
        # inside, but hidden: as off limits through a link as by name
        error(await call(client, "read_note", path="peek.md"), "hidden")

    run_server("notes", "--root", str(root), body=body)
    assert (root / "real" / "b.md").read_text() == "via link\n"


def make_deep(root: Path, levels: int, note: str) -> Path:
    """root/d/d/.../d (levels deep) with `note` at the bottom, made one level at a time
    (os.makedirs recurses once per level)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        with os.fdopen(os.open("deep.md", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "w") as f:
            f.write(note)
    finally:
        os.close(fd)
    return root / "d"


def remove_deep(top: Path) -> None:
    """Remove a chain made by make_deep one level at a time (shutil.rmtree recurses)."""
    spare = top.with_name("spare")
    while top.exists():
        if (top / "d").exists():
            (top / "d").rename(spare)
        for entry in top.iterdir():
            entry.unlink()
        top.rmdir()
        if spare.exists():
            spare.rename(top)


@pytest.fixture
def deep_root(tmp_path):
    root = tmp_path / "Notes"
    root.mkdir()
    yield root
    remove_deep(root / "d")


def test_notes_deep_folders_are_capped_not_fatal(deep_root):
    root = deep_root
    (root / "todo.md").write_text("atlas demo\n")
    make_deep(root, 1200, "atlas at the bottom\n")  # what an earlier, uncapped append made
    depth = notes_module.MAX_DEPTH

    async def body(client: Client) -> None:
        listing = ok(await call(client, "list_notes"))
        assert listing.splitlines()[0] == "1 note in the notes folder:"
        assert listing.splitlines()[1].startswith("todo.md  (")
        assert f"more than {depth} folders deep" in listing
        found = ok(await call(client, "search_notes", query="atlas"))
        assert found.splitlines()[:2] == ["Matches for 'atlas':", "todo.md:1: atlas demo"]
        assert f"more than {depth} folders deep" in found

        # The tools themselves never go deeper than the cap.
        too_deep = "/".join(["e"] * (depth + 1)) + "/x.md"
        error(await call(client, "append_note", path=too_deep, text="x"),
              f"{depth + 1} folders deep", f"at most {depth}")
        error(await call(client, "append_note", path="d/" * 1200 + "x.md", text="x"), "too long")
        error(await call(client, "read_note", path="d/" * 400 + "deep.md"), "folders deep")
        error(await call(client, "list_notes", folder="d/" * 100), "folders deep")
        error(await call(client, "append_note", path="n" * 300 + ".md", text="x"),
              "longer than 255 bytes")
        deepest = "/".join(["e"] * depth) + "/x.md"
        ok(await call(client, "append_note", path=deepest, text="deep but allowed"))
        assert "deep but allowed" in ok(await call(client, "read_note", path=deepest))
        assert "e/" * depth + "x.md" in ok(await call(client, "list_notes", folder="e"))

    run_server("notes", "--root", str(root), body=body)
    assert not (root / "e" / ("e/" * depth)).exists()


def test_notes_refuse_hard_links(tmp_path):
    root = tmp_path / "Notes"
    root.mkdir()
    (root / "plain.md").write_text("mine\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.md"
    secret.write_text(f"{SECRET}\n")
    os.link(secret, root / "linked.md")  # same file system: a real second name for it
    before = (secret.read_bytes(), secret.stat().st_mtime_ns)

    async def body(client: Client) -> None:
        for result in (await call(client, "read_note", path="linked.md"),
                       await call(client, "append_note", path="linked.md", text="injected")):
            message = error(result, "linked.md", "2 hard links", "outside the notes folder")
            assert SECRET not in message
        listing = ok(await call(client, "list_notes"))
        assert listing.splitlines()[0] == "1 note in the notes folder:"
        assert "Left out 1:" in listing and "linked.md has 2 hard links" in listing
        found = ok(await call(client, "search_notes", query=SECRET[:10]))
        assert found.startswith("No matches") and SECRET not in found
        assert "linked.md has 2 hard links" in found
        ok(await call(client, "append_note", path="plain.md", text="still fine"))

    run_server("notes", "--root", str(root), body=body)
    assert (secret.read_bytes(), secret.stat().st_mtime_ns) == before
    assert (root / "plain.md").read_text() == "mine\nstill fine\n"


def test_notes_names_that_are_not_utf8_keep_the_server_up(tmp_path):
    root = tmp_path / "Notes"
    root.mkdir()
    # A Latin-1 file name, as an old archive leaves it: undecodable as UTF-8.
    with open(os.path.join(os.fsencode(root), b"caf\xe9.md"), "w") as f:
        f.write("atlas in a badly named file\n")
    (root / "ok.md").write_text("atlas\n")

    async def body(client: Client) -> None:
        listing = ok(await call(client, "list_notes"))
        assert "caf\ufffd.md  (" in listing and "not valid UTF-8: rename it" in listing
        found = ok(await call(client, "search_notes", query="atlas"))
        assert "caf\ufffd.md:1: atlas in a badly named file" in found
        error(await call(client, "read_note", path="caf\ufffd.md"), "does not exist")
        assert ok(await call(client, "read_note", path="ok.md")) == "atlas\n"

    run_server("notes", "--root", str(root), body=body)


def test_notes_lone_surrogates_in_arguments(tmp_path):
    # The SDK's JSON reader refuses lone surrogates on the wire; this is the check behind it,
    # for any caller that hands the tools a Python string.
    root = tmp_path / "Notes"
    root.mkdir()
    notes = notes_module.NotesRoot(root)
    for call_ in (lambda: notes.read_note("\ud800.md"),
                  lambda: notes.append_note("x\udce9.md", "text"),
                  lambda: notes.list_notes("\udfff")):
        with pytest.raises(ToolError, match="not valid Unicode") as caught:
            call_()
        str(caught.value).encode("utf-8")  # the message itself can be sent
    message = notes.append_note("inbox.md", "half a pair: \ud83d, then \ud83d\ude00")
    assert "1 invalid character (lone surrogates) became \ufffd" in message
    assert (root / "inbox.md").read_text() == "half a pair: \ufffd, then \U0001f600\n"
    assert sorted(p.name for p in root.iterdir()) == ["inbox.md"]


def test_notes_tools_and_annotations(tmp_path):
    async def body(client: Client) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert sorted(tools) == ["append_note", "list_notes", "read_note", "search_notes"]
        for name in ("list_notes", "search_notes", "read_note"):
            assert tools[name].annotations.read_only_hint is True, name
            assert tools[name].annotations.destructive_hint is False, name
        append = tools["append_note"].annotations
        assert append.read_only_hint is False and append.destructive_hint is False
        assert tools["append_note"].input_schema["required"] == ["path", "text"]
        assert tools["search_notes"].input_schema["properties"]["limit"]["default"] == 20
        # the wire form is what other hosts read
        wire = tools["read_note"].model_dump(by_alias=True, exclude_none=True)["annotations"]
        assert wire["readOnlyHint"] is True and wire["destructiveHint"] is False

    run_server("notes", "--root", str(tmp_path / "Notes"), body=body)


def test_notes_root_from_env_and_default(tmp_path):
    env_root = tmp_path / "from-env"

    async def append(client: Client) -> None:
        ok(await call(client, "append_note", path="hello.md", text="hi"))

    run_server("notes", env={"ASSISTANT_NOTES_ROOT": str(env_root)}, body=append)
    assert (env_root / "hello.md").read_text() == "hi\n"

    home = tmp_path / "fake-home"
    home.mkdir()
    run_server("notes", env={"HOME": str(home)}, body=append)
    assert stat.S_IMODE((home / "Notes").stat().st_mode) == 0o700
    assert (home / "Notes" / "hello.md").read_text() == "hi\n"


def test_notes_root_that_is_a_file_is_one_clear_line(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "assistant.tools.notes", "--root", str(not_a_dir)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "notes folder" in result.stderr


# -- clock ----------------------------------------------------------------------------------

def test_clock():
    async def body(client: Client) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert sorted(tools) == ["date_add", "days_between", "now"]
        for tool in tools.values():
            assert tool.annotations.read_only_hint is True, tool.name
            assert tool.annotations.destructive_hint is False, tool.name

        stamp = ok(await call(client, "now", timezone="UTC"))
        moment = datetime.fromisoformat(stamp.split()[0])
        assert moment.utcoffset().total_seconds() == 0
        assert abs((datetime.now(UTC) - moment).total_seconds()) < 300
        assert moment.strftime("%A") in stamp
        tokyo = ok(await call(client, "now", timezone="Asia/Tokyo"))
        assert datetime.fromisoformat(tokyo.split()[0]).utcoffset().total_seconds() == 9 * 3600
        datetime.fromisoformat(ok(await call(client, "now")).split()[0])

        error(await call(client, "now", timezone="Mars/Olympus_Mons"), "unknown time zone")
        error(await call(client, "now", timezone="../../etc/passwd"), "unknown time zone")

        async def add(**kw) -> str:
            return ok(await call(client, "date_add", **kw))

        assert await add(date="2024-01-31", months=1) == "2024-02-29"
        assert await add(date="2023-01-31", months=1) == "2023-02-28"
        assert await add(date="2024-02-29", years=1) == "2025-02-28"
        assert await add(date="2024-03-31", months=-1) == "2024-02-29"
        assert await add(date="2024-12-15", months=2, days=20) == "2025-03-07"
        assert await add(date="2024-01-01", weeks=2, days=-1) == "2024-01-14"
        assert await add(date="2024-05-01") == "2024-05-01"
        error(await call(client, "date_add", date="31/01/2024", days=1), "ISO date")
        error(await call(client, "date_add", date="2024-01-01", years=9000), "1..9999")
        error(await call(client, "date_add", date="2024-01-01", days=10**12), "1..9999")

        assert ok(await call(client, "days_between", start="2024-01-01", end="2025-01-01")) == "366"
        assert ok(await call(client, "days_between", start="2024-03-10", end="2024-03-01")) == "-9"
        error(await call(client, "days_between", start="2024-02-30", end="2024-03-01"), "ISO date")

    run_server("clock", body=body)


# -- calculator -----------------------------------------------------------------------------

def test_calculator():
    async def body(client: Client) -> None:
        (tool,) = (await client.list_tools()).tools
        assert tool.name == "calculate"
        assert tool.annotations.read_only_hint is True
        assert tool.annotations.destructive_hint is False

        async def calc(expression: str) -> str:
            return ok(await call(client, "calculate", expression=expression))

        assert await calc("2 * (3 + 4) ** 2") == "98"
        assert await calc("7 / 2") == "3.5"
        assert await calc("7 // 2") == "3"
        assert await calc("-7 % 3") == "2"
        assert await calc("-(2 ** 3)") == "-8"
        assert await calc("0.1 + 0.2") == "0.3"
        assert await calc("sqrt(16) + abs(-3)") == "7"
        assert await calc("round(pi, 4)") == "3.1416"
        assert await calc("max(1, 5, 3) - min(4, 2)") == "3"
        assert await calc("log10(1000) + log(e)") == "4"
        assert await calc("sin(0) + cos(0)") == "1"
        assert await calc("2 ** 100") == str(2**100)
        assert await calc("factorial(20)") == "2432902008176640000"
        assert await calc("2^10") == "1024"

    run_server("calculator", body=body)


ABUSE = [
    ("__import__('os').system('touch /tmp/assistant-calculator-pwned')", "only the listed functions"),
    ("(1).__class__.__bases__", "Attribute is not allowed"),
    ("open('/etc/passwd')", "only the listed functions"),
    ("os", "unknown name"),
    ("globals()", "only the listed functions"),
    ("[x for x in range(10**9)]", "not allowed"),
    ("'a' * 10", "only real numbers"),
    ("lambda: 1", "not allowed"),
    ("9**9**9", "too large"),
    ("2 ** 10 ** 10", "too large"),
    ("(10 ** 1000) ** (10 ** 1000)", "too large"),
    ("10.0 ** 400", "too large"),
    ("factorial(factorial(factorial(5)))", "factorial is limited"),
    ("factorial(100000)", "factorial is limited"),
    ("round(5, -10 ** 300)", "round's digits"),
    ("-" * 400 + "1", "nested too deeply"),
    ("(" * 210 + "1" + ")" * 210, "cannot parse"),
    ("1" + " + 1" * 200, "too long"),
    ("1 / 0", "division by zero"),
    ("5 // 0", "division by zero"),
    ("5 % 0", "division by zero"),
    ("sqrt(-1)", "math domain error"),
    ("(-8) ** 0.5", "not a real number"),
    ("2 +", "cannot parse"),
]


def test_calculator_refuses_abuse_quickly():
    async def body(client: Client) -> None:
        problems = []
        for expression, needle in ABUSE:
            result = await call(client, "calculate", expression=expression)
            message = text_of(result)
            if not result.is_error or needle not in message or "Traceback" in message:
                problems.append(f"{expression[:40]!r} -> {result.is_error} {message[:200]!r}")
        assert not problems, "\n".join(problems)
        # still answering after all that
        assert ok(await call(client, "calculate", expression="1 + 1")) == "2"

    run_server("calculator", body=body)
    assert not os.path.exists("/tmp/assistant-calculator-pwned")
