"""Turns a config's search space into Optuna suggestions."""

from __future__ import annotations

from typing import Any

import optuna

from models.params import ModelParams
from search.config import PARAM_KINDS, ParamSpec


def suggest(trial: optuna.Trial, name: str, spec: ParamSpec) -> Any:
    values = spec.values
    if values is not None:
        return trial.suggest_categorical(name, values)
    assert spec.low is not None and spec.high is not None
    if PARAM_KINDS[name][0] == "int":
        step = int(spec.step) if spec.step is not None else 1
        return trial.suggest_int(name, int(spec.low), int(spec.high), step=step, log=spec.log)
    return trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log)


def sample_params(trial: optuna.Trial, space: dict[str, ParamSpec]) -> ModelParams:
    """Sample every parameter; ``regularizer_strength`` only when a regularizer is chosen."""
    values: dict[str, Any] = {}
    for name, spec in space.items():
        if name == "regularizer_strength":
            continue
        values[name] = suggest(trial, name, spec)
    if values["regularizer"] != "none":
        values["regularizer_strength"] = suggest(trial, "regularizer_strength", space["regularizer_strength"])
    return ModelParams.from_dict(values)


def grid_space(space: dict[str, ParamSpec]) -> dict[str, list[Any]]:
    """The search space as GridSampler wants it (finite lists only)."""
    grid = {name: spec.values for name, spec in space.items() if spec.values is not None}
    return {name: list(values) for name, values in grid.items() if values is not None}
