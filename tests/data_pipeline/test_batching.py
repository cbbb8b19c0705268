from __future__ import annotations

import numpy as np
import pytest

from data_pipeline.batching import BatchPlan, bucket_boundaries, padded_positions, sequence_lengths, width_for


def right_padded(lengths: list[int], width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((len(lengths), width), dtype=np.int32)
    for row, n in enumerate(lengths):
        x[row, :n] = rng.integers(2, 50, n)
    return x


def test_sequence_lengths_counts_up_to_the_last_token() -> None:
    x = right_padded([0, 1, 5, 8], 8)
    x[2, 1] = 1  # an OOV id inside a sequence is a token, not padding
    assert sequence_lengths(x).tolist() == [0, 1, 5, 8]
    with pytest.raises(ValueError, match="2-d"):
        sequence_lengths(np.zeros(3, dtype=np.int32))


def test_boundaries_are_few_rounded_and_cover_the_longest() -> None:
    lengths = np.random.default_rng(1).geometric(1 / 60, size=5000).clip(1, 300)
    bounds = bucket_boundaries(lengths, 300, n_buckets=8)
    assert len(bounds) <= 8 and bounds == sorted(bounds)
    assert all(b % 8 == 0 or b == 300 for b in bounds)
    assert bounds[-1] >= lengths.max() and bounds[-1] <= 300
    assert width_for(0, bounds) == bounds[0] and width_for(10_000, bounds) == bounds[-1]
    assert bucket_boundaries(np.array([3, 3, 3]), 100) == [8]


@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_training_plan_covers_every_row_once_and_never_cuts_a_token(batch_size: int) -> None:
    rng = np.random.default_rng(2)
    lengths = rng.integers(0, 120, size=301)
    x = right_padded(lengths.tolist(), 120)
    plan = BatchPlan(sequence_lengths(x), batch_size, bucket_boundaries(sequence_lengths(x), 120))
    for batches in (plan.shuffled(rng), plan.ordered()):
        rows = np.concatenate([b.indices for b in batches])
        assert sorted(rows.tolist()) == list(range(301))
        assert all(len(b.indices) <= batch_size for b in batches)
        for b in batches:
            assert (x[b.indices, b.width:] == 0).all()  # only padding is cut
    first, second = plan.shuffled(np.random.default_rng(3)), plan.shuffled(np.random.default_rng(4))
    assert [b.indices.tolist() for b in first] != [b.indices.tolist() for b in second]  # reshuffled
    assert len({b.width for b in first}) <= len(plan.boundaries)
    for batches in (first, plan.ordered()):
        if len({b.width for b in batches}) > 1:
            assert batches[0].width != batches[1].width  # Keras infers the input spec from two batches
    computed, padding = padded_positions(lengths, first)
    assert computed < 301 * 120 and padding < computed
