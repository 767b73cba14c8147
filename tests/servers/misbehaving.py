"""An MCP server that misbehaves on purpose, one way per MODE (TESTING.md §3).

    python misbehaving.py MODE

crash    the `work` tool kills the process mid-call
hang     the `work` tool never answers
flood    floods stderr at start-up and during the call, then answers
huge     the `work` tool returns about 5 MB of text
garbage  writes 2,000 lines that are not JSON-RPC on the protocol's stdout before the
         handshake and 500 more during the call, then answers
mute     never finishes the handshake
slow     takes 3 s more than the SDK import to start serving; `work` never answers
"""

import os
import sys
import time

MODE = sys.argv[1]
GARBAGE = b"this is not JSON {{{\n"
# The SDK's server moves the protocol off fd 1 (so a stray print cannot break it); a copy
# taken first still reaches the client, as a server in any other language would.
wire = os.dup(1)

if MODE == "mute":
    time.sleep(3600)
if MODE == "slow":
    time.sleep(3)
if MODE == "garbage":
    os.write(wire, GARBAGE * 2000)

from mcp.server import MCPServer  # noqa: E402

server = MCPServer(name=f"misbehaving-{MODE}")


def flood() -> None:
    line = "noise " * 20 + "\n"
    for _ in range(20_000):  # about 2.4 MB
        sys.stderr.write(line)
    sys.stderr.flush()


@server.tool(structured_output=False)
def work(text: str = "") -> str:
    """Does the work this server is bad at."""
    if MODE == "crash":
        os._exit(3)
    if MODE in ("hang", "slow"):
        time.sleep(3600)
    if MODE == "flood":
        flood()
    if MODE == "huge":
        return ("0123456789abcdef" * 64 + "\n") * 5000
    if MODE == "garbage":
        os.write(wire, GARBAGE * 500)
    return f"done: {text}"


@server.tool(structured_output=False)
def echo(text: str) -> str:
    """Says the text back."""
    return text


if MODE == "flood":
    flood()
server.run()
