"""What a tool call can carry besides text, over real stdio and real Streamable HTTP
(tests/servers/features.py):
structured results checked against their outputSchema, images and resource links as
text, progress, a tool list that changes while the server runs, and questions to the user
(elicitation, form and URL) that never hang a call."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from assistant.mcp.config import ServerConfig
from assistant.mcp.elicit import Answer
from assistant.mcp.host import McpHost
from assistant.mcp.toolcache import ToolListCache
from mcp_helpers import features


@pytest.fixture(scope="module", params=["stdio", "http"])
def host(request, tmp_path_factory):
    """The same server over both transports: a child on stdio, and over Streamable HTTP
    on loopback (then the host connects to it by its URL, as to a remote server)."""
    home = tmp_path_factory.mktemp("features")
    config, proc = features(timeout=10), None
    if request.param == "http":
        port_file = home / "port"
        proc = subprocess.Popen([sys.executable, *config.args, str(port_file)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120  # a guard against a server that never starts
        while not (port_file.exists() and port_file.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "no HTTP server"
            time.sleep(0.05)
        config = ServerConfig("features", url=f"http://127.0.0.1:{port_file.read_text()}/mcp",
                              timeout=10)
    host = McpHost([config], log_dir=home / "logs", tool_cache=ToolListCache(home / "cache"))
    try:
        host.start()
        assert host.servers["features"].status == "ready", host.servers["features"].error
        yield host
    finally:
        host.close()
        if proc is not None:
            proc.kill()
            proc.wait()


def call(host, tool, arguments=None, **kw):
    return host.call("features", tool, arguments or {}, **kw)


def test_structured_content_that_fits_its_schema_is_the_result(host):
    result = call(host, "weather", {"city": "Oslo"})
    assert result.ok and '"celsius": 21.5' in result.text


def test_structured_content_that_breaks_its_schema_is_a_one_line_error(host):
    result = call(host, "broken_weather", {"city": "Oslo"})
    assert not result.ok
    assert result.error == ("features/broken_weather returned structuredContent that breaks "
                            "its outputSchema at celsius: 'warm' is not of type 'number'")
    missing = call(host, "shapeless_weather", {"city": "Oslo"})
    assert missing.error == ("features/shapeless_weather returned no structuredContent, "
                             "though it declares an outputSchema")


def test_images_are_described_and_resource_links_shown(host):
    result = call(host, "map_picture")
    assert result.ok
    assert result.text.splitlines() == ["Here is the map.", "[image: image/png, 12.0 KB]",
                                        "[resource: library://maps/full (full map, text/plain)]"]
    assert "iVBOR" not in result.text  # never the base64


def test_progress_reaches_the_caller(host):
    seen = []
    result = call(host, "slow_count", {"n": 3}, on_progress=lambda p: seen.append(p.describe()))
    assert result.text == "counted to 3"
    assert seen == ["1/3 step 1", "2/3 step 2", "3/3 step 3"]


def test_a_question_without_a_front_end_is_declined(host):
    host.elicit = None
    assert call(host, "sign_up").text == '{"action": "decline"}'


def test_a_form_is_answered_by_the_front_end(host):
    asked = []

    def answer(request, given_up):
        asked.append(request)
        return Answer("accept", {"name": "Ann", "age": 41, "colour": "green"})

    host.elicit = answer
    try:
        result = call(host, "sign_up")
    finally:
        host.elicit = None
    assert result.text == ('{"action": "accept", "content": '
                           '{"age": 41, "colour": "green", "name": "Ann"}}')
    (request,) = asked
    assert (request.server, request.message, request.url) == ("features",
                                                              "Tell us about yourself", None)
    kinds = {f.name: (f.kind, f.required) for f in request.fields}
    assert kinds == {"name": ("string", True), "age": ("integer", True),
                     "height": ("number", False), "subscribe": ("boolean", False),
                     "colour": ("enum", False)}
    assert request.fields[4].choices == ("red", "green", "blue")


def test_a_url_question_sends_no_content(host):
    asked = []
    host.elicit = lambda request, given_up: asked.append(request) or Answer("accept", {"x": 1})
    try:
        result = call(host, "connect_account")
    finally:
        host.elicit = None
    assert result.text == '{"action": "accept"}'
    assert asked[0].url == "https://example.com/connect?x=1" and asked[0].fields == ()


def test_an_unanswered_question_ends_with_the_call_timeout(host):
    gave_up = threading.Event()

    def never(request, given_up):
        given_up.wait()  # the user walked away; only the host's give-up ends this
        gave_up.set()
        return Answer("cancel")

    host.elicit = never
    try:
        result = call(host, "sign_up", timeout=1)
    finally:
        host.elicit = None
    assert result.error == "features/sign_up did not answer within 1 s; the call was cancelled"
    assert gave_up.wait(30)  # the front end was told to take its question down
    assert call(host, "weather", {"city": "Rome"}).ok  # the server is still there


def test_a_changed_tool_list_is_listed_again_and_kept(host):
    revision = host.revision
    changed = threading.Event()
    assert call(host, "add_tool").text == "added new_tool"
    for _ in range(600):  # until the re-list lands; bounded, not a timing claim
        if host.revision != revision:
            changed.set()
            break
        changed.wait(0.05)
    assert changed.is_set(), "the tool list was not listed again"
    assert "new_tool" in {t.name for t in host.tools()}
    assert "new_tool" in {t.name for t in host.cache.get(host.servers["features"].config)}
    assert call(host, "new_tool", {"text": "hi"}).text == "new tool says hi"


def test_a_flood_of_long_progress_reports_stays_short(host):
    seen = []
    result = call(host, "flood_progress", on_progress=seen.append)
    assert result.text == "flooded" and seen
    assert all(len(p.message) <= 200 and "\n" not in p.message for p in seen)


@pytest.mark.parametrize("kind", ["many", "nested"])
def test_a_form_this_client_cannot_show_is_declined_unasked(host, kind):
    asked = []
    host.elicit = lambda request, given_up: asked.append(request) or Answer("accept", {})
    try:
        result = call(host, "odd_form", {"kind": kind})
    finally:
        host.elicit = None
    assert result.text == '{"action": "decline"}' and asked == []


def test_a_hostile_form_is_read_safely(host):
    asked = []
    host.elicit = lambda request, given_up: asked.append(request) or Answer("cancel")
    try:
        result = call(host, "odd_form", {"kind": "hostile"})
    finally:
        host.elicit = None
    assert result.text == '{"action": "cancel"}'
    (request,) = asked
    # The optional multiple choice (not asked by this client) is left out; text stays
    # text, for the front ends to show as such.
    assert [(f.name, f.title, f.kind) for f in request.fields] == [
        ("\x1b[2Jname", "Name\x1b[31m [b]bold[/b]", "string")]
    assert request.message == "Odd \x1b[2J form"


def test_a_2025_server_asks_reports_and_changes_its_tools_mid_call(tmp_path):
    """The same features from a server on the earlier protocol (tests/servers/raw.py):
    a request to the client in the middle of a call, and notifications sent unasked."""
    from mcp_helpers import raw

    host = McpHost([raw("legacy", timeout=30)], log_dir=tmp_path / "logs")
    host.start()
    try:
        assert host.servers["legacy"].status == "ready", host.servers["legacy"].error
        revision, asked, seen = host.revision, [], []
        host.elicit = lambda request, given_up: asked.append(request) or Answer(
            "accept", {"shelf": "maps"})
        result = host.call("legacy", "work", {}, on_progress=seen.append)
        assert result.text == '{"action": "accept", "content": {"shelf": "maps"}}'
        assert [f.name for f in asked[0].fields] == ["shelf"]
        assert [p.describe() for p in seen] == ["1/2 asking"]
        changed = threading.Event()
        for _ in range(600):
            if host.revision != revision:
                changed.set()
                break
            changed.wait(0.05)
        assert "extra" in {t.name for t in host.tools()}
    finally:
        host.close()
