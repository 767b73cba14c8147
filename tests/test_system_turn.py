"""The system turn's KV cache kept on disk between runs (engine/system_turn.py): the real
engine on the fixture model, real files. A later run starts from the saved turn and
computes the same next-token logits as a run that prefills everything; a damaged,
foreign or unwritable file costs a prefill, never an answer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from assistant.engine import ChatCache, Engine, GenerationOptions
from assistant.engine.events import Failed, Finished, PromptReady
from assistant.engine.system_turn import KEEP, MIN_TOKENS

ASSISTANT = str(Path(sys.executable).with_name("assistant"))
LONG = " ".join(f"Rule {n}: answer briefly and kindly." for n in range(60))  # ~500 tokens


class FirstLogits:
    """Keeps the logits of the first generated token; changes nothing."""

    def __init__(self):
        self.logits = None

    def __call__(self, tokens, logits):
        if self.logits is None:
            self.logits = np.array(logits.astype(mx.float32))
        return logits


def messages(system: str = LONG, question: str = "Hello") -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def run(engine: Engine, history: list[dict], chat: ChatCache | None = None):
    """One 4-token turn from a fresh chat: (tokens found in the cache or the saved turn
    when the prompt was ready, first-token logits, finish reason)."""
    probe = FirstLogits()
    options = GenerationOptions(thinking=False, max_tokens=4, seed=7,
                                logits_processors=[probe])
    cached, finished = None, None
    for event in engine.generate(history, options, chat if chat is not None else ChatCache()):
        if isinstance(event, PromptReady):
            cached = event.cached_tokens
        elif isinstance(event, Failed):
            raise AssertionError(event.error)
        elif isinstance(event, Finished):
            finished = event.reason
    return cached, probe.logits, finished


def turn_length(engine: Engine, history: list[dict]) -> int:
    prompt = engine.prompts.encode(history, enable_thinking=False)
    return prompt.index(engine.prompts.special_ids["<|im_start|>"], 1)


@pytest.fixture
def stored(fixture_model, tmp_path):
    """An engine that keeps system turns in ``tmp_path / "turns"``."""
    with Engine(fixture_model, system_turns=tmp_path / "turns") as engine:
        engine.wait_loaded()
        yield engine


def files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors")) if folder.exists() else []


def test_a_later_run_starts_from_the_saved_turn_with_the_same_logits(engine, stored, tmp_path):
    length = turn_length(engine, messages())
    assert length >= MIN_TOKENS
    _, reference, _ = run(engine, messages())  # no store: the whole prompt prefilled

    cached, first, _ = run(stored, messages())  # nothing saved yet: prefilled, then saved
    assert cached == 0
    [saved] = files(tmp_path / "turns")
    positions = {a.shape[2] for a in mx.load(str(saved)).values() if a.ndim == 4}
    assert positions == {length}  # what the turn holds, not the cache's whole buffer
    np.testing.assert_allclose(first, reference, rtol=1e-4, atol=1e-4)

    # The store reads the file on every fresh chat, as a new process would.
    cached, second, _ = run(stored, messages(question="Hello"))
    assert cached == length
    np.testing.assert_array_equal(second, first)
    cached, _, reason = run(stored, messages(question="What is 2+2?"))
    assert cached == length and reason == "length"


def test_a_short_system_turn_is_not_saved(stored, tmp_path):
    cached, _, _ = run(stored, messages(system="Be brief."))
    assert cached == 0
    assert files(tmp_path / "turns") == []


def test_a_damaged_file_is_deleted_and_the_turn_prefilled(engine, stored, tmp_path):
    _, reference, _ = run(engine, messages())
    for damage in (lambda data: data[:len(data) // 2], lambda data: b"\x00\xff" * 999,
                   lambda data: b""):
        run(stored, messages())
        [saved] = files(tmp_path / "turns")
        saved.write_bytes(damage(saved.read_bytes()))
        cached, logits, reason = run(stored, messages())
        assert reason == "length" and cached == 0  # not used: computed again
        np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
        [again] = files(tmp_path / "turns")  # saved again, whole
        assert again.name == saved.name and again.stat().st_size > 1000


def test_a_file_holding_another_turn_is_never_used(engine, stored, tmp_path):
    """A file put under another turn's name (as a copy or a hash collision would) is
    refused by the ids it holds, not trusted for its name."""
    other = messages(system=LONG.replace("kindly", "firmly"))
    run(stored, messages())
    run(stored, other)
    first, second = files(tmp_path / "turns")
    first.write_bytes(second.read_bytes())
    _, reference, _ = run(engine, messages())
    _, reference_other, _ = run(engine, other)
    _, a, _ = run(stored, messages())
    _, b, _ = run(stored, other)
    np.testing.assert_allclose(a, reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b, reference_other, rtol=1e-4, atol=1e-4)


def test_another_model_does_not_use_the_file(stored, fixture_model, tmp_path):
    """The model's identity (its path and config) is part of the key and is checked."""
    run(stored, messages())
    other = tmp_path / "other-model"  # the same weights under another config
    shutil.copytree(fixture_model, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "note": "a fine-tune"}))
    with Engine(other, system_turns=tmp_path / "turns") as engine:
        run(engine, messages())
    assert len(files(tmp_path / "turns")) == 2


