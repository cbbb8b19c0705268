"""Length-bucketed batches: compute on words, not padding (NumPy only, no Keras).

Sequences are right-padded with 0. A batch of similar lengths can be cut to the longest
sequence in it, and with masking on the model computes exactly the same thing (the mask
hides the padding either way) while reading far fewer positions: reviews average ~80 tokens
at ``sequence_length`` 200, sentences ~17 at 100.

Each distinct batch width costs a trace (TensorFlow) or a compile (JAX), so widths are
rounded up to a few *bucket boundaries* taken from the training lengths' quantiles, rounded
to multiples of 8. A training epoch: shuffle within each bucket, cut into batches, merge the
leftovers of all buckets into batches of their own, shuffle the batch order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_BUCKETS = 8
_ROUND = 8


def sequence_lengths(x: np.ndarray) -> np.ndarray:
    """Tokens per row of a right-padded (``padding="post"``) int array: the last non-zero + 1."""
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d array of token ids, got shape {x.shape}")
    nonzero = x != 0
    # Index of the last non-zero per row (0 for empty rows).
    last = x.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(axis=1), last, 0).astype(np.int64)


def trim_padding(x: np.ndarray) -> np.ndarray:
    """A right-padded batch cut to its longest sequence (at least one column)."""
    return x[:, :max(1, int(sequence_lengths(x).max()))]


def bucket_boundaries(lengths: np.ndarray, max_length: int, n_buckets: int = DEFAULT_BUCKETS) -> list[int]:
    """At most ``n_buckets`` widths covering ``lengths``: quantiles rounded up to multiples of 8."""
    if max_length < 1:
        raise ValueError("max_length must be >= 1")
    if len(lengths) == 0:
        return [max_length]
    quantiles = np.quantile(np.maximum(lengths, 1), np.linspace(0, 1, n_buckets + 1)[1:])
    # The last quantile is the longest sequence, so the largest boundary holds every row.
    return sorted({min(max_length, int(-(-q // _ROUND) * _ROUND)) for q in quantiles})


def width_for(length: int, boundaries: list[int]) -> int:
    """The smallest boundary that holds ``length`` (the largest one if none does)."""
    i = int(np.searchsorted(boundaries, max(length, 1)))
    return boundaries[min(i, len(boundaries) - 1)]


@dataclass(frozen=True)
class Batch:
    indices: np.ndarray  # rows of the full array
    width: int  # columns kept


class BatchPlan:
    """Batches of row indices with their widths, for one array of right-padded sequences."""

    def __init__(self, lengths: np.ndarray, batch_size: int, boundaries: list[int]):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.boundaries = sorted(boundaries)
        self._bucket_of = np.minimum(np.searchsorted(self.boundaries, np.maximum(self.lengths, 1)),
                                     len(self.boundaries) - 1)

    def ordered(self) -> list[Batch]:
        """Evaluation order: rows sorted by length (stable), batches cut in that order (the
        second batch swapped for one of another width, see ``lead_with_two_widths``)."""
        order = np.argsort(self.lengths, kind="stable")
        batches = [self._batch(order[i:i + self.batch_size]) for i in range(0, len(order), self.batch_size)]
        lead_with_two_widths(batches)
        return batches

    def shuffled(self, rng: np.random.Generator) -> list[Batch]:
        """Training order: random rows within each bucket, full batches per bucket, then the
        leftovers of all buckets together; batch order shuffled."""
        batches: list[Batch] = []
        leftovers: list[np.ndarray] = []
        for bucket in range(len(self.boundaries)):
            rows = np.flatnonzero(self._bucket_of == bucket)
            rng.shuffle(rows)
            full = len(rows) - len(rows) % self.batch_size
            batches += [self._batch(rows[i:i + self.batch_size]) for i in range(0, full, self.batch_size)]
            leftovers.append(rows[full:])
        rest = np.concatenate(leftovers) if leftovers else np.zeros(0, dtype=np.int64)
        rest = rest[np.argsort(self.lengths[rest], kind="stable")]
        batches += [self._batch(rest[i:i + self.batch_size]) for i in range(0, len(rest), self.batch_size)]
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
        lead_with_two_widths(batches)
        return batches

    def _batch(self, rows: np.ndarray) -> Batch:
        longest = int(self.lengths[rows].max()) if len(rows) else 1
        return Batch(np.sort(rows), width_for(longest, self.boundaries))


def lead_with_two_widths(batches: list[Batch]) -> None:
    """Put a batch of another width second, when there is one.

    Keras' TensorFlow data adapter infers the input spec from the first two batches; if they
    share a width it fixes that width and a later, different batch fails.
    """
    if len(batches) < 2 or batches[0].width != batches[1].width:
        return
    for i in range(2, len(batches)):
        if batches[i].width != batches[0].width:
            batches[1], batches[i] = batches[i], batches[1]
            return


def padded_positions(lengths: np.ndarray, batches: list[Batch]) -> tuple[int, int]:
    """(positions computed, of which padding) for a plan: what bucketing saves."""
    total = sum(len(b.indices) * b.width for b in batches)
    return total, total - int(sum(np.minimum(lengths[b.indices], b.width).sum() for b in batches))
