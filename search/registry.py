"""Model registry: register the best COMPLETE trial as ``champion``, pull and resolve models."""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from data_pipeline.spec import DataSpec
from search.config import StudyConfig
from search.errors import RegistryError, TrackingError
from search.tracking import CHAMPION_ALIAS, MlflowTracker

log = logging.getLogger(__name__)


@dataclass
class Champion:
    model_name: str
    version: str
    run_id: str
    trial_number: int  # the best trial (of an ensemble: its best member)
    value: float  # validation accuracy of what was registered
    moved: bool
    test_accuracy: float | None = None
    members: list[int] = field(default_factory=list)  # an ensemble's trials, best first; [] for one trial


def selection_rule(config: StudyConfig) -> str:
    if config.ensemble_size > 1:
        return f"mean probability of the top {config.ensemble_size} COMPLETE trials by val_accuracy"
    rule = "max val_accuracy over COMPLETE trials"
    return f"{rule} with {config.constraints.describe()}" if config.constraints.enabled else rule


def register_champion(tracker: MlflowTracker, study: optuna.Study, config: StudyConfig) -> Champion | None:
    """Point alias ``champion`` at the best COMPLETE trial's logged model, or at the ensemble of
    the top ``champion.ensemble_size`` trials (no-op if it already points there)."""
    from search.ensemble import log_ensemble_run, top_trials

    members = top_trials(study, config, config.ensemble_size, usable=lambda t: has_bundle(tracker, t))
    if not members:
        return None
    best = members[0]
    if len(members) > 1:
        run = log_ensemble_run(tracker, study, config, members)
        value = float(run.data.metrics["val_accuracy"])
    else:
        run = tracker.client.get_run(best.user_attrs["mlflow_run_id"])
        value = float(best.value or 0.0)
    run_id = run.info.run_id
    # The registered model is a pyfunc on raw text (search/serving.py), logged once per run
    # that becomes a champion; the per-trial Keras-flavour model (if any) stays on its run.
    model_uri = run.data.tags.get(PYFUNC_TAG) or log_pyfunc_from_bundle(tracker, run_id)
    version, moved = point_alias(tracker.client, config.model_name, run_id, model_uri, study.study_name,
                                 {"trial_number": str(best.number)})
    champion = Champion(config.model_name, version, run_id, best.number, value, moved,
                        members=[t.number for t in members] if len(members) > 1 else [])
    if config.data.test_file:
        champion.test_accuracy = log_test_accuracy(tracker, champion, config, run)
    describe_version(tracker, champion, best, config, study.study_name)
    return champion


