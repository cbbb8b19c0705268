"""Sampling without training: seeded reproducibility, resume offsets, grid, conditional params."""

from __future__ import annotations

from pathlib import Path

import optuna

from search.config import parse_config
from search.signals import GracefulStop
from search.space import sample_params
from search.study import create_study
from search.worker import run_worker
from tests.conftest import tiny_config


def sampled_sequence(tmp: Path, files: dict[str, Path], n: int, **overrides: object) -> list[dict]:
    config = parse_config(tiny_config(tmp, files, **overrides))
    study = create_study(config, heartbeat=False)
    out = []
    for _ in range(n):
        trial = study.ask()
        params = sample_params(trial, config.search_space)
        study.tell(trial, params.units / 10 + params.learning_rate)  # deterministic value
        out.append(trial.params)
    return out


def test_seed_reproduces_the_parameter_sequence(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    a = sampled_sequence(tmp_path / "a", tiny_files, 6)
    b = sampled_sequence(tmp_path / "b", tiny_files, 6)
    c = sampled_sequence(tmp_path / "c", tiny_files, 6, seed=8)
    assert a == b
    assert a != c


def test_resumed_study_does_not_replay_startup_points(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    first = sampled_sequence(tmp_path, tiny_files, 2)
    second = sampled_sequence(tmp_path, tiny_files, 2)  # same storage: resumes
    assert first != second


def test_regularizer_strength_only_when_a_regularizer_is_chosen(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    for params in sampled_sequence(tmp_path, tiny_files, 12, sampler={"type": "random"}):
        assert ("regularizer_strength" in params) == (params["regularizer"] != "none")


def test_grid_sampler_walks_the_grid(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    config = tiny_config(tmp_path, tiny_files, sampler={"type": "grid"})
    space = {name: {"value": spec["choices"][0]} if "choices" in spec else spec
             for name, spec in config["search_space"].items()}
    space["cell"] = {"choices": ["SimpleRNN", "GRU", "LSTM"]}
    space["units"] = {"choices": [4, 8]}
    space["learning_rate"] = {"value": 0.01}
    space["regularizer"] = {"value": "none"}
    space["pooling"] = {"value": "last"}
    config["search_space"] = space
    parsed = parse_config(config)
    study = create_study(parsed, heartbeat=False)
    seen = []

    def objective(trial: optuna.Trial) -> float:
        params = sample_params(trial, parsed.search_space)
        seen.append((params.cell, params.units))
        return 0.5

    stop = GracefulStop()
    ran = run_worker(study, objective, target=None, n_trials=20, stop=stop)
    assert ran == 6 and len(set(seen)) == 6  # the loop ends when the 3 x 2 grid is exhausted
    assert isinstance(study.sampler, optuna.samplers.GridSampler)


def test_each_worker_gets_its_own_sampler_stream() -> None:
    from search.study import sampler_seed

    assert sampler_seed(7, 3) == 10  # single process: seed offset by existing trials (reproducible)
    assert sampler_seed(None, 3, "host:1") is None
    streams = {sampler_seed(7, 0, f"host:{pid}") for pid in range(1, 50)}
    assert len(streams) == 49 and sampler_seed(7, 0, "host:1") == sampler_seed(7, 0, "host:1")


def _rung_study(tmp: Path, files: dict[str, Path], pruner: dict, max_epochs: int = 9) -> optuna.Study:
    """Eight trials that report one epoch at 0.9, through the config's real pruner."""
    config = parse_config(tiny_config(tmp, files, pruner=pruner, training={"max_epochs": max_epochs, "patience": 0}))
    study = create_study(config, heartbeat=False)
    for _ in range(8):
        trial = study.ask()
        sample_params(trial, config.search_space)
        trial.report(0.9, 1)
        trial.should_prune()  # as KerasPruningCallback does: records the trial's rung value
        study.tell(trial, 0.9)
    return study


def test_successive_halving_prunes_at_its_rung_and_shows_the_sampler_every_trial(
        tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    study = _rung_study(tmp_path / "sha", tiny_files, {"type": "successive_halving", "min_resource": 1,
                                                        "reduction_factor": 3})
    assert isinstance(study.pruner, optuna.pruners.SuccessiveHalvingPruner)
    bad = study.ask()
    sample_params(bad, parse_config(tiny_config(tmp_path, tiny_files)).search_space)
    bad.report(0.5, 1)
    assert bad.should_prune()  # worst at the first rung (1 epoch) among 9
    # One bracket: what the sampler sees is the whole study.
    assert optuna.pruners._filter_study(study, study.trials[-1]) is study

    hyperband = _rung_study(tmp_path / "hb", tiny_files, {"type": "hyperband", "min_resource": 1,
                                                          "reduction_factor": 3})
    seen = optuna.pruners._filter_study(hyperband, hyperband.trials[-1]).get_trials(deepcopy=False)
    assert len(seen) < len(hyperband.trials)  # 9 epochs / factor 3: 3 brackets, TPE sees one


def test_min_resource_default_depends_on_the_pruner(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    def sees_whole_study(name: str, pruner: dict) -> bool:
        study = _rung_study(tmp_path / name, tiny_files, pruner, max_epochs=5)
        seen = optuna.pruners._filter_study(study, study.trials[-1]).get_trials(deepcopy=False)
        return len(seen) == len(study.trials)

    base = {"study_name": "s", "data": {"train_file": "x.txt"}}
    assert parse_config(base).pruner.min_resource == 2  # successive halving
    assert parse_config({**base, "pruner": {"type": "hyperband"}}).pruner.min_resource == 1
    assert parse_config({**base, "pruner": {"type": "hyperband", "min_resource": 2}}).pruner.min_resource == 2
    # On 5 epochs Hyperband's default keeps two brackets (1 and 3 epochs to the first rung);
    # min_resource 2 would leave one, so the sampler would see every trial.
    assert not sees_whole_study("default", {"type": "hyperband"})
    assert sees_whole_study("two", {"type": "hyperband", "min_resource": 2})


def test_min_resource_counts_epochs_trained(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    # Real training through the objective's pruning callback. KerasPruningCallback alone
    # reports Keras' 0-based epoch index, which put the first rung after the second epoch.
    from search.objective import Objective

    pruner = {"type": "successive_halving", "min_resource": 1, "reduction_factor": 3}
    study = _rung_study(tmp_path, tiny_files, pruner)  # 8 trials at 0.9 after one epoch
    config = parse_config(tiny_config(tmp_path, tiny_files, pruner=pruner,
                                      training={"max_epochs": 9, "patience": 0}))
    study.optimize(Objective(config), n_trials=1)
    trial = study.trials[-1]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]  # one epoch trained, then pruned at the rung
    assert trial.intermediate_values[1] < 0.9


def test_a_config_without_a_pruner_gets_successive_halving_over_epochs(
        tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    # The measured default (bench/results/efficiency.md); Hyperband would hide trials from TPE.
    raw = tiny_config(tmp_path, tiny_files)
    del raw["pruner"]
    study = create_study(parse_config(raw), heartbeat=False)
    assert isinstance(study.pruner, optuna.pruners.SuccessiveHalvingPruner)
    trial = study.ask()
    assert optuna.pruners._filter_study(study, study._storage.get_trial(trial._trial_id)) is study
