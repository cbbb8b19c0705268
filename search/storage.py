"""Optuna storage adapter: RDB storage (SQLite or PostgreSQL) with heartbeats and retries."""

from __future__ import annotations

import copy
import functools
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
import sqlalchemy.pool
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from search.config import WorkerConfig
from search.errors import StorageError
from search.urls import describe, mask_url

log = logging.getLogger(__name__)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def engine_kwargs(url: str) -> dict[str, Any]:
    if is_sqlite(url):
        # Wait for the write lock instead of failing at once when workers overlap.
        return {"connect_args": {"timeout": 60}}
    # pool_pre_ping replaces connections that died with a database restart. Each worker
    # needs at most two at once (trial loop + heartbeat thread).
    return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2, "pool_recycle": 300}


def begin_immediate(engine: sqlalchemy.engine.Engine) -> None:
    """Every SQLite transaction of ``engine`` takes the write lock when it begins.

    Optuna claims a queued trial by reading it with SELECT ... FOR UPDATE and then setting it
    RUNNING. SQLite ignores FOR UPDATE, and its default (deferred) transactions let two
    workers both read WAITING and both run the same trial (seen on the IMDB bench: two
    "trial-0" runs). BEGIN IMMEDIATE serializes the read-then-write; the 60 s busy timeout
    covers the wait. SQLAlchemy's documented pysqlite recipe: the driver's own implicit
    BEGIN is switched off and the engine emits one.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the hooks (schema creation) are not reused


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

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        if is_sqlite(url):
            begin_immediate(self.engine)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # Optuna fails stale trials without a word of why, and a FAIL trial can no longer take
        # user attrs. Every path that fails stale trials (our worker loop, Optuna's optimize)
        # asks this method first, while the trials are still RUNNING: record the reason here.
        stale = _retrying(RDBStorage._get_stale_trial_ids, self.RETRY_SECONDS)(self, study_id)
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        for trial_id in stale:
            try:
                worker = self.get_trial(trial_id).user_attrs.get("worker", "unknown worker")
                self.set_trial_user_attr(trial_id, "fail_reason",
                                         f"worker lost: {worker} sent no heartbeat for over {grace} s")
            except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
                pass  # another process got there first
        return stale


for _name in (
    "create_new_trial", "set_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials",
    "get_study_id_from_name", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_trial_id_from_study_id_trial_number", "get_best_trial", "record_heartbeat",
    "check_trial_is_updatable", "get_trial_params",
):
    setattr(ResilientRDBStorage, _name, _retrying(getattr(RDBStorage, _name), ResilientRDBStorage.RETRY_SECONDS))


class StaleTrialCallback(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a stale trial, plus hooks (the MLflow adapter closes the trial's run)."""

    def __init__(self, max_retry: int | None) -> None:
        super().__init__(max_retry=max_retry)
        self.hooks: list[Callable[[optuna.trial.FrozenTrial], None]] = []

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        for hook in self.hooks:
            try:
                hook(trial)
            except Exception as exc:  # a tracking hiccup must not stop the retry
                log.warning("stale-trial hook failed for trial %d: %s", trial.number, describe(exc))
        # The retry starts clean: no reason, run or worker of the trial it replaces.
        retry = copy.deepcopy(trial)
        retry.user_attrs = {k: v for k, v in trial.user_attrs.items()
                            if k not in ("fail_reason", "mlflow_run_id", "worker", "tracking_error")}
        super().__call__(study, retry)


def stale_trial_hooks(study: optuna.Study) -> list[Callable[[optuna.trial.FrozenTrial], None]] | None:
    """The hook list of the study's stale-trial callback (None without heartbeats)."""
    # Optuna wraps an RDB storage in a cache: ask through the heartbeat interface it forwards.
    get = getattr(study._storage, "get_heartbeat_stale_trial_callback", None)
    callback = get() if get is not None else None
    return callback.hooks if isinstance(callback, StaleTrialCallback) else None


def make_storage(url: str, worker: WorkerConfig | None = None) -> ResilientRDBStorage:
    """Open (and migrate) the storage; fail fast with a one-line error if unreachable."""
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"storage {url}: cannot create {path.parent} ({exc.strerror})") from None
    heartbeat: dict[str, Any] = {}
    if worker is not None and worker.heartbeat_interval:
        heartbeat = {
            "heartbeat_interval": worker.heartbeat_interval,
            "grace_period": worker.grace_period or 2 * worker.heartbeat_interval,
            "heartbeat_stale_trial_callback": StaleTrialCallback(max_retry=worker.max_retry),
        }
    for attempt in range(6):
        try:
            return ResilientRDBStorage(url, engine_kwargs=engine_kwargs(url), **heartbeat)
        except sqlalchemy.exc.IntegrityError:
            # Another process is creating the same schema right now (two `run`s on a new
            # SQLite file): once it is done, opening succeeds.
            if attempt == 5:
                raise StorageError(f"storage {mask_url(url)}: its schema is being created by another process; "
                                   "retry in a moment") from None
            time.sleep(0.5 * (attempt + 1))
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            state = "unreachable" if is_transient(exc) or isinstance(exc, ImportError) else "unusable"
            raise StorageError(f"storage {mask_url(url)} {state}: {describe(exc, url)}") from None
    raise AssertionError("not reached")


def check_reachable(url: str, timeout: int = 5, wait: float = 0.0, must_exist: bool = False) -> None:
    """Connect once without creating anything (SQLite: the directory must be creatable).

    ``wait`` > 0 retries refused/lost connections for that many seconds (a database that is
    still starting, as in a freshly started container stack); other errors fail at once.
    """
    if is_sqlite(url):
        check_sqlite_path(url, must_exist=must_exist)
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": timeout},
                                              poolclass=sqlalchemy.pool.NullPool)
            with engine.connect():
                pass
            engine.dispose()
            return
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            if is_transient(exc) and time.monotonic() + 2 < deadline:
                log.warning("storage %s not reachable yet; retrying", mask_url(url))
                time.sleep(2)
                continue
            raise StorageError(f"storage {mask_url(url)} unreachable: {describe(exc, url)}") from None


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for in-memory)."""
    path = url.split(":///", 1)[-1] if ":///" in url else ""
    return None if not path or path == ":memory:" else Path(path)


def missing_sqlite_file(url: str) -> bool:
    """A ``sqlite:///`` URL whose file does not exist (opening it would create an empty database)."""
    path = sqlite_path(url) if is_sqlite(url) else None
    return path is not None and not path.is_file()


def check_sqlite_path(url: str, must_exist: bool = False) -> None:
    """Fail before anything is written: the file must be writable or creatable (or exist, for readers)."""
    path = sqlite_path(url)
    if path is None:
        return
    if path.exists():
        if path.is_dir() or not os.access(path, os.R_OK | os.W_OK):
            raise StorageError(f"storage {url}: {path} is not a writable file")
        return
    if must_exist:
        raise StorageError(f"storage {url}: no such database file {path}")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:
        # A probe file that deletes itself: permission bits say nothing for root or read-only mounts.
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError:
        raise StorageError(f"storage {url}: cannot create {path} ({ancestor} is not a writable directory)") \
            from None


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
