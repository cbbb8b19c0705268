"""The Keras side of a trial: fit and predict on length-bucketed batches (backend-neutral).

``data_pipeline.batching`` plans the batches in NumPy; here they become a
``keras.utils.PyDataset`` that ``model.fit``/``predict`` consume on any backend. Bucketing
needs right-padded sequences and a masking model (``mask_zero=True``): then cutting a batch
to its longest sequence changes nothing the model computes. Otherwise the padded arrays are
fed as they are.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from data_pipeline.batching import BatchPlan, bucket_boundaries, sequence_lengths, trim_padding


class BucketedBatches(keras.utils.PyDataset):
    """Batches of one array pair, each cut to its bucket width; reshuffled every epoch."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None, batch_size: int, boundaries: list[int], *,
                 shuffle: bool, seed: int = 0):
        super().__init__()
        self.x, self.y = x, y
        self.plan = BatchPlan(sequence_lengths(x), batch_size, boundaries)
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)
        self.batches = self.plan.shuffled(self.rng) if shuffle else self.plan.ordered()

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> Any:
        batch = self.batches[index]
        x = self.x[batch.indices, :batch.width]
        return x if self.y is None else (x, self.y[batch.indices])

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.batches = self.plan.shuffled(self.rng)

    @property
    def order(self) -> np.ndarray:
        """Row of the source array for each output row (predictions come back in this order)."""
        return np.concatenate([b.indices for b in self.batches])


def can_bucket(padding: str, mask_zero: bool) -> bool:
    """Cutting padding is exact only for right-padded sequences under a mask."""
    return padding == "post" and mask_zero


def fit(model: keras.Model, x: np.ndarray, y: np.ndarray, *, validation: tuple[np.ndarray, np.ndarray],
        batch_size: int, epochs: int, callbacks: list[Any], bucketing: bool, seed: int = 0,
        verbose: int = 0) -> keras.callbacks.History:
    """``model.fit`` on bucketed batches (training shuffled per epoch, validation in length order)."""
    if not bucketing:
        return model.fit(x, y, validation_data=validation, epochs=epochs, batch_size=batch_size,
                         callbacks=callbacks, verbose=verbose)
    boundaries = bucket_boundaries(sequence_lengths(x), x.shape[1])
    train = BucketedBatches(x, y, batch_size, boundaries, shuffle=True, seed=seed)
    x_val, y_val = validation
    val = BucketedBatches(x_val, y_val, max(batch_size, 256), boundaries, shuffle=False)
    return model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=verbose)


def latency_ms(model: keras.Model, x: np.ndarray, batch_sizes: tuple[int, ...] = (1, 256),
               repeats: int = 7) -> dict[int, float]:
    """Median milliseconds per example at each batch size (after one warm-up call).

    ``predict_on_batch`` runs the compiled predict step (an eager call would run the RNN loop
    step by step in Python), without ``predict``'s per-call data-adapter set-up, which would
    dominate a batch of 1.
    """
    import time

    out: dict[int, float] = {}
    for size in batch_sizes:
        batch = trim_padding(x[np.arange(size) % len(x)])
        model.predict_on_batch(batch)
        times = []
        for _ in range(repeats if size == 1 else max(2, repeats // 3)):
            started = time.perf_counter()
            np.asarray(model.predict_on_batch(batch))
            times.append(time.perf_counter() - started)
        out[size] = float(np.median(times)) * 1000.0 / size
    return out


def predict(model: keras.Model, x: np.ndarray, *, bucketing: bool, batch_size: int = 256,
            boundaries: list[int] | None = None) -> np.ndarray:
    """``model.predict`` in length order on cut batches, returned in the rows' original order."""
    if len(x) == 0 or not bucketing:
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    if len(x) <= batch_size:
        # One batch (a served request): the compiled step directly, cut to the longest text;
        # predict() would build a data adapter per call, tens of ms for a single text.
        return np.asarray(model.predict_on_batch(trim_padding(x)))
    batches = BucketedBatches(x, None, batch_size, boundaries or bucket_boundaries(sequence_lengths(x), x.shape[1]),
                              shuffle=False)
    out = np.asarray(model.predict(batches, verbose=0))
    result = np.empty_like(out)
    result[batches.order] = out
    return result
