from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_pipeline import Vectorizer
from models.builder import build_model
from models.bundle import MODEL_FILE, TextClassifier, write_sidecar
from models.ensemble import write_manifest
from models.errors import BundleError
from models.layout import member_dir
from models.params import ModelParams
from models.transfer import source_architecture, transfer_weights

SOURCE_WORDS = ["", "[UNK]", "good", "bad", "film", "plot"]
TARGET_WORDS = ["", "[UNK]", "bad", "battery", "good", "charger", "film"]


def params(**kw: object) -> ModelParams:
    base = dict(cell="GRU", bidirectional=True, depth=2, embedding_dim=4, units=3, max_features=8,
                sequence_length=6, pooling="mean")
    base.update(kw)
    return ModelParams(**base)  # type: ignore[arg-type]


def source(labels: list[str] | None = None, **kw: object) -> TextClassifier:
    model = build_model(params(**kw), len(labels or ["1", "2"]), mask_zero=True)
    return TextClassifier(model, Vectorizer(SOURCE_WORDS, 6), labels or ["1", "2"], {"mask_zero": True})


def weighted(model) -> list:  # type: ignore[no-untyped-def]
    return [layer for layer in model.layers if layer.weights]


def test_embedding_rows_move_by_word_and_every_other_layer_as_it_is() -> None:
    src = source()
    target = build_model(params(), 2, mask_zero=True)
    fresh = target.layers[0].get_weights()[0].copy()
    done = transfer_weights(target, TARGET_WORDS, ["1", "2"], src)
    table, source_table = target.layers[0].get_weights()[0], src.model.layers[0].get_weights()[0]
    for i, word in enumerate(TARGET_WORDS):
        if i > 0 and word in SOURCE_WORDS:
            np.testing.assert_array_equal(table[i], source_table[SOURCE_WORDS.index(word)])
        else:  # padding and words the source never saw keep their fresh rows
            np.testing.assert_array_equal(table[i], fresh[i])
    assert done.words == 4 and done.vocabulary == len(TARGET_WORDS) and done.head  # [UNK], bad, good, film
    for layer, source_layer in zip(weighted(target)[1:], weighted(src.model)[1:], strict=True):
        for w, s in zip(layer.get_weights(), source_layer.get_weights(), strict=True):
            np.testing.assert_array_equal(w, s)
    ids = Vectorizer(TARGET_WORDS, 6).encode(["good film", "bad charger"])
    # Same weights on the shared words: the two models agree on a text made of them.
    np.testing.assert_allclose(target.predict(ids[:1], verbose=0), src.model.predict(
        Vectorizer(SOURCE_WORDS, 6).encode(["good film"]), verbose=0), rtol=1e-5)


def test_the_head_starts_fresh_when_the_labels_differ() -> None:
    src = source(labels=["a", "b", "c"])
    target = build_model(params(), 3, mask_zero=True)
    fresh_head = [w.copy() for w in weighted(target)[-1].get_weights()]
    done = transfer_weights(target, TARGET_WORDS, ["x", "y", "z"], src)
    assert not done.head
    for w, f in zip(weighted(target)[-1].get_weights(), fresh_head, strict=True):
        np.testing.assert_array_equal(w, f)
    # The recurrent layers still come from the source.
    np.testing.assert_array_equal(weighted(target)[1].get_weights()[0], weighted(src.model)[1].get_weights()[0])


@pytest.mark.parametrize(("change", "message"), [({"embedding_dim": 5}, "embedding_dim 5 differs"),
                                                 ({"units": 5}, "has shapes"),
                                                 ({"depth": 1}, "layers with weights")])
def test_another_architecture_is_refused(change: dict[str, int], message: str) -> None:
    target = build_model(params(**change), 2, mask_zero=True)
    with pytest.raises(ValueError, match=message):
        transfer_weights(target, TARGET_WORDS, ["1", "2"], source())


def write_bundle(directory: Path, model_params: ModelParams) -> None:
    directory.mkdir(parents=True)
    build_model(model_params, 2, mask_zero=True).save(directory / MODEL_FILE)
    write_sidecar(directory, vectorizer=Vectorizer(SOURCE_WORDS, 6), labels=["1", "2"],
                  params=model_params.to_dict(), extra={"mask_zero": True})


def test_architecture_comes_from_a_bundle_or_an_ensembles_best_member(tmp_path: Path) -> None:
    write_bundle(tmp_path / "bundle", params(cell="LSTM", pooling="max"))
    expected = {"cell": "LSTM", "bidirectional": True, "depth": 2, "embedding_dim": 4, "units": 3, "pooling": "max",
                "initializer": "glorot_uniform"}
    assert source_architecture(tmp_path / "bundle") == expected
    write_bundle(tmp_path / "ensemble" / member_dir(0), params(cell="SimpleRNN", bidirectional=False))
    write_bundle(tmp_path / "ensemble" / member_dir(1), params())
    write_manifest(tmp_path / "ensemble", labels=["1", "2"], members=[{"trial_number": 3}, {"trial_number": 1}])
    assert source_architecture(tmp_path / "ensemble")["cell"] == "SimpleRNN"
    with pytest.raises(BundleError, match="best.h5: not found"):
        source_architecture(tmp_path / "nowhere")
