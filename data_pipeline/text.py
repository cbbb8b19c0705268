"""Tokenization and integer encoding of raw text.

Written out here instead of using ``keras.layers.TextVectorization`` so that the data
pipeline runs without TensorFlow (the GPU machines run Keras on JAX/PyTorch) and the
vocabulary is an explicit list that goes into the model's JSON sidecar. The rules are
Keras' defaults: lower-case, strip ASCII punctuation, split on whitespace; index 0 is
padding and index 1 the out-of-vocabulary token.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

# Bump whenever tokenization or encoding changes: it is part of every cache key and sidecar.
TOKENIZER_VERSION = 1
PAD, OOV = "", "[UNK]"
_STRIP = str.maketrans("", "", string.punctuation)

Side = Literal["pre", "post"]


def tokenize(text: str) -> list[str]:
    return text.lower().translate(_STRIP).split()


def build_vocabulary(token_lists: Iterable[Sequence[str]], max_features: int) -> list[str]:
    """The ``max_features - 2`` most frequent tokens after PAD and OOV (ties by token)."""
    if max_features < 3:
        raise ValueError("max_features must be at least 3 (padding, OOV and one token)")
    counts: Counter[str] = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [PAD, OOV] + [token for token, _ in ranked[: max_features - 2]]


@dataclass
class Vectorizer:
    """Maps raw texts to fixed-length int32 sequences; round-trips through a dict."""

    vocabulary: list[str]
    sequence_length: int
    padding: Side = "post"
    truncating: Side = "post"
    tokenizer_version: int = TOKENIZER_VERSION
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.tokenizer_version != TOKENIZER_VERSION:
            raise ValueError(
                f"tokenizer version {self.tokenizer_version} is not supported "
                f"(this code has version {TOKENIZER_VERSION})"
            )
        self._index = {token: i for i, token in enumerate(self.vocabulary)}

    def encode_tokens(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        length = self.sequence_length
        out = np.zeros((len(token_lists), length), dtype=np.int32)
        index = self._index
        for row, tokens in enumerate(token_lists):
            ids = [index.get(token, 1) for token in tokens]
            if len(ids) > length:
                ids = ids[-length:] if self.truncating == "pre" else ids[:length]
            if ids:
                if self.padding == "pre":
                    out[row, length - len(ids) :] = ids
                else:
                    out[row, : len(ids)] = ids
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_tokens([tokenize(text) for text in texts])

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokenizer_version": self.tokenizer_version,
            "sequence_length": self.sequence_length,
            "padding": self.padding,
            "truncating": self.truncating,
            "vocabulary": self.vocabulary,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vectorizer:
        return cls(
            vocabulary=list(data["vocabulary"]),
            sequence_length=int(data["sequence_length"]),
            padding=data["padding"],
            truncating=data["truncating"],
            tokenizer_version=int(data["tokenizer_version"]),
        )
