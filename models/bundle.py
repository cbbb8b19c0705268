"""A trained classifier on disk: ``best.h5`` plus ``sidecar.json``.

The sidecar holds everything needed to classify raw text later: the vectorizer
(vocabulary, sequence length, padding, tokenizer version), the label names and the params.
``best.h5`` loads with plain ``keras.models.load_model``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from data_pipeline import Vectorizer

MODEL_FILE = "best.h5"
SIDECAR_FILE = "sidecar.json"
SIDECAR_FORMAT = 1


def write_sidecar(
    directory: str | Path,
    *,
    vectorizer: Vectorizer,
    labels: list[str],
    params: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    path = Path(directory) / SIDECAR_FILE
    body = {
        "format": SIDECAR_FORMAT,
        "labels": labels,
        "params": params,
        "keras_version": keras.__version__,
        "vectorizer": vectorizer.to_dict(),
        **(extra or {}),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)
    return path


@dataclass
class Prediction:
    label: str
    probability: float


class TextClassifier:
    """A loaded model with its exact training-time tokenizer and label names."""

    def __init__(self, model: keras.Model, vectorizer: Vectorizer, labels: list[str], sidecar: dict[str, Any]):
        self.model = model
        self.vectorizer = vectorizer
        self.labels = labels
        self.sidecar = sidecar

    @classmethod
    def load(cls, directory: str | Path) -> TextClassifier:
        directory = Path(directory)
        for name in (MODEL_FILE, SIDECAR_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name}: not found (expected a model bundle)")
        sidecar = json.loads((directory / SIDECAR_FILE).read_text())
        if sidecar.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"{directory / SIDECAR_FILE}: unsupported sidecar format {sidecar.get('format')!r}")
        model = keras.models.load_model(directory / MODEL_FILE, compile=False)
        return cls(model, Vectorizer.from_dict(sidecar["vectorizer"]), list(sidecar["labels"]), sidecar)

    def probabilities(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """(n, n_classes) class probabilities for raw texts."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        out = self.model.predict(self.vectorizer.encode(texts), batch_size=batch_size, verbose=0)
        out = np.asarray(out, dtype=np.float32)
        if out.shape[-1] == 1:  # sigmoid head: P(class 1)
            out = np.concatenate([1.0 - out, out], axis=-1)
        return out

    def predict(self, texts: list[str]) -> list[Prediction]:
        probs = self.probabilities(texts)
        best = probs.argmax(axis=-1)
        return [Prediction(self.labels[i], float(probs[row, i])) for row, i in enumerate(best)]
