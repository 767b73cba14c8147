"""Shared fixtures: the fixture model (built once per session), an isolated app home,
and one engine for the engine tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from processes import adopt_orphans, descendants

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


# Orphans of this run (a server's child left when the server exits) stay in its tree.
ADOPTING = adopt_orphans()


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """After the whole suite, nothing this run started may still be running: an MCP
    server, what a server started, anything a test forgot. Nothing else on the machine is
    looked at: another checkout's test run or a user's open app is not ours."""
    before = {p.pid for p in descendants()} if ADOPTING else set()
    yield
    if ADOPTING:
        left = [str(p) for p in descendants() if p.pid not in before]
        assert not left, f"processes left running by this test run: {left}"


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
