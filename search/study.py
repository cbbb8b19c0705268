"""Creating and loading the Optuna study described by a config."""

from __future__ import annotations

import logging

import optuna

from search.config import StudyConfig
from search.space import grid_space
from search.storage import StorageError, make_storage, study_exists

log = logging.getLogger(__name__)


def build_sampler(config: StudyConfig, n_existing: int = 0) -> optuna.samplers.BaseSampler:
    # Offset the seed by the trials already in the study: a resumed study must not replay
    # the same random start-up points, and a fresh study with the same seed repeats exactly.
    seed = None if config.seed is None else config.seed + n_existing
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
    return optuna.pruners.NopPruner()


def create_study(config: StudyConfig, *, heartbeat: bool = True) -> optuna.Study:
    """Create the study (or load it if it exists) and enqueue the warm-start configs.

    Call this from one process only: concurrent ``create_study`` races on every backend.
    """
    storage = make_storage(config.storage_url, config.worker if heartbeat else None)
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
    study.set_metric_names(["val_accuracy"])
    for params in config.enqueue:
        # skip_if_exists: re-running `init`/`run` never queues the same warm start twice.
        study.enqueue_trial(params, skip_if_exists=True)
    return study


def load_study(config: StudyConfig, *, heartbeat: bool = True) -> optuna.Study:
    """Load an existing study (workers never create one)."""
    storage = make_storage(config.storage_url, config.worker if heartbeat else None)
    if not study_exists(storage, config.study_name):
        raise StorageError(f"study '{config.study_name}' does not exist in the storage; "
                           "run `python -m search init` first")
    study = optuna.load_study(study_name=config.study_name, storage=storage, pruner=build_pruner(config))
    study.sampler = build_sampler(config, len(study.get_trials(deepcopy=False)))
    return study
