"""One server through the MCP SDK: connect (in process, stdio or HTTP), list the tools,
call one, list and read its resources, list and get its prompts, and say in a line what
went wrong.

The host imports this module on its own thread when the first server starts, so that
nothing which runs without tools pays for importing the SDK.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from contextlib import AsyncExitStack
from pathlib import Path

import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from assistant.mcp.config import ServerConfig
from assistant.mcp.inprocess import server_for
from assistant.mcp.stdio import ServerIO, ServerLog, about, stdio_transport
from assistant.mcp.toolinfo import (PromptArgument, PromptInfo, PromptMessage, RequestFailed,
                                    ResourceContent, ResourceInfo, ToolInfo)
from assistant.text import scrub, scrub_data

CLIENT_INFO = types.Implementation(name="assistant", version="0.1")


async def connect(state, stack: AsyncExitStack, log_dir: Path, startup_timeout: float
                  ) -> Client:
    """Enter a client for ``state.config`` on ``stack``; its handshake requests get the
    start-up limit (each call passes the server's own timeout)."""
    return await stack.enter_async_context(Client(
        _target(state, stack, log_dir), read_timeout_seconds=startup_timeout,
        client_info=CLIENT_INFO))


def _target(state, stack: AsyncExitStack, log_dir: Path):
    config: ServerConfig = state.config
    if config.url:
        http = create_mcp_http_client(headers=config.headers or None)
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


async def list_tools(client: Client, server: str) -> list[ToolInfo]:
    tools, cursor = [], None
    for _ in range(100):  # a server that pages forever cannot hang start-up
        page = await client.list_tools(cursor=cursor)
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


async def call_tool(state, tool: str, arguments: dict, timeout: float) -> tuple[str, str | None]:
    """Call ``tool`` on a ready server: (text, error). Raises ``Lost`` when the server
    is gone; ``asyncio.CancelledError`` passes through (the SDK has sent the
    protocol's cancellation)."""
    server = state.config.name
    about(state.io)
    try:
        result = await state.client.call_tool(tool, scrub_data(arguments),
                                              read_timeout_seconds=timeout)
    except MCPError as exc:
        if exc.error.code == REQUEST_TIMEOUT:
            return "", (f"{server}/{tool} did not answer within {timeout:g} s; the call was "
                        "cancelled")
        if exc.error.code == CONNECTION_CLOSED:
            raise Lost from None
        return "", f"{server}/{tool} failed: {scrub(exc.error.message)}"
    except Exception as exc:
        if state.client is None or is_disconnect(exc):
            raise Lost from None
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


class Lost(Exception):
    """The server exited or closed its connection."""


class StartError(Exception):
    """A server that cannot start, in one line for the user."""


def result_text(result: types.CallToolResult) -> str:
    """A tool result as text: text blocks as they are, anything else described."""
    parts = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent):
            parts.append(f"[image, {block.mime_type}]")
        elif isinstance(block, types.AudioContent):
            parts.append(f"[audio, {block.mime_type}]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            parts.append(getattr(resource, "text", None) or f"[resource {resource.uri}]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[link {block.uri}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


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
