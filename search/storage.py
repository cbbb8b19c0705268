"""Optuna storage adapter: RDB storage (SQLite or PostgreSQL) with heartbeats and retries."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
import sqlalchemy.pool
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from search.config import WorkerConfig
from search.urls import describe, mask_url

log = logging.getLogger(__name__)


class StorageError(RuntimeError):
    """Storage unreachable or unusable; the message is one line with the URL masked."""


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def engine_kwargs(url: str) -> dict[str, Any]:
    if is_sqlite(url):
        # Wait for the write lock instead of failing at once when workers overlap.
        return {"connect_args": {"timeout": 60}}
    # pool_pre_ping replaces connections that died with a database restart. Each worker
    # needs at most two at once (trial loop + heartbeat thread).
    return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2, "pool_recycle": 300}


def is_transient(exc: BaseException | None) -> bool:
    """A lost/refused connection, possibly wrapped by Optuna in StorageInternalError."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _retrying(method, retry_seconds: float):  # type: ignore[no-untyped-def]
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + retry_seconds
        delay = 0.25
        while True:
            try:
                return method(self, *args, **kwargs)
            except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("storage unavailable (%s), retrying in %.1fs", type(exc).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 4.0)

    return wrapper


class ResilientRDBStorage(RDBStorage):
    """RDBStorage that rides out a database restart.

    Optuna's RDBStorage does not retry, and its heartbeat thread dies on the first error,
    which would turn every running trial stale during a PostgreSQL restart. Each storage
    call here retries transient connection errors for up to ``RETRY_SECONDS`` (each call is
    one transaction that was rolled back, so repeating it is safe); ``pool_pre_ping``
    replaces the dead pooled connections.
    """

    RETRY_SECONDS = 90.0


for _name in (
    "create_new_trial", "set_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials",
    "get_study_id_from_name", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_trial_id_from_study_id_trial_number", "get_best_trial", "record_heartbeat",
    "_get_stale_trial_ids", "check_trial_is_updatable", "get_trial_params",
):
    setattr(ResilientRDBStorage, _name, _retrying(getattr(RDBStorage, _name), ResilientRDBStorage.RETRY_SECONDS))


def make_storage(url: str, worker: WorkerConfig | None = None) -> ResilientRDBStorage:
    """Open (and migrate) the storage; fail fast with a one-line error if unreachable."""
    if is_sqlite(url):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    heartbeat: dict[str, Any] = {}
    if worker is not None and worker.heartbeat_interval:
        heartbeat = {
            "heartbeat_interval": worker.heartbeat_interval,
            "grace_period": worker.grace_period or 2 * worker.heartbeat_interval,
            "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=worker.max_retry),
        }
    try:
        return ResilientRDBStorage(url, engine_kwargs=engine_kwargs(url), **heartbeat)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        raise StorageError(f"storage {mask_url(url)} unreachable: {describe(exc, url)}") from None


def check_reachable(url: str, timeout: int = 5) -> None:
    """Connect once without creating anything (SQLite: the directory must be creatable)."""
    if is_sqlite(url):
        return
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": timeout},
                                          poolclass=sqlalchemy.pool.NullPool)
        with engine.connect():
            pass
        engine.dispose()
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        raise StorageError(f"storage {mask_url(url)} unreachable: {describe(exc, url)}") from None


def study_exists(storage: RDBStorage, study_name: str) -> bool:
    try:
        storage.get_study_id_from_name(study_name)
    except KeyError:
        return False
    return True


def count_states(study: optuna.Study) -> dict[str, int]:
    counts = {state.name: 0 for state in optuna.trial.TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] += 1
    return counts
