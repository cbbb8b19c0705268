"""Where a new study starts: a baseline trial and the best configurations of earlier studies.

Optuna's ``enqueue_trial`` runs given parameters first; this module decides which parameters
and maps them onto the new study's search space (the space may offer other choices, and the
data-derived ``sequence_length``/``max_features`` mean different numbers on another data set).
"""

from __future__ import annotations

import math
from typing import Any

from search.config import DATA_AWARE, PARAM_KINDS, ParamSpec, StudyConfig
from search.errors import ConfigError, TrackingError
from search.storage import missing_sqlite_file
from search.tracking import resolve_tracking_uri
from search.urls import mask_url

# The hand-tuner's first model (the hand-written BiGRU): generic, not tuned to any one
# data set. Data-dependent sizes take the middle of the study's choices.
BASELINE: dict[str, Any] = {
    "cell": "GRU", "bidirectional": True, "depth": 1, "embedding_dim": 128, "units": 64, "dropout": 0.3,
    "regularizer": "none", "initializer": "glorot_uniform", "optimizer": "adam", "learning_rate": 1e-3,
    "batch_size": 64, "pooling": "mean",
}


# Transfer for a study with no earlier studies of its own: from each of this project's searches
# on other data sets (bench/results/search_imdb.json, search_defaults_reuters.json), the best two
# trials of different architecture (cell, direction, pooling), by best-epoch validation accuracy
# among finished trials. Each entry keeps the data-derived choices it was picked from (so lengths
# and vocabularies map by position) and the SHA-256 of the training file it was found on, so a
# study on that same file does not start from its own answer. Values exactly as found.
# Measured as arm tpe_sh_transfer of bench/efficiency.py (the earlier two-entry table, one
# champion per data set, led the recommended arm only at a quarter of the budget).
_IMDB = {"train_sha256": "9edc558c79a274f935f4583a98be2be5fa2a778e5ffce756c57db825c6b9e776",
         "choices": {"max_features": [14500, 29000, 57551], "sequence_length": [176, 464, 912]}}
_REUTERS = {"train_sha256": "e8cfbc2e4588d632105e2934c70b5914f4a725ad0d0c890fcc350c61e90d7694",
            "choices": {"max_features": [5500, 10500, 21493], "sequence_length": [80, 288, 680]}}
PORTFOLIO: tuple[dict[str, Any], ...] = (
    {"source": "imdb trial 15 (val 0.9038)", **_IMDB,
     "params": {"cell": "GRU", "bidirectional": False, "depth": 1, "embedding_dim": 128, "units": 64,
                "max_features": 14500, "sequence_length": 912, "dropout": 0.20483132917773955,
                "regularizer": "l1l2", "regularizer_strength": 1.2147517717847836e-05,
                "initializer": "glorot_uniform", "optimizer": "rmsprop",
                "learning_rate": 0.003861333186025598, "batch_size": 64, "pooling": "last"}},
    {"source": "reuters46 trial 33 (val 0.8909)", **_REUTERS,
     "params": {"cell": "LSTM", "bidirectional": True, "depth": 1, "embedding_dim": 64, "units": 32,
                "max_features": 10500, "sequence_length": 288, "dropout": 0.2961849597209487,
                "regularizer": "l2", "regularizer_strength": 4.74153550576129e-06,
                "initializer": "he_normal", "optimizer": "adam",
                "learning_rate": 0.003167223196594227, "batch_size": 32, "pooling": "max"}},
    {"source": "imdb trial 6 (val 0.8940)", **_IMDB,
     "params": {"cell": "LSTM", "bidirectional": True, "depth": 1, "embedding_dim": 32, "units": 128,
                "max_features": 57551, "sequence_length": 912, "dropout": 0.2082070641355745,
                "regularizer": "none", "initializer": "glorot_uniform", "optimizer": "rmsprop",
                "learning_rate": 0.0014238477321925373, "batch_size": 64, "pooling": "max"}},
    {"source": "reuters46 trial 21 (val 0.8864)", **_REUTERS,
     "params": {"cell": "GRU", "bidirectional": False, "depth": 1, "embedding_dim": 64, "units": 64,
                "max_features": 10500, "sequence_length": 288, "dropout": 0.492914624244851,
                "regularizer": "l1", "regularizer_strength": 1.63967003864769e-05,
                "initializer": "orthogonal", "optimizer": "adam",
                "learning_rate": 0.003647747617243295, "batch_size": 32, "pooling": "max"}},
)


