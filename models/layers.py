"""Mask-aware pooling over time (the ``pooling`` parameter), serializable for ``.h5``.

Keras' ``GlobalMaxPooling1D`` ignores the mask (padding would take part in the max, and a
batch cut to its longest text would give other numbers than the padded one), and
``GlobalAveragePooling1D`` divides by zero for a text with no tokens. These two honour the
mask and return zeros for an empty row. Importing this module registers them, which loading
a ``best.h5`` with ``pooling`` max or mean needs (``models.bundle`` does it).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def _steps_mask(inputs: Any, mask: Any) -> Any:
    if mask is None:
        return ops.ones(ops.shape(inputs)[:2], dtype=inputs.dtype)
    return ops.cast(mask, inputs.dtype)


class _MaskedTimePooling(keras.layers.Layer):
    """(batch, steps, features) -> (batch, features) over the unmasked steps; passes no mask on."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="rnn_search")
class MaskedGlobalMaxPooling1D(_MaskedTimePooling):
    def call(self, inputs: Any, mask: Any = None) -> Any:
        weights = ops.expand_dims(_steps_mask(inputs, mask), -1)
        lowest = ops.min(inputs) - 1.0
        pooled = ops.max(ops.where(weights > 0, inputs, lowest), axis=1)
        has_tokens = ops.max(weights, axis=1) > 0
        return ops.where(has_tokens, pooled, ops.zeros_like(pooled))


@keras.saving.register_keras_serializable(package="rnn_search")
class MaskedGlobalAveragePooling1D(_MaskedTimePooling):
    def call(self, inputs: Any, mask: Any = None) -> Any:
        weights = ops.expand_dims(_steps_mask(inputs, mask), -1)
        total = ops.sum(inputs * weights, axis=1)
        return total / ops.maximum(ops.sum(weights, axis=1), 1.0)