def has_bundle(tracker: MlflowTracker, trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial's MLflow run holds its checkpoint. One that does not (tracking was off
    or failed during the trial) cannot be served: it is passed over with a warning."""
    from models.bundle import MODEL_FILE

    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id and MODEL_FILE in {a.path for a in tracker.client.list_artifacts(run_id)}:
        return True
    log.warning("trial %d: %s; passed over for champion", trial.number,
                f"MLflow run {run_id} holds no {MODEL_FILE}" if run_id else "no MLflow run (tracking was off)")
    return False


def point_alias(client: Any, name: str, run_id: str, model_uri: str, study_name: str,
                tags: dict[str, str]) -> tuple[str, bool]:
    """Register ``run_id``'s model as a version of ``name`` (once) and point ``champion`` at it;
    returns (version, whether the alias moved)."""
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        current = None
    if current is not None and current.run_id == run_id:
        return str(current.version), False
    try:
        client.create_registered_model(name, tags={"study_name": study_name})
    except MlflowException:
        pass  # exists already (or another worker just created it)
    model_id = model_uri.removeprefix("models:/")
    mv = versions_of_run(client, name, run_id)[:1] or [
        client.create_model_version(name, source=model_uri, run_id=run_id, model_id=model_id,
                                    tags={**tags, "study_name": study_name})]
    # Workers that finish together may each have created a version of the same run: all of
    # them converge on the oldest one and delete the rest.
    kept, *extra = versions_of_run(client, name, run_id) or mv
    for duplicate in extra:
        try:
            client.delete_model_version(name, duplicate.version)
        except MlflowException:
            pass  # the other worker deleted it
    set_alias(client, name, kept.version)
    return str(kept.version), True


def describe_version(tracker: MlflowTracker, champion: Champion, trial: optuna.trial.FrozenTrial,
                     config: StudyConfig, study_name: str) -> None:
    """Description and tags that answer "what is this and how good is it" on the model page."""
    from data_pipeline.prepare import file_digest

    test = f"{champion.test_accuracy:.4f}" if champion.test_accuracy is not None else "not scored (no test_file)"
    p = trial.params
    family = ("Bi" if p.get("bidirectional") else "") + str(p.get("cell", "?")) + f" x{p.get('depth', '?')}"
    if champion.members:
        what = (f"Ensemble of {len(champion.members)} trials ({', '.join(map(str, champion.members))}) from "
                f"study '{study_name}', mean of their probabilities (MLflow run {champion.run_id}; best member: "
                f"trial {trial.number}, {family}, validation accuracy {float(trial.value or 0.0):.4f}). "
                f"Validation accuracy {champion.value:.4f} (the members were ranked on it)")
    else:
        what = (f"{family} text classifier from study '{study_name}', trial {trial.number} (MLflow run "
                f"{champion.run_id}). Validation accuracy {champion.value:.4f}")
    description = (f"{what}; test accuracy {test}. Rule: {selection_rule(config)}. Input: raw text (list of "
                   f"strings or a DataFrame column 'text'); output: label and probability.")
    tags = {
        "study_name": study_name, "trial_number": str(trial.number), "val_accuracy": f"{champion.value:.4f}",
        "test_accuracy": test, "selection_rule": selection_rule(config),
        "params": json.dumps(p, sort_keys=True), "train_file": Path(config.data.train_file).name,
        "train_sha256": file_digest(config.data.train_file),
    }
    if champion.members:
        tags["ensemble_trials"] = ",".join(map(str, champion.members))
    else:  # size and latency are measured per trial
        tags |= {key: str(trial.user_attrs[key]) for key in ("n_params", "latency_ms_b1", "latency_ms_b256")
                 if key in trial.user_attrs}
    if config.data.test_file:
        tags |= {"test_file": Path(config.data.test_file).name, "test_sha256": file_digest(config.data.test_file)}
    client = tracker.client
    client.update_model_version(champion.model_name, champion.version, description=description)
    for key, value in tags.items():
        again_after_race(client.set_model_version_tag, champion.model_name, champion.version, key, value)


def again_after_race(set_row: Any, *args: Any) -> None:
    """Call an MLflow setter, and once more if another worker raced it.

    MLflow's SQL store writes aliases and tags by SELECT-then-INSERT, so two workers finishing
    together can both INSERT and one gets a UNIQUE-constraint error. The row exists by then,
    so a second call updates it.
    """
    from mlflow.exceptions import MlflowException

    try:
        set_row(*args)
    except MlflowException:
        set_row(*args)


def set_alias(client: Any, name: str, version: str) -> None:
    """Point ``champion`` at ``version``; of workers setting it together, the last one stands
    (it saw the most trials)."""
    again_after_race(client.set_registered_model_alias, name, CHAMPION_ALIAS, version)


def versions_of_run(client: Any, name: str, run_id: str) -> list[Any]:
    """The registered versions of ``name`` made from ``run_id``, oldest first."""
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return sorted(found, key=lambda v: int(v.version))


PYFUNC_TAG = "pyfunc_model_uri"


def log_pyfunc_from_bundle(tracker: MlflowTracker, run_id: str, bundle: Path | None = None) -> str:
    """Log the run's bundle (or ensemble) as a raw-text pyfunc model on the run; returns its
    ``models:/`` URI. ``bundle``: a local copy, else it is downloaded from the run."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        bundle = bundle or download_bundle(tracker, run_id, Path(tmp))
        # Defining a PythonModel subclass (importing search.serving) makes MLflow advise type hints
        # under its own "once" filter, which overrides the CLI's filter (the explicit signature is
        # the contract here): record what it warns and pass on everything else.
        with warnings.catch_warnings(record=True) as caught, mlflow.start_run(run_id=run_id):
            from search import serving

            info = mlflow.pyfunc.log_model(
                name="text_model", python_model=serving.RawTextClassifier(), artifacts={"bundle": str(bundle)},
                code_paths=serving.CODE_PATHS, signature=serving.signature(), input_example=serving.INPUT_EXAMPLE,
                pip_requirements=tracker.pip_requirements(),
            )
        for w in caught:
            if "type hints" not in str(w.message):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    tracker.client.set_tag(run_id, PYFUNC_TAG, info.model_uri)
    return str(info.model_uri)


