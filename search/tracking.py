"""MLflow adapter: one run per trial, a study-summary run, and the model registry.

``optuna_integration.MLflowCallback`` is deprecated and logs only final values (no curves,
no artifacts), so runs are written with ``MlflowClient`` directly. Every call during a
trial goes through :meth:`TrialRun._safe`: if the tracking server drops, training goes on,
the error is recorded on the Optuna trial, and the next trial starts a fresh run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna

from models.params import ModelParams
from search.errors import TrackingError
from search.identity import worker_id
from search.urls import describe, mask_text, mask_url

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACT_ROOT = "mlruns/artifacts"
STUDY_RUN_NAME = "study-summary"
CHAMPION_ALIAS = "champion"
# Keep a dead server from stalling a trial for minutes (MLflow retries with backoff).
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def resolve_tracking_uri(uri: str | None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def retried_trial_number(trial: optuna.Trial) -> int | None:
    """The original trial a heartbeat retry re-runs (None if this is no retry)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    # Trial exposes no system attrs; read the frozen trial from its storage.
    frozen = trial.storage.get_trial(trial._trial_id)
    return RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)


class NullTrialRun:
    """Used when tracking is off (benchmarks): every call is a no-op."""

    run_id: str | None = None
    errors: list[str] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...
    def log_params(self, values: dict[str, Any]) -> None: ...
    def log_bundle(self, directory: Path) -> None: ...
    def log_keras_model(self, model: Any) -> None: ...
    def finish(self, state: str, metrics: dict[str, float], fail_reason: str | None = None) -> None: ...


class NullTracker:
    enabled = False

    def trial_run(self, trial: optuna.Trial, params: ModelParams, study_name: str) -> NullTrialRun:
        return NullTrialRun()