def test_only_the_newest_turns_are_kept(stored, tmp_path):
    variants = [messages(system=LONG.replace("Rule", f"Rule{n}")) for n in range(KEEP + 1)]
    for history in variants:
        run(stored, history)
    run(stored, variants[0])  # loading the oldest makes it the newest again
    kept = files(tmp_path / "turns")
    assert len(kept) == KEEP
    run(stored, variants[1])  # was dropped (the oldest then): prefilled and saved again
    assert len(files(tmp_path / "turns")) == KEEP
    leftovers = [p for p in (tmp_path / "turns").iterdir() if p.name.endswith(".tmp.safetensors")]
    assert leftovers == []


def test_an_unwritable_folder_costs_only_the_saving(fixture_model, tmp_path, engine):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    with Engine(fixture_model, system_turns=blocked / "turns") as unwritable:
        unwritable.wait_loaded()
        cached, logits, reason = run(unwritable, messages())
    _, reference, _ = run(engine, messages())
    assert reason == "length" and cached == 0
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)


def test_idle_prefill_of_a_new_chat_starts_from_the_saved_turn(stored, tmp_path):
    run(stored, messages())
    chat = ChatCache()
    history = messages()[:1]
    handle = stored.prefill(history, GenerationOptions(thinking=False), chat)
    assert handle.wait(60) and handle.outcome == "done"
    assert handle.cached == turn_length(stored, messages())  # from the file, not computed
    assert 0 < handle.prefilled < 8  # only "<|im_start|>user\n" was computed
    cached, _, _ = run(stored, messages(), chat)
    assert cached == handle.cached + handle.prefilled


def test_ask_twice_reuses_the_saved_turn(app_home, fixture_model, tmp_path):
    """The real command: a second `ask` with the built-in servers starts from the turn
    the first one saved (``stats.cached_tokens``), and says the same."""
    app_home.joinpath("config").mkdir(parents=True, exist_ok=True)
    app_home.joinpath("config", "settings.toml").write_text(
        f'notes_dir = "{tmp_path / "notes"}"\n')
    command = [ASSISTANT, "ask", "--model", str(fixture_model), "--max-tokens", "6",
               "--seed", "3", "--json", "Hello"]
    first, second = (subprocess.run(command, capture_output=True, text=True, timeout=300)
                     for _ in range(2))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["stats"]["cached_tokens"] == 0  # the turn computed, then saved
    assert b["stats"]["cached_tokens"] >= MIN_TOKENS  # the turn read from the file
    assert b["answer"] == a["answer"]
    assert len(files(app_home / "cache" / "system-turns")) == 1
