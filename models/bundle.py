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
from models import layers as _layers  # noqa: F401  (registers the pooling layers best.h5 may use)
from models.errors import BundleError
from models.layout import MODEL_FILE, SIDECAR_FILE
from models.training import can_bucket, predict

__all__ = ["MODEL_FILE", "SIDECAR_FILE", "Prediction", "TextClassifier", "predictions_of", "write_json",
           "write_sidecar"]

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
    return write_json(path, body)


def write_json(path: Path, body: dict[str, Any]) -> Path:
    """Write ``body`` to a temporary file renamed into place: a reader never sees half a file."""
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
                raise BundleError(f"{directory / name}: not found (expected a model bundle)")
        sidecar_path = directory / SIDECAR_FILE
        try:
            sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
            if not isinstance(sidecar, dict):
                raise ValueError("top level is not an object")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BundleError(f"{sidecar_path}: not a valid sidecar ({' '.join(str(exc).split())[:160]})") from None
        if sidecar.get("format") != SIDECAR_FORMAT:
            raise BundleError(f"{sidecar_path}: unsupported sidecar format {sidecar.get('format')!r}")
        try:
            vectorizer = Vectorizer.from_dict(sidecar["vectorizer"])
            labels = [str(label) for label in sidecar["labels"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{sidecar_path}: missing or bad field ({type(exc).__name__}: {exc})") from None
        try:
            model = keras.models.load_model(directory / MODEL_FILE, compile=False)
        except Exception as exc:  # h5py/Keras raise many types for a damaged or foreign file
            detail = " ".join(str(exc).split())[:160]
            raise BundleError(f"{directory / MODEL_FILE}: Keras cannot load it ({type(exc).__name__}: {detail})") \
                from None
        n_out = int(model.output_shape[-1])
        if n_out != (1 if len(labels) == 2 else len(labels)):
            raise BundleError(f"{sidecar_path}: {len(labels)} labels do not match the model's {n_out} output(s)")
        embedding = next((layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)), None)
        if embedding is not None and len(vectorizer.vocabulary) > embedding.input_dim:
            raise BundleError(f"{sidecar_path}: vocabulary of {len(vectorizer.vocabulary)} tokens does not fit "
                              f"the model's embedding of {embedding.input_dim} rows")
        return cls(model, vectorizer, labels, sidecar)

    @property
    def accepts_any_length(self) -> bool:
        """Models saved before bucketing declared a fixed input length."""
        return self.model.input_shape[-1] is None

    def probabilities(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """(n, n_classes) class probabilities for raw texts."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.probabilities_of_ids(self.vectorizer.encode(texts), batch_size)

    def probabilities_of_ids(self, ids: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(n, n_classes) class probabilities for already vectorized texts."""
        bucketing = can_bucket(self.vectorizer.padding, bool(self.sidecar.get("mask_zero", False))) \
            and self.accepts_any_length
        out = np.asarray(predict(self.model, ids, bucketing=bucketing, batch_size=batch_size), dtype=np.float32)
        if out.shape[-1] == 1:  # sigmoid head: P(class 1)
            out = np.concatenate([1.0 - out, out], axis=-1)
        return out

    def predict(self, texts: list[str]) -> list[Prediction]:
        return predictions_of(self.probabilities(texts), self.labels)


def predictions_of(probs: np.ndarray, labels: list[str]) -> list[Prediction]:
    """The most probable label of each row, with its probability."""
    best = probs.argmax(axis=-1)
    return [Prediction(labels[i], float(probs[row, i])) for row, i in enumerate(best)]
