"""LoRA and DoRA adapters on top of the base model (mlx-lm's own format).

An adapter folder holds ``adapter_config.json`` (the trainer's arguments: the kind of
fine-tune, how many layers, rank and scale) and ``adapters.safetensors``; ``assistant
tune run`` adds ``card.json`` (the base model, the data, the losses). mlx-lm applies it
while loading (``load(..., adapter_path=...)``) and checks each tensor against the model;
this module reads the folder first, so every way it can be wrong is one line saying
which file and what to do, and so an adapter trained on another base model is refused
by name rather than by a tensor shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import ModelError

CONFIG, WEIGHTS, CARD = "adapter_config.json", "adapters.safetensors", "card.json"
KINDS = ("lora", "dora")


@dataclass(frozen=True)
class AdapterInfo:
    path: Path
    kind: str  # lora or dora
    rank: int | None
    layers: int | None
    card: dict  # what `assistant tune run` wrote, or {}

    @property
    def name(self) -> str:
        return self.path.name


def read_adapter(folder: Path | str) -> AdapterInfo:
    """What the adapter in ``folder`` is; ``ModelError`` with one line if it is not one."""
    path = Path(folder).expanduser()
    hint = f"an adapter folder holds {CONFIG} and {WEIGHTS} (assistant tune run writes one)"
    if not path.is_dir():
        raise ModelError(f"no adapter folder at {path}: {hint}")
    for name in (CONFIG, WEIGHTS):
        if not (path / name).is_file():
            raise ModelError(f"{path} has no {name}: {hint}")
    config = _json(path / CONFIG)
    kind = config.get("fine_tune_type", "lora")
    if kind not in KINDS:
        raise ModelError(f"{path / CONFIG}: fine_tune_type {kind!r} is not an adapter "
                         f"(only {' and '.join(KINDS)} are)")
    lora = config.get("lora_parameters")
    if not isinstance(lora, dict) or not isinstance(lora.get("rank"), int) \
            or not isinstance(lora.get("scale"), (int, float)):
        raise ModelError(f"{path / CONFIG}: lora_parameters needs a whole rank and a scale")
    layers = config.get("num_layers")
    if not isinstance(layers, int) or layers == 0 or layers < -1:
        raise ModelError(f"{path / CONFIG}: num_layers must be a positive whole number "
                         "(or -1 for all)")
    card = _json(path / CARD) if (path / CARD).is_file() else {}
    return AdapterInfo(path, kind, lora["rank"], layers, card)


def check_base(info: AdapterInfo, model_path: Path, config_sha256: str) -> None:
    """Refuse an adapter whose card names another base model."""
    trained_on = info.card.get("base_config_sha256")
    if trained_on and trained_on != config_sha256:
        base = info.card.get("base_model", "another model")
        raise ModelError(f"the adapter {info.path} was trained on {base}, not on "
                         f"{model_path}: use it with that model, or train one for this")


def describe_load_error(info: AdapterInfo, exc: Exception) -> str:
    """mlx-lm's complaint about an adapter as one line."""
    text = str(exc).strip().splitlines()
    detail = next((line.strip() for line in text[1:] if line.strip()), text[0] if text else "")
    if "incompatible" in str(exc) or "does not match" in str(exc):
        return (f"the adapter {info.path} does not fit this model ({detail}); it was trained "
                "on another base model or with other layers")
    return f"cannot load the adapter {info.path}: {detail or type(exc).__name__}"


def _json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read {file}: {exc}") from None
    except ValueError as exc:
        raise ModelError(f"{file} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{file} is not a JSON object")
    return data
