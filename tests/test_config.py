"""Paths and the settings file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from assistant.config import (DEFAULT_MODEL, SETTINGS_TEMPLATE, Sampling, Settings, load_settings,
                              paths)


def test_assistant_home_moves_every_path(app_home):
    p = paths()
    for path in (p.config_dir, p.data_dir, p.cache_dir, p.log_dir, p.settings_file):
        assert Path(path).is_relative_to(app_home)


@pytest.mark.skipif(sys.platform != "linux", reason="XDG directories are Linux's convention")
def test_platform_paths_without_assistant_home(monkeypatch, tmp_path):
    monkeypatch.delenv("ASSISTANT_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    assert paths().config_dir == tmp_path / "xdg-config" / "assistant"


def test_missing_file_gives_defaults(tmp_path):
    assert load_settings(tmp_path / "none.toml") == (Settings(), [])
    assert Settings().model == DEFAULT_MODEL


def test_the_documented_template_parses_to_the_defaults(tmp_path):
    file = tmp_path / "settings.toml"
    file.write_text(SETTINGS_TEMPLATE)
    assert load_settings(file) == (Settings(), [])


def test_values_override_defaults(tmp_path):
    file = tmp_path / "settings.toml"
    file.write_text('model = "/models/q"\nthinking = false\nthinking_budget = 64\n'
                    "constrained_tool_calls = false\n"
                    "[sampling.non_thinking]\ntemperature = 0.5\npresence_penalty = 1.5\n")
    settings, warnings = load_settings(file)
    assert warnings == []
    assert (settings.model, settings.thinking, settings.thinking_budget) == ("/models/q", False, 64)
    assert settings.constrained_tool_calls is False
    assert settings.sampling_direct.temperature == 0.5
    assert settings.sampling_direct.presence_penalty == 1.5
    assert settings.sampling_direct.top_k == 20  # untouched keys keep Qwen's preset


def test_unparsable_file_names_the_line_and_is_ignored(tmp_path):
    file = tmp_path / "settings.toml"
    file.write_text('model = "a"\n\nmax_tokens = = 3\n')
    settings, warnings = load_settings(file)
    assert settings == Settings()
    assert len(warnings) == 1 and "line 3" in warnings[0] and str(file) in warnings[0]


def test_bad_values_are_ignored_one_by_one(tmp_path):
    file = tmp_path / "settings.toml"
    file.write_text('max_tokens = -5\nthinking = "yes"\ncolour = "blue"\nthinking_budget = 9\n'
                    "[sampling.thinking]\ntop_k = 2.5\ntemperature = 0.3\n")
    settings, warnings = load_settings(file)
    assert settings.max_tokens == Settings().max_tokens
    assert settings.thinking is True
    assert settings.thinking_budget == 9
    assert settings.sampling_thinking.temperature == 0.3
    assert settings.sampling_thinking.top_k == 20
    assert len(warnings) == 4
    assert any("colour" in w for w in warnings)


def test_unreadable_encoding(tmp_path):
    file = tmp_path / "settings.toml"
    file.write_bytes(b"model = \"caf\xe9\"\n")
    settings, warnings = load_settings(file)
    assert settings == Settings() and "using the defaults" in warnings[0]


# One line of settings.toml with a value outside its range, and the key it names.
BAD_VALUES = [
    ("[sampling.thinking]\ntop_k = 1000000000000000000", "top_k", "1000000000000000000"),
    ("[sampling.thinking]\ntop_k = 151936", "top_k", "151936"),  # keeps the whole vocabulary
    ("[sampling.thinking]\ntop_k = -1", "top_k", "-1"),
    ("[sampling.thinking]\nmin_p = 5.0", "min_p", "5.0"),
    ("[sampling.thinking]\nmin_p = 1.0", "min_p", "1.0"),
    ("[sampling.non_thinking]\nmin_p = -0.1", "min_p", "-0.1"),
    ("[sampling.thinking]\ntemperature = nan", "temperature", "nan"),
    ("[sampling.thinking]\ntemperature = inf", "temperature", "inf"),
    ("[sampling.thinking]\ntemperature = -inf", "temperature", "-inf"),
    ("[sampling.thinking]\ntemperature = 0", "temperature", "0"),  # greedy: Qwen3 loops
    ("[sampling.thinking]\ntemperature = 2.5", "temperature", "2.5"),
    ("[sampling.thinking]\ntemperature = true", "temperature", "True"),
    ("[sampling.thinking]\ntemperature = \"0.6\"", "temperature", "'0.6'"),
    ("[sampling.non_thinking]\ntop_p = 0", "top_p", "0"),
    ("[sampling.non_thinking]\ntop_p = 1.5", "top_p", "1.5"),
    ("[sampling.non_thinking]\ntop_p = nan", "top_p", "nan"),
    ("[sampling.non_thinking]\npresence_penalty = -1", "presence_penalty", "-1"),
    ("[sampling.non_thinking]\npresence_penalty = 2.5", "presence_penalty", "2.5"),
    ("[sampling.non_thinking]\npresence_penalty = inf", "presence_penalty", "inf"),
    ("max_tokens = 1000000000000000000", "max_tokens", "1000000000000000000"),
    ("max_tokens = 0", "max_tokens", "0"),
    ("thinking_budget = 1000000000000000000", "thinking_budget", "1000000000000000000"),
    ("context_limit = 1000000000000000000", "context_limit", "1000000000000000000"),
    ("context_limit = -4096", "context_limit", "-4096"),
    ("context_limit = 4096.0", "context_limit", "4096.0"),
    ('notes_dir = ""', "notes_dir", "''"),  # was the current folder
    ('notes_dir = "   "', "notes_dir", "'   '"),
    ('notes_dir = "."', "notes_dir", "'.'"),
    ('notes_dir = "Notes"', "notes_dir", "'Notes'"),  # relative: follows the current folder
    ('notes_dir = "~no_such_user_here_xyz/Notes"', "notes_dir", "no_such_user_here_xyz"),
    ('notes_dir = "/tmp/a\\u0000b"', "notes_dir", "\\x00"),
    ('model = ""', "model", "''"),
    ('model = "mlx-community/x\\nrm -rf"', "model", "\\n"),
    ("thinking = 1", "thinking", "1"),
    ('constrained_tool_calls = "no"', "constrained_tool_calls", "'no'"),
    ("sampling = 0.5", "sampling", "0.5"),
    ("max_tokens = [" + "1, " * 500 + "1]", "max_tokens", "..."),  # shown cut short
]


@pytest.mark.parametrize("line,key,shown", BAD_VALUES, ids=[b[0][:40] for b in BAD_VALUES])
def test_a_value_out_of_range_is_one_warning_and_the_default(tmp_path, line, key, shown):
    file = tmp_path / "settings.toml"
    file.write_text(line + "\n")
    settings, warnings = load_settings(file)
    assert settings == Settings()  # the only value given was refused
    assert len(warnings) == 1, warnings
    (warning,) = warnings
    assert warning.startswith(f"{file}: ") and f"{key} = " in warning and shown in warning
    assert ("using " in warning or "ignored" in warning) and "\n" not in warning
    assert len(warning) < len(str(file)) + 160


def test_the_edges_of_each_range_are_accepted(tmp_path):
    file = tmp_path / "settings.toml"
    file.write_text('notes_dir = "~/My Notes"\nmax_tokens = 131072\ncontext_limit = 1\n'
                    "[sampling.thinking]\ntemperature = 2\ntop_p = 1\ntop_k = 0\nmin_p = 0\n"
                    "presence_penalty = 2\n[sampling.non_thinking]\ntemperature = 0.01\n"
                    "top_k = 151935\nmin_p = 0.99\npresence_penalty = 0\n")
    settings, warnings = load_settings(file)
    assert warnings == []
    assert settings.notes_dir == "~/My Notes" and settings.max_tokens == 131072
    assert settings.sampling_thinking == Sampling(2, 1, 0, 0, 2)
    assert settings.sampling_direct == Sampling(0.01, 0.8, 151935, 0.99, 0)


def test_several_bad_values_keep_the_good_ones(tmp_path):
    file = tmp_path / "settings.toml"
    file.write_text('notes_dir = ""\nmax_tokens = 512\n'
                    "[sampling.thinking]\ntop_k = 1000000000000000000\nmin_p = 5.0\n"
                    "temperature = nan\ntop_p = 0.9\n")
    settings, warnings = load_settings(file)
    assert len(warnings) == 4 and settings.max_tokens == 512
    assert settings.notes_dir == Settings().notes_dir
    assert settings.sampling_thinking == Sampling(0.6, 0.9, 20)


@pytest.mark.parametrize("text,needle", ids=["deep", "digits"], argvalues=[
    ("a = " + "[" * 50_000 + "]" * 50_000, "nested too deeply"),
    ("max_tokens = 1" + "0" * 5000, "too many digits"),
])
def test_a_file_python_cannot_hold_is_one_line(tmp_path, text, needle):
    file = tmp_path / "settings.toml"
    file.write_text(text + "\n")
    settings, warnings = load_settings(file)
    assert settings == Settings() and len(warnings) == 1
    assert warnings[0].startswith(str(file)) and needle in warnings[0]


def test_the_command_warns_once_and_still_answers(fixture_model, app_home):
    from test_cli import run

    (app_home / "config").mkdir(parents=True)
    (app_home / "config" / "settings.toml").write_text(
        "[sampling.thinking]\ntop_k = 1000000000000000000\n")
    result = run("ask", "--model", str(fixture_model), "--max-tokens", "4", "--json", "hi")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stats"]["generated_tokens"] == 4
    lines = result.stderr.decode().splitlines()
    about = [line for line in lines if "settings.toml" in line]
    assert about == [f"assistant: warning: {app_home / 'config' / 'settings.toml'}: "
                     "sampling.thinking.top_k = 1000000000000000000 is not a whole number in "
                     "[0, 151936); using 20"], lines
    assert "Traceback" not in result.stderr.decode()
