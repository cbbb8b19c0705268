from __future__ import annotations

import itertools
from pathlib import Path

import keras
import numpy as np
import pytest

from data_pipeline import Vectorizer
from models.builder import build_model
from models.bundle import MODEL_FILE, TextClassifier, write_sidecar
from models.errors import BundleError
from models.params import CELLS, OPTIMIZERS, REGULARIZERS, ModelParams

INITS = ("random_normal", "glorot_uniform", "he_normal", "orthogonal")
RNN_TYPES = {"SimpleRNN": keras.layers.SimpleRNN, "GRU": keras.layers.GRU, "LSTM": keras.layers.LSTM}


def small(**kw: object) -> ModelParams:
    base = dict(embedding_dim=4, units=3, max_features=50, sequence_length=10, depth=2, dropout=0.1,
                regularizer_strength=1e-3)
    base.update(kw)
    return ModelParams(**base)  # type: ignore[arg-type]


def rnn_layers(model: keras.Model) -> list[keras.layers.Layer]:
    out = []
    for layer in model.layers:
        inner = layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer
        if isinstance(inner, tuple(RNN_TYPES.values())):
            out.append((layer, inner))
    return out


@pytest.mark.parametrize("cell", CELLS)
def test_every_combination_builds_as_configured(cell: str) -> None:
    keras.backend.clear_session()  # per cell only: it costs 0.3 s, a build 0.1 s
    for bidir, reg, init, opt in itertools.product((False, True), REGULARIZERS, INITS, OPTIMIZERS):
        params = small(cell=cell, bidirectional=bidir, regularizer=reg, initializer=init, optimizer=opt)
        model = build_model(params, n_classes=2)
        layers = rnn_layers(model)
        assert len(layers) == 2
        for outer, inner in layers:
            assert isinstance(outer, keras.layers.Bidirectional) == bidir
            assert type(inner) is RNN_TYPES[cell]
            assert inner.units == 3
            cfg = keras.initializers.serialize(inner.cell.kernel_initializer)
            assert cfg["class_name"].lower().replace("_", "") == init.replace("_", ""), cfg
            regularizer = inner.cell.kernel_regularizer
            if reg == "none":
                assert regularizer is None
            else:
                expected = {"l1": keras.regularizers.L1, "l2": keras.regularizers.L2, "l1l2": keras.regularizers.L1L2}
                assert isinstance(regularizer, expected[reg])
        assert layers[0][1].return_sequences and not layers[1][1].return_sequences
        assert type(model.optimizer).__name__.lower() == opt
        assert model.output_shape == (None, 1)


def test_multiclass_head_and_one_layer() -> None:
    model = build_model(small(depth=1, dropout=0.0), n_classes=46)
    assert model.output_shape == (None, 46)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)


def test_optimizer_reaches_the_model() -> None:
    """The notebooks' grid never passed the optimizer on: here Adam and RMSprop must differ."""
    x = np.random.default_rng(0).integers(1, 50, size=(16, 10)).astype("int32")
    y = np.arange(16) % 2
    weights = {}
    for opt in OPTIMIZERS:
        keras.utils.set_random_seed(1)
        model = build_model(small(optimizer=opt, learning_rate=0.01), n_classes=2)
        before = [w.copy() for w in model.get_weights()]
        model.train_on_batch(x, y)
        weights[opt] = model.get_weights()
        assert any(not np.allclose(a, b) for a, b in zip(before, weights[opt], strict=True))
    keras.utils.set_random_seed(1)
    again = build_model(small(optimizer="adam", learning_rate=0.01), n_classes=2)
    again.train_on_batch(x, y)
    # Same seed and optimizer reproduce the step, so the difference below is the optimizer's.
    assert all(np.allclose(a, b) for a, b in zip(again.get_weights(), weights["adam"], strict=True))
    differs = [not np.allclose(a, b) for a, b in zip(weights["adam"], weights["rmsprop"], strict=True)]
    assert any(differs)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("mask_zero", [False, True])
def test_h5_round_trip_predicts_identically(tmp_path: Path, cell: str, bidirectional: bool, mask_zero: bool) -> None:
    keras.utils.set_random_seed(3)
    params = small(cell=cell, bidirectional=bidirectional, regularizer="l1l2", optimizer="rmsprop")
    model = build_model(params, n_classes=2, mask_zero=mask_zero)
    x = np.random.default_rng(1).integers(1, 50, size=(8, 10)).astype("int32")
    x[:4, :6] = 0  # padded rows exercise the mask
    model.save(tmp_path / MODEL_FILE)
    loaded = keras.models.load_model(tmp_path / MODEL_FILE)
    # Eager calls: same numbers as predict() without tracing a function per model.
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(expected, keras.ops.convert_to_numpy(loaded(x, training=False)), rtol=1e-6, atol=1e-6)
    assert np.unique(expected.round(6)).size > 1  # a real, input-dependent output
    assert type(loaded.optimizer).__name__ == "RMSprop"
    assert loaded.layers[0].mask_zero == mask_zero


def test_bundle_classifies_raw_text(tmp_path: Path) -> None:
    vec = Vectorizer(["", "[UNK]", "good", "bad", "movie"], sequence_length=6)
    model = build_model(small(max_features=5, sequence_length=6, depth=1), n_classes=2)
    model.save(tmp_path / MODEL_FILE)
    write_sidecar(tmp_path, vectorizer=vec, labels=["neg", "pos"], params=small().to_dict())
    clf = TextClassifier.load(tmp_path)
    texts = ["Good movie!", "bad, BAD movie"]
    preds = clf.predict(texts)
    direct = model.predict(vec.encode(texts), verbose=0)[:, 0]
    for pred, p in zip(preds, direct, strict=True):
        assert pred.label == ("pos" if p >= 0.5 else "neg")
        assert pred.probability == pytest.approx(max(p, 1 - p), abs=1e-6)
    (tmp_path / "sidecar.json").unlink()
    with pytest.raises(BundleError, match="sidecar.json: not found"):
        TextClassifier.load(tmp_path)


def test_invalid_params_are_rejected() -> None:
    with pytest.raises(ValueError, match="cell='CNN'"):
        ModelParams(cell="CNN")
    with pytest.raises(ValueError, match="unknown model parameter"):
        ModelParams.from_dict({"colour": 1})


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_pooled_models_round_trip_through_h5_and_ignore_padding(tmp_path: Path, pooling: str) -> None:
    keras.utils.set_random_seed(4)
    model = build_model(small(pooling=pooling, depth=2, bidirectional=True), n_classes=3, mask_zero=True)
    x = np.zeros((4, 12), dtype="int32")
    x[0, :5], x[1, :12], x[2, :1] = 7, 9, 3  # row 3 is an empty text: all padding
    model.save(tmp_path / MODEL_FILE)
    loaded = keras.models.load_model(tmp_path / MODEL_FILE)  # the layers register on import
    out = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), out, atol=1e-6)
    assert np.isfinite(out).all()
    # Padding takes no part: the same rows cut to 5 columns give the same numbers (row 1 cut).
    np.testing.assert_allclose(np.asarray(model(x[[0, 2, 3], :5], training=False)), out[[0, 2, 3]], atol=1e-6)
    with pytest.raises(ValueError, match="pooling='sum'"):
        small(pooling="sum")