# Start-up trials as a hand-tuner would run them (`sampler.startup: baseline_neighbours`): the
# baseline with one group of related knobs left to the sampler, which draws them at random
# while TPE is in its start-up. Random start-up trials land anywhere, often in families that
# were poor on every data set searched so far (bench/results/search_*.json: SimpleRNN, depth 2,
# RMSprop well below the others' mean); these explore every dimension, one at a time, next to
# a model that trains. Ordered by the size of those measured effects.
NEIGHBOUR_GROUPS: tuple[tuple[str, ...], ...] = (
    ("pooling",),
    ("cell", "bidirectional"),
    ("learning_rate", "optimizer"),
    ("max_features", "sequence_length"),
    ("embedding_dim", "units"),
    ("dropout", "regularizer", "regularizer_strength"),
    ("batch_size", "initializer", "depth"),
)


def _nearest(value: float, choices: list[Any]) -> Any:
    # Sizes and rates are compared on a log scale (64 is as far from 32 as from 128).
    def distance(c: float) -> float:
        if value > 0 and c > 0:
            return abs(math.log(c) - math.log(value))
        return abs(c - value)

    return min(choices, key=distance)


def map_value(name: str, value: Any, spec: ParamSpec, source_choices: list[Any] | None = None) -> Any:
    """``value`` as a valid suggestion for ``spec``, or None where the space has no counterpart.

    Data-dependent parameters keep their relative position among the source study's choices
    (its 90th-percentile length becomes this data set's 90th-percentile length); other numbers
    go to the nearest choice or are clipped to the range.
    """
    kind = PARAM_KINDS[name][0]
    numeric = kind in ("int", "float") and isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec.value is not None:
        return None  # fixed: nothing to suggest
    if spec.choices is not None:
        same_type = [c for c in spec.choices if type(c) is type(value) or (numeric and kind == "float")]
        if value in same_type:
            return value
        if not numeric:
            return None
        if name in DATA_AWARE and source_choices and value in source_choices and len(source_choices) > 1:
            position = source_choices.index(value) / (len(source_choices) - 1)
            return spec.choices[round(position * (len(spec.choices) - 1))]
        return _nearest(float(value), list(spec.choices))
    if not numeric:
        return None
    assert spec.low is not None and spec.high is not None
    clipped = min(max(float(value), float(spec.low)), float(spec.high))
    if kind == "int":
        step = int(spec.step or 1)
        return int(spec.low) + round((clipped - spec.low) / step) * step
    return clipped


