"""Read, split, vectorize and cache a data set for one (max_features, sequence_length).

The expensive part is tokenizing the corpus, done once per process and data content; each
(max_features, sequence_length) result is cached on disk as an ``.npz`` keyed by the data's
content hash and every option that changes the arrays. Writes go to a temporary file that
is renamed into place, so concurrent workers never read a half-written cache entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from data_pipeline.errors import DataError
from data_pipeline.readers import LabelledTexts, read_csv, read_fasttext
from data_pipeline.spec import DataSpec
from data_pipeline.text import TOKENIZER_VERSION, Vectorizer, build_vocabulary, tokenize

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    labels: list[str]
    vectorizer: Vectorizer
    cache_key: str
    from_cache: bool = False

    @property
    def n_classes(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class _Corpus:
    """Tokenized and split data, independent of vocabulary size and sequence length."""

    train_tokens: list[list[str]]
    y_train: np.ndarray
    val_tokens: list[list[str]]
    y_val: np.ndarray
    test_tokens: list[list[str]] | None
    y_test: np.ndarray | None
    labels: list[str]


def sort_labels(names: set[str]) -> list[str]:
    """Numeric label names sort numerically ("2" < "10"), others alphabetically."""
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def file_digest(path: str) -> str:
    stat = os.stat(path)
    return _file_digest(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_labelled(spec: DataSpec, path: str) -> LabelledTexts:
    if spec.format == "csv":
        return read_csv(path, spec.text_column, spec.label_column, spec.delimiter)
    return read_fasttext(path)


def data_fingerprint(spec: DataSpec) -> str:
    """Hash of the data content and every option that changes the split."""
    for path in (spec.train_file, spec.test_file):
        if path is not None and not Path(path).is_file():
            raise DataError(f"{path}: {'not a regular file' if Path(path).exists() else 'file not found'}")
    parts = {
        "train": file_digest(spec.train_file),
        "test": file_digest(spec.test_file) if spec.test_file else None,
        "format": spec.format,
        "columns": [spec.text_column, spec.label_column, spec.delimiter],
        "validation_fraction": spec.validation_fraction,
        "split_seed": spec.split_seed,
        "tokenizer_version": TOKENIZER_VERSION,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cache_key(spec: DataSpec, max_features: int, sequence_length: int) -> str:
    parts = [data_fingerprint(spec), max_features, sequence_length, spec.padding, spec.truncating]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


MIN_VALIDATION = 20


def split_indices(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded train/validation split (plain shuffle if a class has one example)."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(y))
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    if stratify is None:
        log.warning("a class has a single training example: validation split is not stratified")
    n_val = max(1, round(len(y) * fraction))
    n_classes = int((counts > 0).sum())
    if stratify is not None and n_val < n_classes:
        n_val = n_classes
    if n_val < MIN_VALIDATION or len(y) - n_val < MIN_VALIDATION:
        # A handful of validation examples makes any trial look perfect (1 of 1 = 1.0).
        raise DataError(f"training data too small: {len(y)} examples give {n_val} for validation and "
                        f"{len(y) - n_val} for training (need at least {MIN_VALIDATION} of each)")
    train_idx, val_idx = train_test_split(
        indices, test_size=n_val, random_state=seed, shuffle=True, stratify=stratify
    )
    return np.sort(train_idx), np.sort(val_idx)


def load_corpus(spec: DataSpec) -> _Corpus:
    return _load_corpus(spec, data_fingerprint(spec))


@lru_cache(maxsize=4)
def _load_corpus(spec: DataSpec, fingerprint: str) -> _Corpus:
    train = read_labelled(spec, spec.train_file)
    labels = sort_labels(set(train.labels))
    if len(labels) < 2:
        raise DataError(f"{spec.train_file}: needs at least 2 classes, found {len(labels)}")
    index = {name: i for i, name in enumerate(labels)}
    y_all = np.array([index[name] for name in train.labels], dtype=np.int32)
    try:
        train_idx, val_idx = split_indices(y_all, spec.validation_fraction, spec.split_seed)
    except DataError as exc:
        raise DataError(f"{spec.train_file}: {exc}") from None
    tokens = [tokenize(text) for text in train.texts]
    test_tokens = y_test = None
    if spec.test_file:
        test = read_labelled(spec, spec.test_file)
        for name, number in zip(test.labels, test.line_numbers, strict=True):
            if name not in index:
                raise DataError(
                    f"{spec.test_file}:{number}: label '{name}' never occurs in training "
                    f"data {spec.train_file}"
                )
        test_tokens = [tokenize(text) for text in test.texts]
        y_test = np.array([index[name] for name in test.labels], dtype=np.int32)
    return _Corpus(
        train_tokens=[tokens[i] for i in train_idx],
        y_train=y_all[train_idx],
        val_tokens=[tokens[i] for i in val_idx],
        y_val=y_all[val_idx],
        test_tokens=test_tokens,
        y_test=y_test,
        labels=labels,
    )


def prepare(spec: DataSpec, max_features: int, sequence_length: int) -> PreparedData:
    """Arrays for one (max_features, sequence_length): from the disk cache when present."""
    key = cache_key(spec, max_features, sequence_length)
    path = Path(spec.cache_dir) / f"{key}.npz"
    if path.exists():
        try:
            return _load(path, key)
        except (OSError, ValueError, KeyError) as exc:  # corrupt entry: rebuild it
            log.warning("data cache %s unreadable (%s); rebuilding", path, exc)
    corpus = load_corpus(spec)
    vocabulary = build_vocabulary(corpus.train_tokens, max_features)
    vectorizer = Vectorizer(vocabulary, sequence_length, spec.padding, spec.truncating)
    data = PreparedData(
        x_train=vectorizer.encode_tokens(corpus.train_tokens),
        y_train=corpus.y_train,
        x_val=vectorizer.encode_tokens(corpus.val_tokens),
        y_val=corpus.y_val,
        x_test=None if corpus.test_tokens is None else vectorizer.encode_tokens(corpus.test_tokens),
        y_test=corpus.y_test,
        labels=corpus.labels,
        vectorizer=vectorizer,
        cache_key=key,
    )
    _store(path, data)
    return data


def _store(path: Path, data: PreparedData) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"labels": data.labels, "vectorizer": data.vectorizer.to_dict()}
    arrays = {
        "x_train": data.x_train,
        "y_train": data.y_train,
        "x_val": data.x_val,
        "y_val": data.y_val,
        "meta": np.array(json.dumps(meta)),
    }
    if data.x_test is not None and data.y_test is not None:
        arrays["x_test"], arrays["y_test"] = data.x_test, data.y_test
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see the old state or the whole new file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path, key: str) -> PreparedData:
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        has_test = "x_test" in npz.files
        return PreparedData(
            x_train=npz["x_train"],
            y_train=npz["y_train"],
            x_val=npz["x_val"],
            y_val=npz["y_val"],
            x_test=npz["x_test"] if has_test else None,
            y_test=npz["y_test"] if has_test else None,
            labels=list(meta["labels"]),
            vectorizer=Vectorizer.from_dict(meta["vectorizer"]),
            cache_key=key,
            from_cache=True,
        )
