"""Fine-tuning on the user's own data: the training set, the trainer, the evaluation.

Everything stays on this machine, under the data directory's ``tune/`` folder.
"""

from __future__ import annotations

from pathlib import Path


def tune_dir() -> Path:
    from assistant.config import paths

    return paths().data_dir / "tune"


def data_dir() -> Path:
    """Where ``tune data`` writes the training set and the others read it."""
    return tune_dir() / "data"


def adapters_dir() -> Path:
    """Where ``tune run`` keeps one folder per adapter."""
    return tune_dir() / "adapters"
