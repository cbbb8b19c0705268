"""Several trained classifiers as one: the mean of their class probabilities.

On disk an ensemble is a directory with ``ensemble.json`` (labels and members) and one
ordinary bundle per member in ``member-<i>/`` (``best.h5`` + ``sidecar.json``). Each member
keeps its own vectorizer (vocabulary size and sequence length differ between trials), so an
ensemble reads raw text, never ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.text import tokenize
from models.bundle import Prediction, TextClassifier, predictions_of, write_json
from models.errors import BundleError
from models.layout import ENSEMBLE_FILE, member_dir

__all__ = ["ENSEMBLE_FILE", "EnsembleClassifier", "load_classifier", "member_dir", "read_manifest", "write_manifest"]

ENSEMBLE_FORMAT = 1


def write_manifest(directory: str | Path, *, labels: list[str], members: list[dict[str, Any]]) -> Path:
    """``members``: one dict per ``member-<i>/`` bundle, in order (``trial_number``, ``run_id``,
    ``val_accuracy``, ...); every member weighs the same."""
    path = Path(directory) / ENSEMBLE_FILE
    body = {"format": ENSEMBLE_FORMAT, "labels": labels,
            "members": [{"dir": member_dir(i), **m} for i, m in enumerate(members)]}
    return write_json(path, body)


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / ENSEMBLE_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("members"), list) \
                or not manifest["members"] or not all(isinstance(m, dict) and "dir" in m for m in manifest["members"]):
            raise ValueError("expected an object with a non-empty 'members' list")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not a valid ensemble manifest ({' '.join(str(exc).split())[:160]})") from None
    if manifest.get("format") != ENSEMBLE_FORMAT:
        raise BundleError(f"{path}: unsupported ensemble format {manifest.get('format')!r}")
    return manifest


class EnsembleClassifier:
    """Members that vote with their probabilities; the same interface as ``TextClassifier``."""

    def __init__(self, members: list[TextClassifier], manifest: dict[str, Any]):
        self.members = members
        self.labels = members[0].labels
        self.manifest = manifest

    @classmethod
    def load(cls, directory: str | Path) -> EnsembleClassifier:
        directory = Path(directory)
        manifest = read_manifest(directory)
        members = [TextClassifier.load(directory / str(m["dir"])) for m in manifest["members"]]
        for member, entry in zip(members, manifest["members"], strict=True):
            if member.labels != members[0].labels:
                raise BundleError(f"{directory / str(entry['dir'])}: labels {member.labels} differ from the "
                                  f"first member's {members[0].labels}")
        return cls(members, manifest)

    def probabilities(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """(n, n_classes): the mean of the members' class probabilities. The texts are tokenized
        once (every member checks the same tokenizer version at load); each member maps the
        tokens through its own vocabulary and length."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        tokens = [tokenize(text) for text in texts]
        return np.mean([m.probabilities_of_ids(m.vectorizer.encode_tokens(tokens), batch_size) for m in self.members],
                       axis=0, dtype=np.float32)

    def predict(self, texts: list[str]) -> list[Prediction]:
        return predictions_of(self.probabilities(texts), self.labels)


def load_classifier(directory: str | Path) -> TextClassifier | EnsembleClassifier:
    """The bundle or ensemble in ``directory``."""
    if (Path(directory) / ENSEMBLE_FILE).is_file():
        return EnsembleClassifier.load(directory)
    return TextClassifier.load(directory)
