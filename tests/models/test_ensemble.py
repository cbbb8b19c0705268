from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_pipeline import Vectorizer
from models.builder import build_model
from models.bundle import MODEL_FILE, TextClassifier, write_sidecar
from models.ensemble import ENSEMBLE_FILE, EnsembleClassifier, load_classifier, write_manifest
from models.errors import BundleError
from tests.models.test_builder import small

TEXTS = ["Good movie!", "bad, BAD movie", "a movie", ""]


def write_member(directory: Path, sequence_length: int, labels: list[str], cell: str) -> None:
    """A bundle with its own vocabulary and length (as trials of one study differ)."""
    directory.mkdir(parents=True)
    vec = Vectorizer(["", "[UNK]", "good", "bad", "movie"], sequence_length=sequence_length)
    params = small(max_features=5, sequence_length=sequence_length, depth=1, cell=cell)
    build_model(params, n_classes=len(labels) if len(labels) > 2 else 2).save(directory / MODEL_FILE)
    write_sidecar(directory, vectorizer=vec, labels=labels, params=params.to_dict())


def test_ensemble_is_the_mean_of_its_members_probabilities(tmp_path: Path) -> None:
    for i, (length, cell) in enumerate([(6, "GRU"), (9, "LSTM"), (4, "SimpleRNN")]):
        write_member(tmp_path / f"member-{i}", length, ["neg", "pos"], cell)
    write_manifest(tmp_path, labels=["neg", "pos"], members=[{"trial_number": n} for n in (4, 1, 7)])
    members = [TextClassifier.load(tmp_path / f"member-{i}") for i in range(3)]
    expected = np.mean([m.probabilities(TEXTS) for m in members], axis=0)
    assert not np.allclose(members[0].probabilities(TEXTS), members[1].probabilities(TEXTS))

    ensemble = load_classifier(tmp_path)
    assert isinstance(ensemble, EnsembleClassifier)
    np.testing.assert_allclose(ensemble.probabilities(TEXTS), expected, atol=1e-6)
    predictions = ensemble.predict(TEXTS)
    assert [p.label for p in predictions] == [["neg", "pos"][i] for i in expected.argmax(-1)]
    np.testing.assert_allclose([p.probability for p in predictions], expected.max(-1), atol=1e-6)
    assert [m["trial_number"] for m in ensemble.manifest["members"]] == [4, 1, 7]
    # A single bundle still loads as itself.
    assert isinstance(load_classifier(tmp_path / "member-0"), TextClassifier)


def test_broken_ensembles_fail_with_the_file_named(tmp_path: Path) -> None:
    write_member(tmp_path / "member-0", 6, ["neg", "pos"], "GRU")
    write_member(tmp_path / "member-1", 6, ["bad", "good"], "GRU")
    write_manifest(tmp_path, labels=["neg", "pos"], members=[{}, {}])
    with pytest.raises(BundleError, match=r"member-1: labels \['bad', 'good'\] differ"):
        EnsembleClassifier.load(tmp_path)
    shutil.rmtree(tmp_path / "member-1")
    with pytest.raises(BundleError, match="member-1/best.h5: not found"):
        EnsembleClassifier.load(tmp_path)
    cases = [("{", "not a valid ensemble manifest"),
             (json.dumps({"format": 1, "members": []}), "not a valid ensemble manifest .*non-empty 'members'"),
             (json.dumps({"format": 9, "members": [{"dir": "member-0"}]}), "unsupported ensemble format 9")]
    for body, problem in cases:
        (tmp_path / ENSEMBLE_FILE).write_text(body)
        with pytest.raises(BundleError, match=f"{ENSEMBLE_FILE}: {problem}"):
            load_classifier(tmp_path)
