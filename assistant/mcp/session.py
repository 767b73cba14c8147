"""One server through the MCP SDK: connect (in process, stdio or HTTP), list the tools,
call one (with its progress, its server's questions to the user and its structured result
checked), follow changes to the tool list, list and read its resources, list and get its
prompts, and say in a line what went wrong.

The host imports this module on its own thread when the first server starts, so that
nothing which runs without tools pays for importing the SDK.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
from contextlib import AsyncExitStack
from pathlib import Path

import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from assistant.mcp import elicit
from assistant.mcp.config import ServerConfig
from assistant.mcp.inprocess import server_for
from assistant.mcp.stdio import ServerIO, ServerLog, about, stdio_transport
from assistant.mcp.toolinfo import (Progress, PromptArgument, PromptInfo, PromptMessage,
                                    RequestFailed, ResourceContent, ResourceInfo, ToolInfo,
                                    size_text)
from assistant.text import scrub, scrub_data

CLIENT_INFO = types.Implementation(name="assistant", version="0.1")
PROGRESS_CHARS = 200  # of a progress message: a status line, not a channel for output


async def connect(state, stack: AsyncExitStack, log_dir: Path, startup_timeout: float,
                  host=None) -> Client:
    """Enter a client for ``state.config`` on ``stack``; its handshake requests get the
    start-up limit (each call passes the server's own timeout).

    ``host`` hears of the server's changed tool list (``tools_changed(state)``) and
    answers its questions to the user (``host.elicit``; declined without one). The client
    declares elicitation, form and URL, because both are answered (if only by declining).
    """
    async def on_message(message) -> None:
        if isinstance(message, types.ToolListChangedNotification) and host is not None:
            host.tools_changed(state)  # schedules a re-list: never inline in the dispatcher

    async def on_elicit(context, params) -> types.ElicitResult:
        return await _elicit(state, host, params)

    client = Client(_target(state, stack, log_dir), read_timeout_seconds=startup_timeout,
                    client_info=CLIENT_INFO, message_handler=on_message,
                    elicitation_callback=on_elicit)
    try:
        return await stack.enter_async_context(client)
    except BaseException:
        if getattr(getattr(state, "auth", None), "login_needed", False):
            from assistant.mcp.oauth import login_line

            raise StartError(login_line(state.config.name)) from None
        raise


async def follow_tool_changes(state) -> None:
    """Keep a ``subscriptions/listen`` stream open for ``tools/list_changed`` (revision
    2026-07-28 servers send change notifications only there); the notifications arrive
    through the client's message handler. Earlier servers send them unasked."""
    client: Client = state.client
    tools = client.server_capabilities.tools
    if tools is None or not tools.list_changed:
        return
    try:
        async with client.listen(tools_list_changed=True) as subscription:
            async for _ in subscription:
                pass
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a server that predates listen, or a stream that dropped
        if state.io is not None:
            state.io.log.line(f"--- not following tool-list changes: {first_line(exc)}")


async def _elicit(state, host, params) -> types.ElicitResult:
    """Ask the user through the front end, on a worker thread; decline when there is no
    one to ask or the form cannot be shown. The call's own time limit bounds the wait:
    when it runs out this is cancelled and the front end told to give up."""
    server = state.config.name
    handler = getattr(host, "elicit", None)
    url = getattr(params, "url", None)
    try:
        fields = () if url else elicit.fields_from_schema(
            scrub_data(getattr(params, "requested_schema", None) or {}))
    except elicit.Unsupported as exc:
        if state.io is not None:
            state.io.log.line(f"--- declined a question to the user: {exc}")
        return types.ElicitResult(action="decline")
    if handler is None:
        return types.ElicitResult(action="decline")
    request = elicit.Elicitation(server, scrub(params.message or ""), fields,
                                 scrub(url) if url else None)
    given_up = threading.Event()
    try:
        answer = await asyncio.to_thread(handler, request, given_up)
    except asyncio.CancelledError:
        given_up.set()
        raise
    except Exception:  # a front end that failed to ask: the user said nothing
        return types.ElicitResult(action="cancel")
    if answer.action == "accept" and not url:
        return types.ElicitResult(action="accept", content=answer.content or {})
    if answer.action in ("accept", "decline", "cancel"):
        return types.ElicitResult(action=answer.action)
    return types.ElicitResult(action="decline")


def _target(state, stack: AsyncExitStack, log_dir: Path):
    config: ServerConfig = state.config
    if config.url:
        http = create_mcp_http_client(headers=config.headers or None, auth=_auth(state))
        stack.push_async_callback(http.aclose)
        return streamable_http_client(config.url, http_client=http)
    state.log_file = log_dir / f"mcp-{config.name}.log"
    state.io = ServerIO(ServerLog(state.log_file))
    stack.callback(state.io.log.close)
    about(state.io)  # the SDK's log records about this server go to its log
    try:
        server = server_for(config)
    except OSError as exc:  # what the notes server's own command line would say
        raise StartError(f"cannot use {exc.filename or 'the notes folder'} as the notes "
                         f"folder: {exc.strerror or exc}; set notes_dir in the settings to "
                         "a folder you can write") from None
    if server is not None:
        state.io.log.line(f"--- running in process: assistant.tools.{config.name}")
        state.in_process = True
        return server
    params = StdioServerParameters(command=config.command, args=list(config.args),
                                   env=config.env or None, cwd=config.cwd)
    return stdio_transport(params, state.io)


def _auth(state):
    """The OAuth provider for a remote server, unless its config sends its own
    Authorization header (an API key): stored tokens, refreshed, never a browser."""
    headers = {k.lower() for k in (state.config.headers or {})}
    if "authorization" in headers:
        return None
    from assistant.mcp.oauth import provider

    state.auth = provider(state.config)
    return state.auth


async def list_tools(client: Client, server: str, refresh: bool = False) -> list[ToolInfo]:
    tools, cursor = [], None
    for _ in range(100):  # a server that pages forever cannot hang start-up
        page = await client.list_tools(cursor=cursor, cache_mode="refresh" if refresh else "use")
        for tool in page.tools:
            notes = tool.annotations
            tools.append(ToolInfo(
                server=server, name=tool.name, description=tool.description or "",
                input_schema=tool.input_schema or {"type": "object"},
                read_only=notes.read_only_hint if notes else None,
                destructive=notes.destructive_hint if notes else None))
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


async def call_tool(state, tool: str, arguments: dict, timeout: float,
                    on_progress=None) -> tuple[str, str | None]:
    """Call ``tool`` on a ready server: (text, error). Raises ``Lost`` when the server
    is gone; ``asyncio.CancelledError`` passes through (the SDK has sent the
    protocol's cancellation).

    ``timeout`` bounds the whole call, the user's answers to the server's questions
    included. ``on_progress(Progress)`` hears the server's progress notifications, on the
    host's loop. A result whose structured content breaks the tool's ``outputSchema``
    (the SDK checks it) is an error, in one line.
    """
    server = state.config.name
    about(state.io)

    async def progress(value: float, total: float | None, message: str | None) -> None:
        if on_progress is not None:
            try:
                text = " ".join(scrub(message).split())[:PROGRESS_CHARS] if message else None
                on_progress(Progress(value, total, text or None))
            except Exception:  # a front end's display must not fail the call
                pass

    timed_out = f"{server}/{tool} did not answer within {timeout:g} s; the call was cancelled"
    try:
        async with asyncio.timeout(timeout):
            result = await state.client.call_tool(tool, scrub_data(arguments),
                                                  read_timeout_seconds=timeout,
                                                  progress_callback=progress)
    except TimeoutError:
        return "", timed_out
    except MCPError as exc:
        if exc.error.code == REQUEST_TIMEOUT:
            return "", timed_out
        if exc.error.code == CONNECTION_CLOSED:
            raise Lost from None
        return "", f"{server}/{tool} failed: {scrub(exc.error.message)}"
    except Exception as exc:
        if state.client is None or is_disconnect(exc):
            raise Lost from None
        shape = _output_problem(exc)
        if shape:
            return "", f"{server}/{tool} {scrub(shape)}"
        return "", f"{server}/{tool} failed: {scrub(first_line(exc))}"
    text = scrub(result_text(result))
    if result.is_error:
        return text, text or f"{server}/{tool} reported an error"
    return text, None


async def list_resources(state, timeout: float) -> list[ResourceInfo]:
    """The resources, then the resource templates, of a server that offers resources."""
    client: Client = state.client
    if client.server_capabilities.resources is None:
        return []
    server = state.config.name
    found = [ResourceInfo(server, r.uri, r.name, r.description or "", r.mime_type, r.size)
             for page in await _pages(state, client.list_resources, timeout)
             for r in page.resources]
    found += [ResourceInfo(server, t.uri_template, t.name, t.description or "", t.mime_type,
                           None, template=True)
              for page in await _pages(state, client.list_resource_templates, timeout)
              for t in page.resource_templates]
    return found


async def read_resource(state, uri: str, timeout: float) -> list[ResourceContent]:
    result = await _request(state, f"reading {uri}", timeout,
                            state.client.read_resource, uri, cache_mode="bypass")
    parts = []
    for item in result.contents:
        if isinstance(item, types.TextResourceContents):
            text = scrub(item.text)
            parts.append(ResourceContent(item.uri, item.mime_type, text, len(text.encode())))
        else:
            try:
                size = len(base64.b64decode(item.blob, validate=False))
            except (binascii.Error, ValueError):
                size = len(item.blob) * 3 // 4
            parts.append(ResourceContent(item.uri, item.mime_type, None, size))
    return parts


async def list_prompts(state, timeout: float) -> list[PromptInfo]:
    client: Client = state.client
    if client.server_capabilities.prompts is None:
        return []
    return [PromptInfo(state.config.name, p.name, p.description or "", tuple(
                PromptArgument(a.name, a.description or "", bool(a.required))
                for a in p.arguments or ()))
            for page in await _pages(state, client.list_prompts, timeout)
            for p in page.prompts]


async def get_prompt(state, name: str, arguments: dict[str, str], timeout: float
                     ) -> list[PromptMessage]:
    result = await _request(state, f"prompt {name!r}", timeout,
                            state.client.get_prompt, name, scrub_data(arguments))
    messages = []
    for message in result.messages:
        block = message.content
        if isinstance(block, types.TextContent):
            text = block.text
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            text = getattr(resource, "text", None) or f"[resource {resource.uri}]"
        else:
            kind = getattr(block, "mime_type", None)  # images and audio: described only
            text = f"[{block.type}, {kind}]" if kind else f"[{block.type}]"
        messages.append(PromptMessage(message.role, scrub(text)))
    return messages


async def complete(state, prompt: str, argument: str, value: str,
                   known: dict[str, str], timeout: float) -> list[str]:
    """The server's suggestions for one prompt argument (``completion/complete``), or
    none when the server does not offer completions."""
    if state.client.server_capabilities.completions is None:
        return []
    result = await _request(state, f"completing {argument!r}", timeout,
                            state.client.complete, types.PromptReference(name=prompt),
                            {"name": argument, "value": value}, known or None)
    return [scrub(v) for v in result.completion.values[:100]]


async def _pages(state, fetch, timeout: float) -> list:
    pages, cursor = [], None
    for _ in range(100):  # a server that pages forever cannot hang a listing
        page = await _request(state, "listing", timeout, fetch, cursor=cursor)
        pages.append(page)
        cursor = page.next_cursor
        if not cursor:
            break
    return pages


async def _request(state, what: str, timeout: float, method, *args, **kwargs):
    """One request with the server's timeout; its failure as ``RequestFailed`` (one line)
    or ``Lost``."""
    server = state.config.name
    about(state.io)
    try:
        async with asyncio.timeout(timeout):
            return await method(*args, **kwargs)
    except TimeoutError:
        raise RequestFailed(f"{server} did not answer {what} within {timeout:g} s") from None
    except MCPError as exc:
        if exc.error.code == CONNECTION_CLOSED:
            raise Lost from None
        raise RequestFailed(f"{server}: {scrub(exc.error.message)}") from None
    except Exception as exc:
        if state.client is None or is_disconnect(exc):
            raise Lost from None
        raise RequestFailed(f"{server}: {scrub(first_line(exc))}") from None


def _output_problem(exc: Exception) -> str | None:
    """What is wrong with a result against the tool's ``outputSchema``, from the error
    the SDK raises when it checks one (None for any other error)."""
    text = str(exc)
    if not isinstance(exc, RuntimeError):
        return None
    if "did not return structured content" in text:
        return "returned no structuredContent, though it declares an outputSchema"
    if text.startswith("Invalid schema for tool"):
        return "declares an outputSchema that is not a valid JSON schema"
    if not text.startswith("Invalid structured content returned by tool"):
        return None
    cause = exc.__cause__
    message = getattr(cause, "message", None) or first_line(exc).partition(": ")[2]
    path = "/".join(str(p) for p in getattr(cause, "absolute_path", ()))
    where = f" at {path}" if path else ""
    return f"returned structuredContent that breaks its outputSchema{where}: {message}"


class Lost(Exception):
    """The server exited or closed its connection."""


class StartError(Exception):
    """A server that cannot start, in one line for the user."""


def result_text(result: types.CallToolResult) -> str:
    """A tool result as text: text blocks as they are, anything else described. A
    text-only model cannot use images or audio, and their base64 would fill the prompt, so
    they become their type and size; a resource link becomes its URI, which the user can
    read with ``tools read`` or attach with ``ask --attach``."""
    parts = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, (types.ImageContent, types.AudioContent)):
            parts.append(f"[{block.type}: {block.mime_type or 'unknown type'}, "
                         f"{size_text(_decoded_size(block.data))}]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            text = getattr(resource, "text", None)
            if text is None:
                blob = getattr(resource, "blob", "") or ""
                text = f"[resource: {resource.uri} ({resource.mime_type or 'unknown type'}, " \
                       f"{size_text(_decoded_size(blob))})]"
            parts.append(text)
        elif isinstance(block, types.ResourceLink):
            about_it = ", ".join(str(x) for x in (block.name, block.mime_type) if x)
            parts.append(f"[resource: {block.uri} ({about_it})]" if about_it
                         else f"[resource: {block.uri}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def _decoded_size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return len(data) * 3 // 4


def describe_start_failure(exc: BaseException, config: ServerConfig, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"did not finish the handshake within {timeout:g} s"
    if isinstance(exc, StartError):
        return str(exc)
    if isinstance(exc, FileNotFoundError) or (isinstance(exc, OSError) and exc.errno == 2):
        if config.cwd and not Path(config.cwd).is_dir():
            return f"working directory not found: {config.cwd}"
        return f"command not found: {config.command}"
    if isinstance(exc, BaseExceptionGroup):
        return describe_start_failure(exc.exceptions[0], config, timeout)
    if is_disconnect(exc):
        return "the server exited during the handshake"
    return first_line(exc)


def is_disconnect(exc: BaseException) -> bool:
    import anyio

    if isinstance(exc, MCPError):
        return exc.error.code == CONNECTION_CLOSED
    return isinstance(exc, (anyio.ClosedResourceError, anyio.BrokenResourceError,
                            anyio.EndOfStream, BrokenPipeError, ConnectionError))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
