"""An MCP server that uses the rest of what a tool call can do, for the tests: progress,
structured results (one that breaks its own outputSchema), images and resource links,
elicitation (a form and a URL) and a tool list that changes.

    python features.py             # over stdio
    python features.py PORT_FILE   # over Streamable HTTP on 127.0.0.1: a free port,
                                   # written to PORT_FILE once the server listens

Elicitation uses the 2026-07-28 way: the tool answers with an ``input_required`` result
holding an ``elicitation/create`` request, and the client retries with the answer.
"""

import asyncio
import base64
import json

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp_types import (CallToolResult, ElicitRequest, ElicitRequestFormParams,
                       ElicitRequestURLParams, ImageContent, InputRequiredResult, ResourceLink,
                       TextContent)
from pydantic import BaseModel

server = MCPServer(name="features")

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 48  # 12,296 bytes: "12.0 KB"


@server.tool(description="Counts to n slowly, reporting progress at each step")
async def slow_count(n: int = 3, ctx: Context = None) -> str:
    for step in range(1, n + 1):
        await ctx.report_progress(step, n, f"step {step}")
        await asyncio.sleep(0.05)
    return f"counted to {n}"


class Weather(BaseModel):
    city: str
    celsius: float


@server.tool(description="The weather in a city, as structured data")
def weather(city: str) -> Weather:
    return Weather(city=city, celsius=21.5)


@server.tool(description="The weather, but its data breaks its own outputSchema")
def broken_weather(city: str) -> Weather:
    return CallToolResult(content=[TextContent(type="text", text="{}")],
                          structured_content={"city": city, "celsius": "warm"})


@server.tool(description="The weather, but without the structured data it promised")
def shapeless_weather(city: str) -> Weather:
    return CallToolResult(content=[TextContent(type="text", text=f"sunny in {city}")])


# Registered with their schema, then left unchecked here, as a careless server would be,
# so the client is the one that must notice.
for _name in ("broken_weather", "shapeless_weather"):
    object.__setattr__(server._tool_manager.get_tool(_name).fn_metadata, "output_model", None)


@server.resource("library://maps/full", name="full map", mime_type="text/plain")
def full_map() -> str:
    """What the map's link points at, so a client can read it into the next question."""
    return "The full map: the river runs north of the mill."


@server.tool(description="A picture of the map and a link to the full map")
def map_picture() -> list:
    return [TextContent(type="text", text="Here is the map."),
            ImageContent(type="image", data=base64.b64encode(PNG).decode(),
                         mime_type="image/png"),
            ResourceLink(type="resource_link", uri="library://maps/full", name="full map",
                         mime_type="text/plain")]


FORM = {"type": "object", "properties": {
    "name": {"type": "string", "title": "Your name"},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "height": {"type": "number", "description": "in metres"},
    "subscribe": {"type": "boolean", "default": False},
    "colour": {"type": "string", "enum": ["red", "green", "blue"]}},
    "required": ["name", "age"]}


def _asked(ctx: Context, request) -> InputRequiredResult | dict:
    """The user's answer to ``request``, or the result that asks for it."""
    answers = ctx.input_responses or {}
    if "ask" not in answers:
        return InputRequiredResult(input_requests={"ask": request})
    answer = answers["ask"]
    return answer if isinstance(answer, dict) else answer.model_dump(exclude_none=True)


@server.tool(description="Signs the user up, asking for their details")
async def sign_up(ctx: Context) -> str:
    answer = _asked(ctx, ElicitRequest(params=ElicitRequestFormParams(
        message="Tell us about yourself", requested_schema=FORM)))
    if isinstance(answer, InputRequiredResult):
        return answer
    return json.dumps(answer, sort_keys=True)


@server.tool(description="Connects an account, sending the user to a web page")
async def connect_account(ctx: Context) -> str:
    answer = _asked(ctx, ElicitRequest(params=ElicitRequestURLParams(
        message="Log in to connect your account", url="https://example.com/connect?x=1",
        elicitation_id="connect-1")))
    if isinstance(answer, InputRequiredResult):
        return answer
    return json.dumps(answer, sort_keys=True)


ODD_FORMS = {
    "many": {"type": "object", "properties": {f"f{i}": {"type": "string"} for i in range(60)}},
    "nested": {"type": "object", "properties": {"address": {"type": "object"}},
               "required": ["address"]},
    "hostile": {"type": "object", "properties": {
        "\x1b[2Jname": {"type": "string", "title": "Name\x1b[31m [b]bold[/b]"},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}}},
}


@server.tool(description="Asks with a form this client may not be able to show")
async def odd_form(kind: str, ctx: Context) -> str:
    answer = _asked(ctx, ElicitRequest.model_construct(
        method="elicitation/create", params=ElicitRequestFormParams.model_construct(
            mode="form", message="Odd \x1b[2J form", requested_schema=ODD_FORMS[kind])))
    if isinstance(answer, InputRequiredResult):
        return answer
    return json.dumps(answer, sort_keys=True)


@server.tool(description="Reports progress thousands of times, with a long message")
async def flood_progress(ctx: Context) -> str:
    for step in range(3000):
        await ctx.report_progress(step, 3000, "line one\nline two " + "x" * 5000)
    return "flooded"


def _new_tool(text: str) -> str:
    """A tool that appeared while the server ran."""
    return f"new tool says {text}"


@server.tool(description="Adds the tool new_tool and says the tool list changed")
async def add_tool(ctx: Context) -> str:
    server.add_tool(_new_tool, name="new_tool")
    await ctx.notify_tools_changed()
    return "added new_tool"


def serve_http(port_file: str) -> None:
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(server.streamable_http_app(), log_level="warning"))

    async def run() -> None:
        task = asyncio.create_task(uv.serve(sockets=[sock]))
        while not uv.started:
            await asyncio.sleep(0.01)
        with open(port_file, "w") as out:
            out.write(str(port))
        await task

    asyncio.run(run())


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:
        serve_http(sys.argv[1])
    else:
        server.run()
