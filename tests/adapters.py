"""Adapters for the fixture model, made the way mlx-lm's trainer saves them: the model
frozen, LoRA layers on its last blocks, their trainable weights in adapters.safetensors
and the trainer's arguments in adapter_config.json."""

from __future__ import annotations

import json
from pathlib import Path


def make_adapter(model_dir: Path, out: Path, *, rank: int = 4, layers: int = 2,
                 scale: float = 20.0, seed: int = 0) -> Path:
    """An untrained adapter with random (not zero) B matrices, so it changes the output."""
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, _ = load(str(model_dir))
    model.freeze()
    params = {"rank": rank, "scale": scale, "dropout": 0.0}
    linear_to_lora_layers(model, layers, params)
    mx.random.seed(seed)
    model.update(tree_map(lambda w: mx.random.normal(w.shape) * 0.5,
                          model.trainable_parameters()))
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "adapters.safetensors"),
                        dict(tree_flatten(model.trainable_parameters())))
    (out / "adapter_config.json").write_text(json.dumps({
        "fine_tune_type": "lora", "num_layers": layers, "lora_parameters": params,
        "model": str(model_dir)}))
    return out
