"""The champion ensemble: the top-N COMPLETE trials' checkpoints, mean of their probabilities.

A search leaves many models that are nearly as good as its best one, and their errors differ
(other cells, vocabularies, lengths, seeds). Averaging them costs no training, only N times
the inference; the best trial alone is partly the luck of the validation split it was picked
on. The ensemble is its own MLflow run (``run_type: ensemble``) holding ``ensemble.json`` and
one bundle per member, and what the registry's ``champion`` alias points at.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from data_pipeline import prepare
from data_pipeline.spec import DataSpec

if TYPE_CHECKING:
    from models.bundle import TextClassifier
    from models.ensemble import EnsembleClassifier
    from search.config import StudyConfig
    from search.tracking import MlflowTracker

ENSEMBLE_RUN_NAME = "champion-ensemble"


def top_trials(study: optuna.Study, config: StudyConfig, n: int,
               usable: Callable[[optuna.trial.FrozenTrial], bool] = lambda t: True) -> list[optuna.trial.FrozenTrial]:
    """The ``n`` best ``usable`` COMPLETE trials by validation accuracy (those meeting the
    constraints), best first; ties keep the earlier trial first."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if config.constraints.enabled:
        complete = [t for t in complete if t.user_attrs.get("feasible") is True]
    chosen: list[optuna.trial.FrozenTrial] = []
    for trial in sorted(complete, key=lambda t: (-(t.value or 0.0), t.number)):
        if len(chosen) == n:
            break
        if usable(trial):
            chosen.append(trial)
    return chosen


def ensemble_key(run_ids: list[str]) -> str:
    """Names a set of member runs: the same top-N later reuses the run already logged."""
    return hashlib.sha256(json.dumps(sorted(run_ids)).encode()).hexdigest()[:16]


def split_probabilities(classifier: TextClassifier | EnsembleClassifier, spec: DataSpec,
                        split: str) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) on the ``val`` or ``test`` split of ``spec``, each member reading
    the split through its own vocabulary size and sequence length (the cached arrays)."""
    from models.ensemble import EnsembleClassifier

    members = classifier.members if isinstance(classifier, EnsembleClassifier) else [classifier]
    probs, y = [], None
    for member in members:
        params = member.sidecar["params"]
        data = prepare(spec, int(params["max_features"]), int(params["sequence_length"]))
        x, y = (data.x_val, data.y_val) if split == "val" else (data.x_test, data.y_test)
        if x is None:
            raise ValueError(f"no {split} split in {spec.train_file}")
        probs.append(member.probabilities_of_ids(x))
    assert y is not None
    return np.mean(probs, axis=0), y


def split_accuracy(classifier: TextClassifier | EnsembleClassifier, spec: DataSpec, split: str) -> float:
    probs, y = split_probabilities(classifier, spec, split)
    return float((probs.argmax(-1) == y).mean())


def find_ensemble_run(tracker: MlflowTracker, study_name: str, key: str) -> Any | None:
    """An ensemble run of these members already logged with its raw-text model, if any."""
    from search.registry import PYFUNC_TAG

    runs = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.run_type = 'ensemble' and tags.ensemble_key = '{key}' "
                                               f"and tags.study_name = '{study_name}'")
    return next((r for r in sorted(runs, key=lambda r: r.info.start_time) if PYFUNC_TAG in r.data.tags), None)


def log_ensemble_run(tracker: MlflowTracker, study: optuna.Study, config: StudyConfig,
                     members: list[optuna.trial.FrozenTrial]) -> Any:
    """The MLflow run of the ensemble of ``members`` (reused when these members were logged
    before): artifacts ``ensemble.json`` + ``member-<i>/``, metric ``val_accuracy``, and the
    raw-text pyfunc model the registry serves."""
    from models.bundle import SIDECAR_FILE
    from models.ensemble import EnsembleClassifier, member_dir, write_manifest
    from search.registry import download_bundle, log_pyfunc_from_bundle

    run_ids = [str(t.user_attrs["mlflow_run_id"]) for t in members]
    key = ensemble_key(run_ids)
    found = find_ensemble_run(tracker, study.study_name, key)
    if found is not None:
        return found
    client = tracker.client
    run = client.create_run(tracker.experiment_id, run_name=ENSEMBLE_RUN_NAME, tags={
        "run_type": "ensemble", "study_name": study.study_name, "ensemble_key": key,
        "ensemble_trials": ",".join(str(t.number) for t in members)})
    run_id = run.info.run_id
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bundle = Path(tmp) / "bundle"
            for i, run_id_of_member in enumerate(run_ids):
                download_bundle(tracker, run_id_of_member, bundle / member_dir(i))
            labels = json.loads((bundle / member_dir(0) / SIDECAR_FILE).read_text())["labels"]
            write_manifest(bundle, labels=labels, members=[
                {"trial_number": t.number, "run_id": rid, "val_accuracy": t.value, "params": t.params}
                for t, rid in zip(members, run_ids, strict=True)])
            ensemble = EnsembleClassifier.load(bundle)
            client.log_metric(run_id, "val_accuracy", split_accuracy(ensemble, config.data, "val"))
            if config.data.test_file:  # scored here, while the members are loaded (the registry reads it)
                client.log_metric(run_id, "test_accuracy", split_accuracy(ensemble, config.data, "test"))
            client.log_metric(run_id, "best_member_val_accuracy", float(members[0].value or 0.0))
            client.log_param(run_id, "ensemble_size", len(members))
            client.log_artifacts(run_id, str(bundle))
            log_pyfunc_from_bundle(tracker, run_id, bundle)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return client.get_run(run_id)
