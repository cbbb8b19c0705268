from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import numpy as np

from data_pipeline import DataSpec, Vectorizer, build_vocabulary, cache_key, prepare, tokenize
from data_pipeline.prepare import sort_labels


def test_tokenize_matches_keras_defaults() -> None:
    assert tokenize("Hello, WORLD!  It's <br />great...") == ["hello", "world", "its", "br", "great"]


def test_vocabulary_order_and_reserved_indices() -> None:
    vocab = build_vocabulary([["b", "a", "b"], ["c", "a", "b"]], max_features=4)
    assert vocab == ["", "[UNK]", "b", "a"]  # most frequent first, ties alphabetical


def test_padding_truncation_and_oov() -> None:
    vec = Vectorizer(["", "[UNK]", "good", "bad"], sequence_length=4, padding="pre", truncating="pre")
    out = vec.encode(["good movie", "bad bad good good bad"])
    assert out.tolist() == [[0, 0, 2, 1], [3, 2, 2, 3]]
    post = Vectorizer(vec.vocabulary, 4, padding="post", truncating="post")
    assert post.encode(["good movie", "bad bad good good bad"]).tolist() == [[2, 1, 0, 0], [3, 3, 2, 2]]
    assert Vectorizer.from_dict(post.to_dict()) == post


def test_labels_sort_numerically() -> None:
    assert sort_labels({"10", "2", "1"}) == ["1", "2", "10"]
    assert sort_labels({"pos", "neg"}) == ["neg", "pos"]


def test_split_is_stratified_seeded_and_vocab_from_train_only(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    spec = DataSpec(train_file=str(tiny_files["train"]), test_file=str(tiny_files["test"]),
                    validation_fraction=0.25, cache_dir=str(tmp_path))
    data = prepare(spec, 500, 24)
    assert len(data.y_train) + len(data.y_val) == 600
    assert len(data.y_val) == 150
    # stratified: class shares equal within one example
    train_share, val_share = data.y_train.mean(), data.y_val.mean()
    assert abs(train_share - val_share) < 0.01
    assert data.x_train.shape == (450, 24) and data.x_test is not None and data.x_test.shape == (200, 24)
    assert data.x_train.dtype == np.int32 and data.x_train.max() < 500
    again = prepare(spec.model_copy(update={"cache_dir": str(tmp_path / "other")}), 500, 24)
    np.testing.assert_array_equal(again.y_val, data.y_val)


def test_cache_hit_is_fast_and_identical(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    spec = DataSpec(train_file=str(tiny_files["train"]), cache_dir=str(tmp_path))
    cold = prepare(spec, 300, 32)
    assert not cold.from_cache
    started = time.perf_counter()
    warm = prepare(spec, 300, 32)
    elapsed = time.perf_counter() - started
    assert warm.from_cache and elapsed < 0.5
    np.testing.assert_array_equal(cold.x_train, warm.x_train)
    assert warm.vectorizer == cold.vectorizer and warm.labels == cold.labels
    assert cache_key(spec, 300, 32) != cache_key(spec, 300, 33)
    assert cache_key(spec, 300, 32) != cache_key(spec.model_copy(update={"split_seed": 1}), 300, 32)


def test_cache_key_follows_content(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("__label__a one\n__label__b two\n__label__a three\n__label__b four\n")
    spec = DataSpec(train_file=str(f), cache_dir=str(tmp_path / "c"))
    before = cache_key(spec, 10, 5)
    f.write_text("__label__a one\n__label__b two\n__label__a three\n__label__b FIVE\n")
    assert cache_key(spec, 10, 5) != before


def _fill(args: tuple[str, str, str]) -> str:
    train, cache, _ = args
    data = prepare(DataSpec(train_file=train, cache_dir=cache), 400, 40)
    return f"{data.cache_key}:{int(data.x_train.sum())}:{len(data.vectorizer.vocabulary)}"


def test_concurrent_fill_never_reads_half_written(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache"
    jobs = [(str(tiny_files["train"]), str(cache), str(i)) for i in range(6)]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(_fill, jobs)
    assert len(set(results)) == 1
    assert sorted(p.suffix for p in cache.iterdir()) == [".npz"]  # no temp files left
