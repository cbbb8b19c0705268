"""Creating and loading the Optuna study described by a config."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import optuna

from search.config import StudyConfig
from search.identity import worker_id
from search.space import grid_space
from search.storage import StorageError, make_storage, missing_sqlite_file, study_exists
from search.warm_start import warm_start_params

log = logging.getLogger(__name__)


def sampler_seed(seed: int | None, n_existing: int, stream: str | None = None) -> int | None:
    """The sampler's seed: offset by the trials already in the study, and per worker stream.

    A resumed study must not replay the same random start-up points (offset), a fresh
    single-process study with the same seed repeats exactly (no stream), and N workers that
    start at the same instant with the same config must not propose the same points: each
    worker mixes its own name (host:pid) into the seed.
    """
    if seed is None:
        return None
    if stream is None:
        return seed + n_existing
    digest = hashlib.sha256(f"{seed}:{n_existing}:{stream}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def build_sampler(config: StudyConfig, n_existing: int = 0, stream: str | None = None) -> optuna.samplers.BaseSampler:
    seed = sampler_seed(config.seed, n_existing, stream)
    sampler = config.sampler
    if sampler.type == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if sampler.type == "grid":
        return optuna.samplers.GridSampler(grid_space(config.search_space), seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=sampler.n_startup_trials,
        multivariate=sampler.multivariate,
        group=sampler.multivariate,
        # Parallel workers: running trials count as if they scored badly, so TPE does not
        # propose the point another worker is already training (Optuna's documented remedy).
        constant_liar=stream is not None,
    )


def build_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    pruner = config.pruner
    if pruner.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=pruner.n_startup_trials,
                                           n_warmup_steps=pruner.n_warmup_steps)
    if pruner.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=pruner.min_resource,
                                              max_resource=config.training.max_epochs,
                                              reduction_factor=pruner.reduction_factor)
    if pruner.type == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=pruner.min_resource,
                                                      reduction_factor=pruner.reduction_factor)
    return optuna.pruners.NopPruner()


def _has_trials(storage: optuna.storages.BaseStorage, study_name: str) -> bool:
    if not study_exists(storage, study_name):
        return False
    return bool(storage.get_all_trials(storage.get_study_id_from_name(study_name), deepcopy=False))


def first_trials(config: StudyConfig) -> list[dict[str, Any]] | None:
    """What a new study runs first (``warm_start_params``), read without writing anything; None
    when the study already has trials (resumed: that was decided when it was created)."""
    url = config.storage_url
    if not missing_sqlite_file(url) and _has_trials(make_storage(url), config.study_name):
        return None
    return warm_start_params(config)


def create_study(config: StudyConfig, *, heartbeat: bool = True,
                 first: list[dict[str, Any]] | None = None) -> optuna.Study:
    """Create the study (or load it if it exists) and enqueue what runs first in a new study:
    ``first`` if given, else ``warm_start_params`` (``enqueue``, the best of the ``warm_start``
    sources, the baseline).

    Call this from one process only: concurrent ``create_study`` races on every backend.
    """
    storage = make_storage(config.storage_url, config.worker if heartbeat else None)
    if first is None and not _has_trials(storage, config.study_name):
        first = warm_start_params(config)  # a bad source fails before the study exists
    study = optuna.create_study(
        storage=storage,
        study_name=config.study_name,
        direction="maximize",
        sampler=build_sampler(config),
        pruner=build_pruner(config),
        load_if_exists=True,
    )
    n = len(study.get_trials(deepcopy=False))
    if n:
        study.sampler = build_sampler(config, n)
        # Resumed: warm starts and the baseline were decided at creation; entries added to
        # `enqueue` since then still run (skip_if_exists keeps re-runs from queueing twice).
        for params in config.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
        return study
    study.set_metric_names(["val_accuracy"])
    if config.derived_from_data:
        study.set_user_attr("derived_from_data", config.derived_from_data)
    queued = first if first is not None else warm_start_params(config)  # trials vanished meanwhile
    for params in queued:
        # skip_if_exists: two `init`s racing on one new study never queue the same start twice.
        study.enqueue_trial(params, skip_if_exists=True)
    study.set_user_attr("warm_start", {"queued": len(queued), "studies": config.warm_start.studies,
                                       "experiments": config.warm_start.experiments,
                                       "weights": config.warm_start.weights_origin or config.warm_start.weights,
                                       "baseline_trial": config.sampler.runs_baseline,
                                       "portfolio": config.sampler.runs_portfolio,
                                       "neighbours": config.sampler.runs_neighbours})
    return study


def load_study(config: StudyConfig, *, heartbeat: bool = True) -> optuna.Study:
    """Load an existing study (workers never create one)."""
    storage = make_storage(config.storage_url, config.worker if heartbeat else None)
    if not study_exists(storage, config.study_name):
        raise StorageError(f"study '{config.study_name}' does not exist in the storage; "
                           "run `python -m search init` first")
    study = optuna.load_study(study_name=config.study_name, storage=storage, pruner=build_pruner(config))
    study.sampler = build_sampler(config, len(study.get_trials(deepcopy=False)), stream=worker_id())
    return study
