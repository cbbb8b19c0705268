"""File names of a model bundle and of an ensemble on disk (no Keras import: the config reads a
bundle's sidecar before Keras is loaded)."""

from __future__ import annotations

MODEL_FILE = "best.h5"
SIDECAR_FILE = "sidecar.json"
ENSEMBLE_FILE = "ensemble.json"


def member_dir(index: int) -> str:
    return f"member-{index}"