class TrialRun:
    def __init__(self, tracker: MlflowTracker, trial: optuna.Trial, params: ModelParams, study_name: str):
        from mlflow.entities import Param

        self._tracker = tracker
        self._client = tracker.client
        self.errors: list[str] = []
        self.run_id: str | None = None
        tags = {
            "study_name": study_name,
            "trial_number": str(trial.number),
            "trial_state": "RUNNING",
            "worker": worker_id(),
            "mlflow.source.name": "search",
        }
        retry_of = retried_trial_number(trial)
        if retry_of is not None:
            tags["retry_of_trial"] = str(retry_of)

        def start() -> None:
            run = self._client.create_run(tracker.experiment_id, run_name=f"trial-{trial.number}", tags=tags)
            self.run_id = run.info.run_id
            self._client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.to_dict().items()
                                                         if k in trial.params or k != "regularizer_strength"])

        self._safe("start run", start)

    def _safe(self, what: str, fn: Callable[[], Any]) -> None:
        # After the first failure this trial stops talking to the server: one timeout, not one per epoch.
        if self.errors or (what != "start run" and self.run_id is None):
            return
        try:
            fn()
        except Exception as exc:  # any client/server/network error: record and go on
            message = mask_text(f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                                self._tracker.uri)
            log.warning("tracking error (training continues): %s", message)
            self.errors.append(message[:500])

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, epoch) for k, v in logs.items() if isinstance(v, (int, float))]
        self._safe("log epoch", lambda: self._client.log_batch(self.run_id, metrics=metrics))

    def log_params(self, values: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self._safe("log params", lambda: self._client.log_batch(
            self.run_id, params=[Param(k, str(v)) for k, v in values.items()]))

    def log_bundle(self, directory: Path) -> None:
        self._safe("log artifacts", lambda: self._client.log_artifacts(self.run_id, str(directory)))

    def log_keras_model(self, model: Any) -> None:
        self._safe("log keras model", lambda: self._tracker.log_keras_model(self.run_id, model))

    def finish(self, state: str, metrics: dict[str, float], fail_reason: str | None = None) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        tags = [RunTag("trial_state", state)]
        if fail_reason:
            tags.append(RunTag("fail_reason", fail_reason[:5000]))
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        self._safe("finish run", lambda: (
            self._client.log_batch(self.run_id, metrics=batch, tags=tags),
            self._client.set_terminated(self.run_id, "FAILED" if state == "FAIL" else "FINISHED"),
        ))


class MlflowTracker:
    """Connection to one tracking server/store and the study's experiment."""

    enabled = True

    def __init__(self, uri: str | None, experiment_name: str, artifact_root: str | None = None,
                 *, read_only: bool = False):
        import mlflow
        from mlflow import MlflowClient

        for key, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.uri = resolve_tracking_uri(uri)
        # The database file of a local SQLite store (None for a server or another backend).
        self._db = Path(self.uri.removeprefix("sqlite:///")) if self.uri.startswith("sqlite:///") else None
        if self._db is not None:
            db = self._db
            if read_only and not db.is_file():
                # pull/predict read a store: a mistyped path must not create an empty one.
                raise TrackingError(f"tracking store {self.uri}: no such database file {db}")
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TrackingError(f"tracking store {self.uri}: cannot create {db.parent} ({exc.strerror})") \
                    from None
        self.experiment_name = experiment_name
        if artifact_root is None:
            # Artifacts of a SQLite store live next to its database (the default store gives
            # mlruns/artifacts), not under the working directory of whoever created the experiment.
            artifact_root = str(self._db.parent / "artifacts") if self._db is not None else DEFAULT_ARTIFACT_ROOT
        self.artifact_root = artifact_root
        # mlflow.keras.log_model is only offered through MLflow's fluent API, which reads
        # the process-wide tracking URI; this adapter is the one place that sets it.
        mlflow.set_tracking_uri(self.uri)
        self.client = self._schema_retry(lambda: MlflowClient(tracking_uri=self.uri, registry_uri=self.uri))
        self._experiment_id: str | None = None

    def _schema_retry(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; on a local database store retry while another process creates its schema.

        The first client on a new store runs MLflow's migrations; a second process doing the
        same at that moment fails on the migration table (``alembic_version``) or on the
        half-built copy a SQLite batch migration makes (``_alembic_tmp_experiments``), and a
        migration under load outlasts any retry. So processes on one host take turns through a
        lock file next to the database; the retry stays for stores on shared file systems.
        """
        for attempt in range(8):
            try:
                with self._schema_lock():
                    return fn()
            except Exception as exc:
                if self.is_remote or attempt == 7:
                    raise TrackingError(f"tracking store {self.masked_uri} unusable: "
                                        f"{describe(exc, self.uri)[:300]}") from None
                time.sleep(0.5 * (attempt + 1))

    @contextlib.contextmanager
    def _schema_lock(self) -> Iterator[None]:
        if self._db is None:
            yield
            return
        import fcntl

        try:
            handle = open(self._db.with_name(self._db.name + ".lock"), "a")  # noqa: SIM115 - closed below
        except OSError:  # a store we may only read: nothing to migrate, nothing to guard
            yield
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def masked_uri(self) -> str:
        return mask_url(self.uri)

    @property
    def is_remote(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    def check_reachable(self, timeout: float = 5.0, wait: float = 0.0) -> None:
        """Fail fast (seconds, not minutes of retries) when the server is down.

        A local store is always reachable; it is not touched here so that nothing is written
        before every start-up check has passed. ``wait`` > 0 retries for that many seconds.
        """
        if not self.is_remote:
            return
        import requests

        deadline = time.monotonic() + wait
        while True:
            try:
                response = requests.get(self.uri.rstrip("/") + "/health", timeout=timeout)
                response.raise_for_status()
                self.client.search_experiments(max_results=1)
                return
            except Exception as exc:
                if time.monotonic() + 2 < deadline:
                    time.sleep(2)
                    continue
                detail = describe(exc, self.uri)[:300]
                raise TrackingError(f"tracking server {self.masked_uri} unreachable: {detail}") from None

    def ensure_experiment(self) -> str:
        """Create the study's experiment once; safe when several processes race."""
        from mlflow.exceptions import MlflowException

        existing = self._schema_retry(lambda: self.client.get_experiment_by_name(self.experiment_name))
        if existing is not None:
            self._experiment_id = existing.experiment_id
            return existing.experiment_id
        location = None
        if not self.is_remote:
            location = Path(self.artifact_root).resolve().as_uri()
        try:
            # The kind tag makes the MLflow UI open the runs table, not its GenAI overview.
            self._experiment_id = self.client.create_experiment(
                self.experiment_name, artifact_location=location,
                tags={"mlflow.experimentKind": "custom_model_development"})
        except MlflowException:
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is None:
                raise
            self._experiment_id = found.experiment_id
        return self._experiment_id

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is None:
                raise TrackingError(f"experiment '{self.experiment_name}' does not exist on "
                                    f"{self.masked_uri}; run `python -m search init` first")
            self._experiment_id = found.experiment_id
        return self._experiment_id

    def pip_requirements(self) -> list[str]:
        from importlib.metadata import version

        names = ["keras", "tensorflow-cpu", "numpy", "pandas", "h5py", "mlflow"]
        return [f"{name}=={version(name)}" for name in names if _installed(name)]

    def trial_run(self, trial: optuna.Trial, params: ModelParams, study_name: str) -> TrialRun:
        return TrialRun(self, trial, params, study_name)

    def log_keras_model(self, run_id: str, model: Any) -> str:
        """Log ``model`` as the run's MLflow model; returns its ``models:/`` URI (also a run tag)."""
        import mlflow
        import mlflow.keras

        with mlflow.start_run(run_id=run_id):
            info = mlflow.keras.log_model(
                model,
                name="model",
                # Explicit requirements skip MLflow's slow dependency inference.
                pip_requirements=self.pip_requirements(),
            )
        self.client.set_tag(run_id, "logged_model_uri", info.model_uri)
        return str(info.model_uri)

    def close_stale_run(self, trial: optuna.trial.FrozenTrial) -> None:
        """A trial whose worker died: its run would stay RUNNING forever; close it as FAILED."""
        from mlflow.entities import RunTag

        run_id = trial.user_attrs.get("mlflow_run_id")
        if not run_id:
            return
        reason = str(trial.user_attrs.get("fail_reason", "worker lost (no heartbeat)"))
        self.client.log_batch(run_id, tags=[RunTag("trial_state", "FAIL"), RunTag("fail_reason", reason[:5000])])
        self.client.set_terminated(run_id, "FAILED")

    # -- study level -------------------------------------------------------------------

    def study_run_id(self, study_name: str) -> str:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.run_type = 'study' and tags.study_name = '{study_name}'",
            max_results=1,
        )
        if runs:
            return runs[0].info.run_id
        run = self.client.create_run(self.experiment_id, run_name=STUDY_RUN_NAME,
                                     tags={"run_type": "study", "study_name": study_name})
        return run.info.run_id

    def refresh_study_summary(self, study: optuna.Study, extra_tags: dict[str, str] | None = None) -> str:
        from mlflow.entities import Metric, RunTag

        from search.storage import count_states

        run_id = self.study_run_id(study.study_name)
        counts = count_states(study)
        now = int(time.time() * 1000)
        step = sum(counts.values())
        metrics = [Metric(f"n_{state.lower()}", float(n), now, step) for state, n in counts.items()]
        tags = [RunTag(k, v) for k, v in (extra_tags or {}).items()]
        summary: dict[str, Any] = {"study_name": study.study_name, "counts": counts}
        for key in ("derived_from_data", "warm_start"):  # how the study's space and first trials were chosen
            value = study.user_attrs.get(key)
            if value:
                tags.append(RunTag(key, json.dumps(value)))
                summary[key] = value
        try:
            best = study.best_trial
        except ValueError:
            best = None
        if best is not None:
            metrics.append(Metric("best_value", float(best.value or 0.0), now, step))
            tags += [RunTag("best_trial", str(best.number)), RunTag("best_params", json.dumps(best.params))]
            summary.update(best_trial=best.number, best_value=best.value, best_params=best.params)
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.client.log_dict(run_id, summary, "summary.json")
        # Closed after every refresh (later refreshes may still log to a finished run): a run
        # left RUNNING would claim a study process is alive when none is.
        self.client.set_terminated(run_id, "FINISHED")
        return run_id


def _installed(dist: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(dist)
    except PackageNotFoundError:
        return False
    return True
