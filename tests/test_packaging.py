"""The app works from an installed wheel, not only from a checkout: our MCP servers and
the prompt files are inside the wheel and start from it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from conftest import ROOT


def test_wheel_carries_the_servers_and_prompts(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("assistant-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("assistant/tools/notes.py", "assistant/tools/clock.py",
                   "assistant/tools/calculator.py", "assistant/prompts/system.txt",
                   "assistant/prompts/tools.txt", "assistant/engine/engine.py",
                   "assistant/mcp/host.py", "assistant/chat/turn.py", "assistant/notes/reader.py",
                   "assistant/tui/app.py", "assistant/tui/app.tcss"):
        assert needed in names, needed

    # Start the clock server from the unpacked wheel alone, far from the checkout.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    where = subprocess.run([sys.executable, "-c", "import assistant.tools.clock as m; "
                            "print(m.__file__)"], env={**os.environ, "PYTHONPATH": str(site)},
                           cwd="/", capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where
    params = StdioServerParameters(command=sys.executable, args=["-m", "assistant.tools.clock"],
                                   env={"PYTHONPATH": str(site)}, cwd="/")

    async def handshake():
        async with Client(params) as client:
            tools = await client.list_tools()
            result = await client.call_tool("days_between",
                                            {"start": "2026-01-01", "end": "2026-12-25"})
            return {t.name for t in tools.tools}, result.content[0].text

    names, text = anyio.run(handshake)
    assert "now" in names and "358" in text
