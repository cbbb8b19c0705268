"""Bucketed batches change nothing the model computes (post-padding + mask), and fit/predict run on them."""

from __future__ import annotations

import numpy as np
import pytest

from data_pipeline.batching import bucket_boundaries, sequence_lengths, width_for
from models import training
from models.builder import build_model
from models.params import ModelParams
from tests.data_pipeline.test_batching import right_padded


@pytest.mark.parametrize("cell,bidirectional,pooling", [("GRU", True, "last"), ("LSTM", False, "last"),
                                                        ("SimpleRNN", True, "last"), ("GRU", True, "max"),
                                                        ("LSTM", True, "mean")])
def test_output_on_a_batch_is_identical_with_and_without_the_cut(cell: str, bidirectional: bool,
                                                                  pooling: str) -> None:
    import keras

    keras.utils.set_random_seed(0)
    params = ModelParams(cell=cell, bidirectional=bidirectional, depth=2, embedding_dim=8, units=6,
                         max_features=60, sequence_length=40, batch_size=4, pooling=pooling)
    model = build_model(params, 2, mask_zero=True)
    x = right_padded([3, 17, 9, 12], 40)
    padded = np.asarray(model(x, training=False))
    cut = np.asarray(model(x[:, :17], training=False))
    np.testing.assert_allclose(cut, padded, rtol=1e-5, atol=1e-6)


def test_bucketed_predict_returns_rows_in_their_original_order() -> None:
    import keras

    keras.utils.set_random_seed(1)
    model = build_model(ModelParams(cell="GRU", embedding_dim=8, units=4, max_features=60, sequence_length=50),
                        3, mask_zero=True)
    rng = np.random.default_rng(5)
    x = right_padded(rng.integers(1, 50, size=70).tolist(), 50)
    plain = training.predict(model, x, bucketing=False, batch_size=16)
    bucketed = training.predict(model, x, bucketing=True, batch_size=16)
    assert bucketed.shape == (70, 3)
    np.testing.assert_allclose(bucketed, plain, rtol=1e-5, atol=1e-6)


def test_fit_on_bucketed_batches_learns_and_reports_validation() -> None:
    import keras

    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(6)
    lengths = rng.integers(2, 30, size=256)
    x = right_padded(lengths.tolist(), 30)
    y = (x == 7).any(axis=1).astype("int32")  # learnable: does token 7 occur?
    model = build_model(ModelParams(cell="GRU", embedding_dim=8, units=8, max_features=60, sequence_length=30,
                                    learning_rate=0.02), 2, mask_zero=True)
    history = training.fit(model, x[:200], y[:200], validation=(x[200:], y[200:]), batch_size=16, epochs=6,
                           callbacks=[], bucketing=True, seed=0)
    assert len(history.history["val_accuracy"]) == 6
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert training.can_bucket("post", True) and not training.can_bucket("pre", True)
    assert not training.can_bucket("post", False)


def test_validation_whose_shortest_rows_fill_two_batches_still_runs() -> None:
    """IMDB regression: 5,000 validation rows in batches of 256, length order, the two shortest
    batches of one width: Keras fixed that width from them and failed on the next one."""
    import keras

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(7)
    lengths = np.concatenate([rng.integers(2, 7, size=600), rng.integers(20, 41, size=150)])
    x = right_padded(rng.permutation(lengths).tolist(), 40)
    y = (x == 7).any(axis=1).astype("int32")
    val_x, val_y = x[100:], y[100:]
    boundaries = bucket_boundaries(sequence_lengths(x[:100]), 40)
    shortest = np.sort(sequence_lengths(val_x))[:512]
    assert width_for(int(shortest.max()), boundaries) == boundaries[0] < boundaries[-1]
    model = build_model(ModelParams(cell="GRU", embedding_dim=4, units=4, max_features=60, sequence_length=40),
                        2, mask_zero=True)
    history = training.fit(model, x[:100], y[:100], validation=(val_x, val_y), batch_size=16, epochs=1,
                           callbacks=[], bucketing=True)
    assert len(history.history["val_accuracy"]) == 1
    np.testing.assert_allclose(training.predict(model, val_x, bucketing=True, batch_size=256),
                               training.predict(model, val_x, bucketing=False), rtol=1e-5, atol=1e-6)