def map_params(params: dict[str, Any], space: dict[str, ParamSpec],
               source_choices: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """The parameters that have a counterpart in ``space``; the sampler draws the others."""
    out = {}
    for name, value in params.items():
        if name not in space:
            continue
        mapped = map_value(name, value, space[name], (source_choices or {}).get(name))
        if mapped is not None:
            out[name] = mapped
    if out.get("regularizer") == "none":
        out.pop("regularizer_strength", None)
    return out


def baseline_params(space: dict[str, ParamSpec]) -> dict[str, Any]:
    middle = {name: sorted(space[name].choices)[len(space[name].choices) // 2]  # type: ignore[arg-type]
              for name in DATA_AWARE if name in space and space[name].choices}
    return map_params({**BASELINE, **middle}, space)


def neighbour_params(baseline: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Up to ``n`` copies of ``baseline``, each without one NEIGHBOUR_GROUPS group (a group
    the space fixes, absent from the baseline, is skipped: nothing would be left to draw)."""
    neighbours = [{k: v for k, v in baseline.items() if k not in group}
                  for group in NEIGHBOUR_GROUPS if any(name in baseline for name in group)]
    return neighbours[:max(n, 0)]  # n is -1 when TPE has no start-up trials: none then


def portfolio_params(space: dict[str, ParamSpec], train_sha256: str) -> list[dict[str, Any]]:
    """The PORTFOLIO mapped onto ``space``, without entries found on this very training file."""
    return [map_params(entry["params"], space, entry["choices"]) for entry in PORTFOLIO
            if entry["train_sha256"] != train_sha256]


def _from_study(name: str, url: str, top_k: int) -> list[tuple[dict[str, Any], dict[str, list[Any]]]]:
    import optuna

    from search.storage import make_storage, study_exists

    if missing_sqlite_file(url):
        raise ConfigError(f"warm_start.studies: no study '{name}' ({mask_url(url)} does not exist)")
    storage = make_storage(url)
    if not study_exists(storage, name):
        raise ConfigError(f"warm_start.studies: no study '{name}' in {mask_url(url)}")
    study = optuna.load_study(study_name=name, storage=storage)
    trials = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
              if t.value is not None]
    trials.sort(key=lambda t: t.value, reverse=True)  # type: ignore[arg-type, return-value]
    out = []
    for t in trials[:top_k]:
        choices = {k: list(d.choices) for k, d in t.distributions.items()
                   if isinstance(d, optuna.distributions.CategoricalDistribution)}
        out.append((dict(t.params), choices))
    return out


def _parse(name: str, text: str) -> Any:
    kind = PARAM_KINDS[name][0]
    if kind == "bool":
        return text == "True"
    if kind == "int":
        return int(float(text))
    if kind == "float":
        return float(text)
    return text


def _from_experiment(name: str, uri: str, top_k: int) -> list[tuple[dict[str, Any], dict[str, list[Any]]]]:
    from mlflow.tracking import MlflowClient

    if missing_sqlite_file(uri):
        raise ConfigError(f"warm_start.experiments: no experiment '{name}' ({mask_url(uri)} does not exist)")
    client = MlflowClient(tracking_uri=uri)
    try:
        experiment = client.get_experiment_by_name(name)
        runs = [] if experiment is None else client.search_runs(
            [experiment.experiment_id], filter_string="tags.trial_state = 'COMPLETE'",
            order_by=["metrics.best_val_accuracy DESC"], max_results=top_k)
    except Exception as exc:  # unreachable server, refused request: one line, the URI masked
        raise TrackingError(f"warm_start.experiments: tracking {mask_url(uri)} unreachable: "
                            f"{type(exc).__name__}") from None
    if experiment is None:
        raise ConfigError(f"warm_start.experiments: no experiment '{name}' on {mask_url(uri)}")
    return [({k: _parse(k, v) for k, v in run.data.params.items() if k in PARAM_KINDS}, {}) for run in runs]


def warm_start_params(config: StudyConfig) -> list[dict[str, Any]]:
    """Parameters to enqueue, in order: the config's ``enqueue``, the best configurations of the
    ``warm_start`` sources (mapped onto this space), the portfolio, the baseline and its
    neighbours (TPE studies, each if on)."""
    ws = config.warm_start
    for i, entry in enumerate(config.enqueue):
        for name, value in entry.items():
            offered = config.search_space[name].values if name in config.search_space else None
            # Optuna runs an out-of-range float as given, but a categorical value that is not
            # offered fails the trial; data-derived choices are only known here.
            if offered is not None and not any(type(v) is type(value) and v == value for v in offered):
                raise ConfigError(f"enqueue[{i}].{name}: {value!r} is not one of the search space's choices "
                                  f"{offered}")
    candidates: list[dict[str, Any]] = [dict(p) for p in config.enqueue]
    sources: list[tuple[dict[str, Any], dict[str, list[Any]]]] = []
    for name in ws.studies:
        if name == config.study_name:
            raise ConfigError(f"warm_start.studies: '{name}' is this study")
        sources += _from_study(name, ws.storage or config.storage_url, ws.top_k)
    for name in ws.experiments:
        sources += _from_experiment(name, resolve_tracking_uri(config.tracking.uri), ws.top_k)
    candidates += [map_params(params, config.search_space, choices) for params, choices in sources]
    if config.sampler.runs_portfolio:
        from data_pipeline.prepare import file_digest

        candidates += portfolio_params(config.search_space, file_digest(config.data.train_file))
    if config.sampler.runs_baseline:
        baseline = baseline_params(config.search_space)
        candidates.append(baseline)
        if config.sampler.runs_neighbours:
            # The baseline is one of TPE's start-up trials; the neighbours fill the rest.
            candidates += neighbour_params(baseline, config.sampler.n_startup_trials - 1)
    unique, seen = [], set()
    for params in candidates:
        key = tuple(sorted(params.items()))
        if params and key not in seen:
            seen.add(key)
            unique.append(params)
    return unique
