"""Start a new model from a trained one (``warm_start.weights``): weight transfer.

Measured before it was built (bench/weight_transfer.py): the baseline BiGRU trained for two
epochs on IMDB, as the start of the same model on Amazon reviews, lifted its test accuracy from
0.831 to 0.853 (+0.022 ± 0.002 paired over 5 seeds). Keras has no such copy between models whose
vocabularies differ, hence this module: the embedding is copied row by row through the words
both vocabularies hold (a word the source never saw keeps its fresh row), every later layer as
it is.
The classifier head is copied only when the label lists are the same (the same classes in the
same order); otherwise it starts fresh.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import BundleError
from models.layout import ENSEMBLE_FILE, MODEL_FILE, SIDECAR_FILE, member_dir

if TYPE_CHECKING:
    import keras

    from models.bundle import TextClassifier

# What fixes the shapes of the copied layers, and the initializer, whose draw the copy replaces:
# a study that transfers weights takes these from the source and searches only the rest.
FIXED = ("cell", "bidirectional", "depth", "embedding_dim", "units", "pooling", "initializer")


@dataclass(frozen=True)
class Transferred:
    words: int  # target vocabulary rows taken from the source
    vocabulary: int  # target vocabulary size
    head: bool  # whether the classifier head was copied


def source_dir(path: str | Path) -> Path:
    """The bundle directory behind ``path``: a bundle, or an ensemble's first (best) member."""
    directory = Path(path)
    return directory / member_dir(0) if (directory / ENSEMBLE_FILE).is_file() else directory


def source_architecture(path: str | Path) -> dict[str, Any]:
    """The FIXED params of the bundle at ``path``, read from its sidecar (no Keras)."""
    directory = source_dir(path)
    for name in (MODEL_FILE, SIDECAR_FILE):
        if not (directory / name).is_file():
            raise BundleError(f"{directory / name}: not found (expected a model bundle, e.g. from `search pull`)")
    try:
        params = json.loads((directory / SIDECAR_FILE).read_text(encoding="utf-8")).get("params") or {}
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise BundleError(f"{directory / SIDECAR_FILE}: not a valid sidecar ({type(exc).__name__})") from None
    missing = [name for name in FIXED if name not in params]
    if missing:
        raise BundleError(f"{directory / SIDECAR_FILE}: params lack {', '.join(missing)}")
    return {name: params[name] for name in FIXED}


@lru_cache(maxsize=2)
def load_source(path: str) -> TextClassifier:
    """The source bundle, loaded once per process (every trial of a worker starts from it)."""
    from models.bundle import TextClassifier

    return TextClassifier.load(source_dir(path))


def transfer_weights(model: keras.Model, vocabulary: list[str], labels: list[str],
                     source: TextClassifier) -> Transferred:
    """Copy ``source``'s weights into ``model`` (built from the same architecture params)."""
    target_layers = [layer for layer in model.layers if layer.weights]
    source_layers = [layer for layer in source.model.layers if layer.weights]
    if len(target_layers) != len(source_layers):
        raise ValueError(f"weight transfer: the source has {len(source_layers)} layers with weights, "
                         f"the model {len(target_layers)}")
    embedding, *body, head = target_layers
    table = embedding.get_weights()[0]
    source_table = source_layers[0].get_weights()[0]
    if table.shape[1] != source_table.shape[1]:
        raise ValueError(f"weight transfer: embedding_dim {table.shape[1]} differs from the source's "
                         f"{source_table.shape[1]}")
    source_row = {word: i for i, word in enumerate(source.vectorizer.vocabulary)}
    words = 0
    for i, word in enumerate(vocabulary[:len(table)]):
        j = source_row.get(word)
        if i > 0 and j is not None and j < len(source_table):  # row 0 is padding, masked out
            table[i] = source_table[j]
            words += 1
    embedding.set_weights([table])
    for layer, source_layer in zip(body, source_layers[1:-1], strict=True):
        weights = source_layer.get_weights()
        shapes = [w.shape for w in layer.get_weights()]
        if [w.shape for w in weights] != shapes:
            raise ValueError(f"weight transfer: layer {layer.name} has shapes {shapes}, the source's "
                             f"{[w.shape for w in weights]}")
        layer.set_weights(weights)
    same_labels = list(labels) == list(source.labels)
    if same_labels:
        head.set_weights(source_layers[-1].get_weights())
    return Transferred(words=words, vocabulary=len(vocabulary), head=same_labels)
