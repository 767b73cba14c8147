"""The real `assistant` command in a subprocess, as a user or a script runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ASSISTANT = str(Path(sys.executable).with_name("assistant"))


def run(*args: str, input: bytes | None = None, timeout: float = 180, tools: bool = False):
    """Run the command; `ask` starts no MCP servers unless the test is about them."""
    if args[:1] == ("ask",) and not tools:
        args = ("ask", "--no-tools", *args[1:])
    return subprocess.run([ASSISTANT, *args], input=input, capture_output=True,
                          stdin=None if input is not None else subprocess.DEVNULL,
                          timeout=timeout, env=os.environ.copy())


def one_line_error(result, *needles: str) -> str:
    """The failure is one line on stderr, no traceback, a non-zero exit."""
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert result.stdout == b""
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def test_ask_streams_an_answer(fixture_model):
    # The default path: our MCP servers start, their tools are offered, then closed.
    result = run("ask", "--model", str(fixture_model), "--no-think", "--max-tokens", "8",
                 "--seed", "1", "Hello!", tools=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip()
    # Only the note that the answer was cut: no library warnings on the user's screen.
    assert result.stderr.decode().strip().splitlines() == [
        "assistant: the answer was cut off at 8 tokens; raise --max-tokens for more"]


def test_ask_json_has_answer_thinking_and_stats(fixture_model):
    result = run("ask", "--model", str(fixture_model), "--max-tokens", "6", "--json", "Hi")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) >= {"answer", "thinking", "finish_reason", "stats"}
    assert out["finish_reason"] == "length"
    assert out["stats"]["generated_tokens"] == 6
    assert out["stats"]["prompt_tokens"] > 10  # system prompt + question, templated
    assert out["stats"]["thinking_mode"] is True


def test_ask_without_the_tool_call_grammar(fixture_model):
    result = run("ask", "--model", str(fixture_model), "--max-tokens", "4", "--no-constrain",
                 "--seed", "1", "--json", "Hi")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stats"]["generated_tokens"] == 4


def test_ask_reads_the_prompt_from_stdin(fixture_model):
    result = run("ask", "--model", str(fixture_model), "--max-tokens", "4", "--json",
                 "--system", "", "-", input="Summarize: 中文 and English.".encode())
    assert result.returncode == 0, result.stderr
    # No system prompt, so the prompt is the user's text and the template around it.
    assert json.loads(result.stdout)["stats"]["prompt_tokens"] < 30


def test_repeated_runs_exit_cleanly(fixture_model):
    # MLX can abort at exit (code 134) when a thread that used it ends uncleanly.
    codes = [run("ask", "--model", str(fixture_model), "--max-tokens", "2", "x").returncode
             for _ in range(4)]
    assert codes == [0, 0, 0, 0]


def test_non_utf8_stdin(fixture_model):
    result = run("ask", "--model", str(fixture_model), "-", input=b"caf\xe9 au lait")
    one_line_error(result, "not UTF-8", "0xe9")


def test_empty_prompt(fixture_model):
    one_line_error(run("ask", "--model", str(fixture_model), "-", input=b"  \n"), "empty")


@pytest.mark.parametrize("args,needle", [
    (["ask", "--frobnicate", "hi"], "--frobnicate"),
    (["ask", "--max-tokens", "0", "hi"], "--max-tokens"),
    (["ask", "--think", "--no-think", "hi"], "not allowed with"),
    (["bench", "--tool-calls", "0"], "--tool-calls"),
    (["summarize", "--parallel", "0", "notes"], "--parallel: '0' must be at least 1"),
    (["summarize", "--parallel", "33", "notes"], "--parallel: '33' must be at most 32"),
    (["summarize", "--parallel", "four", "notes"], "--parallel: 'four' is not a whole number"),
    (["summarize", "--parallel", "", "notes"], "--parallel: '' is not a whole number"),
    (["launch"], "launch"),
])
def test_bad_options_are_one_line(args, needle):
    one_line_error(run(*args), needle)


def test_help_lists_the_commands():
    result = run("--help")
    assert result.returncode == 0
    for command in (b"chat", b"ask", b"bench", b"tools"):
        assert command in result.stdout


def test_the_chat_app_needs_a_terminal(fixture_model):
    # `assistant` alone opens the app; without a terminal it says what to use instead.
    one_line_error(run("--model", str(fixture_model), "--no-tools"), "needs a terminal",
                   "assistant ask")
    one_line_error(run(), "needs a terminal")


def test_tool_approval_without_a_terminal_denies_unless_allowed(monkeypatch):
    import io

    from assistant.cli.ask import _terminal_approver

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # no terminal to ask on

    assert _terminal_approver(False, stdin_used=False)(object()) == "deny"
    assert _terminal_approver(True, stdin_used=False)(object()) == "once"


def test_python_dash_m_works():
    result = subprocess.run([sys.executable, "-m", "assistant", "--version"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("assistant ")


def _model_copy(fixture_model: Path, dest: Path, skip: str | None = None) -> Path:
    dest.mkdir()
    for file in fixture_model.iterdir():
        if file.name != skip:
            (dest / file.name).symlink_to(file)
    return dest


def test_missing_model_directory(tmp_path):
    one_line_error(run("ask", "--model", str(tmp_path / "nowhere"), "hi"),
                   "no model directory", "--model")


def test_model_without_config(fixture_model, tmp_path):
    model = _model_copy(fixture_model, tmp_path / "m", skip="config.json")
    one_line_error(run("ask", "--model", str(model), "hi"), "no config.json")


def test_model_without_tokenizer(fixture_model, tmp_path):
    model = _model_copy(fixture_model, tmp_path / "m", skip="tokenizer.json")
    one_line_error(run("ask", "--model", str(model), "hi"), "no tokenizer")


def test_model_with_truncated_weights(fixture_model, tmp_path):
    model = _model_copy(fixture_model, tmp_path / "m", skip="model.safetensors")
    data = (fixture_model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 2])
    one_line_error(run("ask", "--model", str(model), "hi"), "truncated", "model.safetensors")


def test_model_with_unknown_architecture(fixture_model, tmp_path):
    model = _model_copy(fixture_model, tmp_path / "m", skip="config.json")
    config = json.loads((fixture_model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "nope"}))
    one_line_error(run("ask", "--model", str(model), "hi"), "cannot load the model")


def test_repo_not_downloaded_while_offline():
    # HF_HUB_OFFLINE=1 and an empty HF_HOME (conftest): nothing cached, no network.
    err = one_line_error(run("ask", "--model", "mlx-community/Qwen3-0.6B-4bit", "hi"),
                         "mlx-community/Qwen3-0.6B-4bit", "hf download")
    assert "not downloaded" in err


def test_repo_found_in_the_hf_cache_without_network(fixture_model, tmp_path, monkeypatch):
    # Lay the fixture out as a Hugging Face cache entry, as `hf download` leaves it.
    hub = tmp_path / "hf" / "hub" / "models--someone--tiny-qwen3"
    snapshot = hub / "snapshots" / ("0" * 40)
    snapshot.parent.mkdir(parents=True)
    _model_copy(fixture_model, snapshot)
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text("0" * 40)
    result = run("ask", "--model", "someone/tiny-qwen3", "--max-tokens", "3", "--json", "hi")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == str(snapshot)


def test_prompt_longer_than_the_context_window(fixture_model, app_home):
    (app_home / "config").mkdir(parents=True)
    (app_home / "config" / "settings.toml").write_text("context_limit = 64\n")
    one_line_error(run("ask", "--model", str(fixture_model), "word " * 200),
                   "context window")


def test_invalid_settings_file_is_reported_and_ignored(fixture_model, app_home):
    (app_home / "config").mkdir(parents=True)
    (app_home / "config" / "settings.toml").write_text('model = "x"\nthinking = maybe\n')
    result = run("ask", "--model", str(fixture_model), "--max-tokens", "2", "--json", "hi")
    assert result.returncode == 0
    err = result.stderr.decode()
    assert "settings.toml" in err and "line 2" in err and "using the defaults" in err


def test_ask_takes_a_prompt_that_is_not_valid_utf8_in_argv(fixture_model):
    # Python hands non-UTF-8 argv bytes over as lone surrogates; they become U+FFFD.
    result = subprocess.run([ASSISTANT, "ask", "--no-tools", "--model", str(fixture_model),
                             "--max-tokens", "3", "--json", b"caf\xe9 \xff?",
                             "--system", b"be \xfe brief"],
                            capture_output=True, stdin=subprocess.DEVNULL, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr.decode()
    assert json.loads(result.stdout)["stats"]["generated_tokens"] == 3