def log_test_accuracy(tracker: MlflowTracker, champion: Champion, config: StudyConfig, run: Any) -> float:
    """Score the champion on the test split once and log ``test_accuracy`` on its run."""
    logged = run.data.metrics.get("test_accuracy")
    if logged is not None:
        return float(logged)
    accuracy = score_run_on_test(tracker, champion.run_id, config.data)
    tracker.client.log_metric(champion.run_id, "test_accuracy", accuracy)
    return accuracy


def score_run_on_test(tracker: MlflowTracker, run_id: str, data_spec: DataSpec) -> float:
    """Accuracy of a run's best checkpoint (or ensemble) on the test split of ``data_spec``."""
    from models.ensemble import load_classifier
    from search.ensemble import split_accuracy

    with tempfile.TemporaryDirectory() as tmp:
        return split_accuracy(load_classifier(download_bundle(tracker, run_id, Path(tmp))), data_spec, "test")


def download_bundle(tracker: MlflowTracker, run_id: str, out: Path) -> Path:
    """The run's bundle, or its ensemble (manifest and member bundles), into ``out``."""
    from models.bundle import MODEL_FILE, SIDECAR_FILE
    from models.ensemble import ENSEMBLE_FILE, read_manifest

    out.mkdir(parents=True, exist_ok=True)
    client = tracker.client
    if ENSEMBLE_FILE in {a.path for a in client.list_artifacts(run_id)}:
        client.download_artifacts(run_id, ENSEMBLE_FILE, str(out))
        for member in read_manifest(out)["members"]:
            client.download_artifacts(run_id, str(member["dir"]), str(out))
        return out
    for name in (MODEL_FILE, SIDECAR_FILE):
        client.download_artifacts(run_id, name, str(out))
    return out


def resolve_version(tracker: MlflowTracker, model_name: str, alias: str = CHAMPION_ALIAS):  # type: ignore[no-untyped-def]
    from mlflow.exceptions import MlflowException

    try:
        return tracker.client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        raise RegistryError(f"model '{model_name}@{alias}' not found on {tracker.masked_uri}: "
                            f"{str(exc).splitlines()[0][:200]}") from None


def pull(tracker: MlflowTracker, model_name: str, alias: str, out: Path) -> Path:
    version = resolve_version(tracker, model_name, alias)
    return download_bundle(tracker, version.run_id, out)


def fetch_weight_source(uri: str, tracking_uri: str | None, cache_dir: Path) -> tuple[Path, str]:
    """``warm_start.weights: models:/NAME@ALIAS`` as a local bundle: the alias resolved now, the
    version's bundle (or ensemble) downloaded once into ``cache_dir`` and reused by later runs and
    the other workers of this host. Returns the directory and what it holds (URI, version, run)."""
    import shutil

    from mlflow.exceptions import MlflowException

    try:
        name, alias = parse_model_uri(uri)
        tracker = MlflowTracker(tracking_uri, experiment_name="", read_only=True)
        tracker.check_reachable()
        version = resolve_version(tracker, name, alias)
    except (RegistryError, TrackingError) as exc:
        raise type(exc)(f"warm_start.weights: {exc}") from None
    origin = f"{uri} (version {version.version}, run {version.run_id})"
    target = cache_dir / f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)}-v{version.version}"
    if target.is_dir():
        return target, origin
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Downloaded beside the target and renamed into place: a process that stops half-way, or a
    # worker racing this one, never leaves a partial bundle under the target's name.
    partial = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{target.name}-"))
    try:
        download_bundle(tracker, version.run_id, partial)
        partial.rename(target)
    except MlflowException as exc:
        raise RegistryError(f"warm_start.weights: {uri}: download failed: {str(exc).splitlines()[0][:200]}") \
            from None
    except OSError:
        if not target.is_dir():  # not another worker's copy that landed first
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target, origin


def parse_model_uri(uri: str) -> tuple[str, str]:
    """``models:/NAME@alias`` -> (NAME, alias)."""
    body = uri.removeprefix("models:/")
    name, _, alias = body.partition("@")
    if not name or not alias:
        raise RegistryError(f"model URI {uri!r}: expected models:/NAME@ALIAS")
    return name, alias
