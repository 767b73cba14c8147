"""LoRA adapters on the fixture model: loaded by ask, summarize and the chat app, named
where the model is named, measured by bench, and refused in one line when wrong."""

from __future__ import annotations

import json
import shutil

import pytest
from adapters import make_adapter
from test_cli import one_line_error, run


@pytest.fixture(scope="module")
def adapter(fixture_model, tmp_path_factory):
    return make_adapter(fixture_model, tmp_path_factory.mktemp("adapters") / "tools-1")


def _answer(*args) -> dict:
    result = run("ask", *args, "--no-think", "--max-tokens", "8", "--seed", "3", "--json",
                 "Hello")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ask_with_an_adapter_names_it_and_answers_differently(fixture_model, adapter):
    base = _answer("--model", str(fixture_model))
    tuned = _answer("--model", str(fixture_model), "--adapter", str(adapter))
    assert base["adapter"] is None and tuned["adapter"] == "tools-1"
    assert tuned["answer"] != base["answer"]  # same seed: only the adapter differs
    # The same from the settings file.
    from assistant.config import paths

    paths().config_dir.mkdir(parents=True)
    paths().settings_file.write_text(f'adapter = "{adapter}"\n')
    assert _answer("--model", str(fixture_model))["answer"] == tuned["answer"]


def _broken(adapter, tmp_path, name: str):
    copy = tmp_path / name
    shutil.copytree(adapter, copy)
    return copy


def _config(folder, **changes):
    config = json.loads((folder / "adapter_config.json").read_text())
    config.update(changes)
    (folder / "adapter_config.json").write_text(json.dumps(config))


def test_each_bad_adapter_is_one_line(fixture_model, adapter, tmp_path):
    def refused(folder, *needles):
        return one_line_error(run("ask", "--model", str(fixture_model), "--adapter",
                                  str(folder), "Hi"), *needles)

    refused(tmp_path / "nowhere", "no adapter folder", "adapter_config.json")
    missing = _broken(adapter, tmp_path, "no-weights")
    (missing / "adapters.safetensors").unlink()
    refused(missing, "has no adapters.safetensors")
    garbled = _broken(adapter, tmp_path, "garbled")
    (garbled / "adapter_config.json").write_text("{not json")
    refused(garbled, "adapter_config.json is not valid JSON")
    full = _broken(adapter, tmp_path, "full")
    _config(full, fine_tune_type="full")
    refused(full, "'full' is not an adapter")
    wrong_rank = _broken(adapter, tmp_path, "wrong-rank")
    _config(wrong_rank, lora_parameters={"rank": 8, "scale": 20.0, "dropout": 0.0})
    refused(wrong_rank, "does not fit this model", "shape")
    torn = _broken(adapter, tmp_path, "torn")
    data = (torn / "adapters.safetensors").read_bytes()
    (torn / "adapters.safetensors").write_bytes(data[: len(data) // 2])
    refused(torn, "cannot load the adapter")
    other_base = _broken(adapter, tmp_path, "other-base")
    (other_base / "card.json").write_text(json.dumps(
        {"base_model": "Qwen/Qwen3-8B", "base_config_sha256": "0" * 64}))
    refused(other_base, "was trained on Qwen/Qwen3-8B")
    err = one_line_error(run("ask", "--model", "http://127.0.0.1:9/v1", "--adapter",
                             str(adapter), "Hi"), "local-only")
    assert "--adapter-path" in err


def test_wrong_keys_are_refused(fixture_model, adapter, tmp_path):
    import mlx.core as mx

    odd = _broken(adapter, tmp_path, "odd-keys")
    weights = mx.load(str(odd / "adapters.safetensors"))
    weights["model.layers.0.mlp.gate_proj.lora_z"] = mx.zeros((2, 2))
    mx.save_safetensors(str(odd / "adapters.safetensors"), weights)
    one_line_error(run("ask", "--model", str(fixture_model), "--adapter", str(odd), "Hi"),
                   "does not fit this model", "lora_z")


def test_summarize_with_an_adapter_keeps_its_own_cache(fixture_model, adapter, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# A\n\nSome words about a thing.\n")
    base = run("summarize", "--model", str(fixture_model), "--max-tokens", "8", str(notes))
    tuned = run("summarize", "--model", str(fixture_model), "--adapter", str(adapter),
                "--max-tokens", "8", "--format", "json", str(notes))
    assert base.returncode == 0 and tuned.returncode == 0, tuned.stderr
    # Not answered from the base model's cached summary: the adapter's output differs.
    assert json.loads(tuned.stdout)["notes"][0]["from_cache"] is False


def test_bench_measures_the_adapter_against_the_base(fixture_model, adapter):
    result = run("bench", "--model", str(fixture_model), "--adapter", str(adapter),
                 "--max-tokens", "8", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["adapter_rank"] == 4 and out["adapter_layers"] == 2
    assert out["base_decode_tps"] > 0 and out["adapter_decode_tps"] > 0
    low, high = out["adapter_decode_ratio_spread"]
    assert low <= out["adapter_decode_ratio"] <= high


@pytest.mark.asyncio
async def test_the_chat_app_loads_the_adapter(fixture_model, adapter):
    from dataclasses import replace

    from test_tui import running

    from assistant.config import Settings
    from assistant.tui.app import create_app

    app = create_app(replace(Settings(), adapter=str(adapter)), model=str(fixture_model),
                     no_tools=True)
    async with running(app):
        assert app.engine.adapter.name == "tools-1"
        assert app.status.model == f"{fixture_model.name} + tools-1"
