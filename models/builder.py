"""Builds compiled Keras 3 recurrent text classifiers from :class:`ModelParams`.

The model is a ``keras.Sequential`` with an explicit integer ``Input``: unlike functional
models, Sequential models with ``mask_zero=True`` reload from legacy ``.h5`` files (the
functional graph stores a ``NotEqual`` op that ``.h5`` cannot deserialize).
"""

from __future__ import annotations

from typing import Any

import keras

from models.layers import MaskedGlobalAveragePooling1D, MaskedGlobalMaxPooling1D
from models.params import ModelParams

_RNN_LAYERS = {"SimpleRNN": keras.layers.SimpleRNN, "GRU": keras.layers.GRU, "LSTM": keras.layers.LSTM}


def make_regularizer(kind: str, strength: float) -> keras.regularizers.Regularizer | None:
    if kind == "none" or strength == 0:
        return None
    if kind == "l1":
        return keras.regularizers.L1(strength)
    if kind == "l2":
        return keras.regularizers.L2(strength)
    if kind == "l1l2":
        return keras.regularizers.L1L2(l1=strength, l2=strength)
    raise ValueError(f"unknown regularizer {kind!r}")


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    raise ValueError(f"unknown optimizer {name!r}")


def build_model(
    params: ModelParams | dict[str, Any],
    n_classes: int,
    *,
    mask_zero: bool = False,
) -> keras.Model:
    """Embedding → ``depth`` × [optionally bidirectional] RNN (+ dropout) → Dense head.

    Two classes get one sigmoid unit and binary cross-entropy; k > 2 classes get a k-way
    softmax and sparse categorical cross-entropy. Loss objects (not shorthand strings) keep
    the compiled model loadable from ``.h5``.
    """
    if isinstance(params, dict):
        params = ModelParams.from_dict(params)
    if n_classes < 2:
        raise ValueError("n_classes must be >= 2")
    rnn_class = _RNN_LAYERS[params.cell]
    layers: list[Any] = [
        # Variable length: batches are cut to their longest sequence (models/training.py);
        # sequence_length caps what the vectorizer emits.
        keras.Input(shape=(None,), dtype="int32", name="tokens"),
        keras.layers.Embedding(params.max_features, params.embedding_dim, mask_zero=mask_zero),
    ]
    pooled = params.pooling != "last"
    for i in range(params.depth):
        rnn = rnn_class(
            params.units,
            return_sequences=pooled or i < params.depth - 1,
            kernel_initializer=keras.initializers.get(params.initializer),
            kernel_regularizer=make_regularizer(params.regularizer, params.regularizer_strength),
        )
        layers.append(keras.layers.Bidirectional(rnn) if params.bidirectional else rnn)
        if params.dropout > 0:
            layers.append(keras.layers.Dropout(params.dropout))
    if params.pooling == "max":
        layers.append(MaskedGlobalMaxPooling1D())
    elif params.pooling == "mean":
        layers.append(MaskedGlobalAveragePooling1D())
    if n_classes == 2:
        # float32 output keeps the loss stable under a mixed-precision policy.
        layers.append(keras.layers.Dense(1, activation="sigmoid", dtype="float32"))
        loss: keras.losses.Loss = keras.losses.BinaryCrossentropy()
    else:
        layers.append(keras.layers.Dense(n_classes, activation="softmax", dtype="float32"))
        loss = keras.losses.SparseCategoricalCrossentropy()
    model = keras.Sequential(layers, name=f"{params.cell.lower()}_classifier")
    model.compile(
        optimizer=make_optimizer(params.optimizer, params.learning_rate),
        loss=loss,
        metrics=["accuracy"],
    )
    return model
