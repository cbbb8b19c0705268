"""Keras model builder, model bundles on disk, and prediction on raw text."""

from __future__ import annotations

from models.params import CELLS, INITIALIZERS, OPTIMIZERS, POOLINGS, REGULARIZERS, ModelParams

__all__ = ["CELLS", "INITIALIZERS", "OPTIMIZERS", "POOLINGS", "REGULARIZERS", "ModelParams"]
