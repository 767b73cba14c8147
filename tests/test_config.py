"""Paths and the settings file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from assistant.config import DEFAULT_MODEL, SETTINGS_TEMPLATE, Settings, load_settings, paths


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
                    "[sampling.non_thinking]\ntemperature = 0.5\npresence_penalty = 1.5\n")
    settings, warnings = load_settings(file)
    assert warnings == []
    assert (settings.model, settings.thinking, settings.thinking_budget) == ("/models/q", False, 64)
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
