"""What a training set looks like, for choosing data-dependent search ranges."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from data_pipeline.prepare import load_corpus
from data_pipeline.spec import DataSpec


@dataclass(frozen=True)
class CorpusStats:
    n_train: int
    n_classes: int
    mean_tokens: float
    token_percentiles: dict[str, int]  # "50", "90", "99" -> tokens per text
    vocabulary: int  # distinct training tokens
    vocabulary_min2: int  # distinct tokens seen at least twice (the learnable ones)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def corpus_stats(spec: DataSpec) -> CorpusStats:
    corpus = load_corpus(spec)
    tokens = corpus.train_tokens + corpus.val_tokens
    lengths = np.array([len(t) for t in tokens]) if tokens else np.zeros(1)
    counts: Counter[str] = Counter()
    for t in tokens:
        counts.update(t)
    return CorpusStats(
        n_train=len(tokens), n_classes=len(corpus.labels), mean_tokens=round(float(lengths.mean()), 1),
        token_percentiles={str(q): int(np.percentile(lengths, q)) for q in (50, 90, 99)},
        vocabulary=len(counts), vocabulary_min2=sum(1 for c in counts.values() if c >= 2),
    )
