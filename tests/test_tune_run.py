"""``assistant tune run`` on the fixture model: a short run whose loss falls, an adapter
that ask loads, Ctrl+C that keeps the last checkpoint, and bad data in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import ASSISTANT, one_line_error, run
from test_summarize import interruptible

TOOL = {"type": "function", "function": {
    "name": "append_note", "description": "Append text to a note.",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"},
                                                   "text": {"type": "string"}},
                   "required": ["path", "text"]}}}
ITEMS = ["milk", "eggs", "bread", "tea", "rice", "soap"]


def _example(item: str) -> dict:
    return {"messages": [
        {"role": "user", "content": f"Add {item} to my list"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": "append_note", "arguments": {"path": "todo.md", "text": f"- {item}"}}}]}],
        "tools": [TOOL]}


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text(
        "".join(json.dumps(_example(i)) + "\n" for i in ITEMS[:5]))
    (folder / "valid.jsonl").write_text(json.dumps(_example(ITEMS[5])) + "\n")
    return folder


def _adapters(app_home: Path) -> Path:
    return app_home / "data" / "tune" / "adapters"


def test_a_short_run_lowers_the_loss_and_ask_loads_the_adapter(fixture_model, data, app_home):
    result = run("tune", "run", "--model", str(fixture_model), "--data", str(data),
                 "--iters", "8", "--layers", "2", "--learning-rate", "0.01", "--yes")
    assert result.returncode == 0, result.stderr
    err = result.stderr.decode()
    assert "5 examples (1 to validate)" in err and "GB at most" in err  # the estimate first
    assert err.index("GB at most") < err.index("step 1/8")
    adapter = Path(result.stdout.decode().strip())
    assert adapter == _adapters(app_home) / "tools-1"
    card = json.loads((adapter / "card.json").read_text())
    assert card["examples"] == {"train": 5, "valid": 1} and card["iterations"] == 8
    assert card["base_model"] == str(fixture_model) and not card["interrupted"]
    losses = [loss for _, loss in card["losses"]]
    assert len(losses) == 8 and min(losses[-3:]) < losses[0]  # it learned something
    assert [p.name for p in sorted(adapter.iterdir())] == [
        "adapter_config.json", "adapters.safetensors", "card.json"]  # checkpoints tidied

    answer = run("ask", "--model", str(fixture_model), "--adapter", str(adapter),
                 "--max-tokens", "4", "--json", "Add milk")
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["adapter"] == "tools-1"
    # A second run gets the next name.
    again = run("tune", "run", "--model", str(fixture_model), "--data", str(data),
                "--iters", "1", "--layers", "2", "--yes")
    assert Path(again.stdout.decode().strip()).name == "tools-2"


def test_ctrl_c_keeps_the_last_checkpoint(fixture_model, data, app_home):
    proc = subprocess.Popen(
        [ASSISTANT, "tune", "run", "--model", str(fixture_model), "--data", str(data),
         "--iters", "1000", "--save-every", "2", "--layers", "2", "--yes"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env=os.environ.copy(), preexec_fn=interruptible)
    seen = b""
    while b"checkpoint at step 2\n" not in seen:
        line = proc.stderr.readline()
        assert line, seen.decode()[-2000:]
        seen += line
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    kept = int(err.decode().split("kept the checkpoint of step ")[1].split()[0])
    assert kept >= 2 and kept % 2 == 0
    adapter = Path(out.decode().strip())
    card = json.loads((adapter / "card.json").read_text())
    assert card["interrupted"] is True and card["iterations"] == kept
    assert run("ask", "--model", str(fixture_model), "--adapter", str(adapter),
               "--max-tokens", "2", "Hi").returncode == 0


def test_bad_data_is_one_line(fixture_model, tmp_path, app_home):
    def refused(folder, *needles):
        return one_line_error(run("tune", "run", "--model", str(fixture_model), "--data",
                                  str(folder), "--yes"), *needles)

    refused(tmp_path / "none", "no training data", "assistant tune data")
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"messages": [{"role": "user"\n')
    refused(folder, "train.jsonl:1 is not valid JSON")
    (folder / "train.jsonl").write_text(json.dumps({"messages": [
        {"role": "user", "content": "hi"}]}) + "\n")
    refused(folder, "train.jsonl:1 is not a chat example")
    (folder / "train.jsonl").write_text("\n")
    refused(folder, "has no examples")
    one_line_error(run("tune", "run", "--model", "http://127.0.0.1:9/v1", "--yes"),
                   "local-only")
    one_line_error(run("tune", "run", "--model", str(fixture_model), "--iters", "0"),
                   "--iters must be at least 1")
    assert not _adapters(app_home).exists()  # nothing half-made
