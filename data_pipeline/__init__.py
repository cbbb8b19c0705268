"""Readers, validation, splits, vectorization and the on-disk array cache."""

from __future__ import annotations

from data_pipeline.errors import DataError
from data_pipeline.prepare import PreparedData, cache_key, load_corpus, prepare, sort_labels
from data_pipeline.readers import LabelledTexts, read_csv, read_fasttext
from data_pipeline.spec import DataSpec
from data_pipeline.text import TOKENIZER_VERSION, Vectorizer, build_vocabulary, tokenize

__all__ = [
    "TOKENIZER_VERSION",
    "DataError",
    "DataSpec",
    "LabelledTexts",
    "PreparedData",
    "Vectorizer",
    "build_vocabulary",
    "cache_key",
    "load_corpus",
    "prepare",
    "read_csv",
    "read_fasttext",
    "sort_labels",
    "tokenize",
]
