"""An MCP server with resources and prompts for the tests: text and binary resources, a
resource template, a resource too big for a small context, and prompts with arguments.

    python library.py
"""

from mcp.server import MCPServer
from mcp.types import Completion

server = MCPServer(name="library")

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # 1,032 bytes, not text


@server.resource("library://readme", name="readme", description="What the library holds",
                 mime_type="text/plain")
def readme() -> str:
    return "The library keeps three shelves: poems, recipes and maps."


@server.resource("library://logo.png", name="logo", description="The library's logo",
                 mime_type="image/png")
def logo() -> bytes:
    return PNG


@server.resource("library://big", name="big", description="A long text", mime_type="text/plain")
def big() -> str:
    return "word " * 50_000


@server.resource("library://ansi", name="ansi", description="Text that clears the screen",
                 mime_type="text/plain")
def ansi() -> str:
    return "\x1b[2J\x1b[31mred\x1b[0m"


@server.resource("library://shelf/{name}", name="shelf", description="One shelf's books",
                 mime_type="text/plain")
def shelf(name: str) -> str:
    if name not in ("poems", "recipes", "maps"):
        raise ValueError(f"no shelf named {name!r}")
    return f"Books on the {name} shelf: one, two, three."


@server.prompt(description="Ask for a poem about a topic")
def poem(topic: str, style: str = "haiku") -> str:
    return f"Write a {style} about {topic}."


@server.prompt(description="Greet the reader")
def hello() -> str:
    return "Say hello to the reader."


@server.completion()
async def complete(ref, argument, context):
    """Suggests styles for the poem prompt; nothing else."""
    if getattr(ref, "name", None) == "poem" and argument.name == "style":
        return Completion(values=[s for s in ("haiku", "limerick", "sonnet")
                                  if s.startswith(argument.value)])
    if getattr(ref, "name", None) == "poem" and argument.name == "topic":
        return Completion(values=["rain", "the sea"])
    return None


if __name__ == "__main__":
    server.run()
