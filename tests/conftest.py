"""Shared fixtures: the fixture model (built once per session), an isolated app home,
and one engine for the engine tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tests never reach the Hugging Face Hub, whatever the machine's network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def fixture_model(tmp_path_factory) -> Path:
    """The tiny Qwen3 fixture: real architecture and tokenizer, random weights."""
    out = tmp_path_factory.mktemp("models") / "qwen3-tiny"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_fixture_model.py"), str(out)],
                   check=True, capture_output=True, text=True)
    return out


def _mcp_children() -> list[str]:
    """Processes still running one of the MCP servers the tests start."""
    markers = ("assistant.tools.", "tests/servers/", "mcp-server-time", "env_server.py")
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().split(") ")[-1][:1]
        except OSError:
            continue
        if state != "Z" and any(m in cmdline for m in markers):
            found.append(f"{proc.name}: {cmdline.strip()}")
    return found


@pytest.fixture(scope="session", autouse=True)
def no_mcp_server_left_behind():
    """After the whole suite, no MCP child process may still be running."""
    before = set(_mcp_children())
    yield
    if Path("/proc").is_dir():
        left = [p for p in _mcp_children() if p not in before]
        assert not left, f"MCP server processes left running: {left}"


@pytest.fixture(autouse=True)
def app_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own ASSISTANT_HOME, user home (so ~/Notes is not the real one)
    and an empty Hugging Face cache."""
    home = tmp_path / "home"
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return home


@pytest.fixture(scope="session")
def engine(fixture_model):
    from assistant.engine import Engine

    with Engine(fixture_model) as engine:
        engine.wait_loaded()
        yield engine


@pytest.fixture(scope="session")
def hf_tokenizer(fixture_model):
    """The reference: the HF tokenizer as mlx-lm loads it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(fixture_model)
