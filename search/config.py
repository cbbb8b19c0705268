"""The study configuration: one object from the YAML file to every trial.

Validation is strict (unknown keys, wrong types, empty choices, low > high) and every error
is reported as one line naming the file and the key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from data_pipeline import DataSpec
from models.params import CELLS, INITIALIZERS, OPTIMIZERS, POOLINGS, REGULARIZERS, ModelParams, limit_problem
from search.errors import ConfigError
from search.urls import describe

__all__ = ["ConfigError", "StudyConfig", "load_config", "parse_config"]


# Parameter name -> (kind, allowed categorical values or None). The names are fixed: they
# are the Optuna parameter names and become MLflow param names.
PARAM_KINDS: dict[str, tuple[str, tuple[Any, ...] | None]] = {
    "cell": ("str", CELLS),
    "bidirectional": ("bool", (True, False)),
    "depth": ("int", None),
    "embedding_dim": ("int", None),
    "units": ("int", None),
    "max_features": ("int", None),
    "sequence_length": ("int", None),
    "dropout": ("float", None),
    "regularizer": ("str", REGULARIZERS),
    "regularizer_strength": ("float", None),
    "initializer": ("str", INITIALIZERS),
    "optimizer": ("str", OPTIMIZERS),
    "learning_rate": ("float", None),
    "batch_size": ("int", None),
    "pooling": ("str", POOLINGS),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Strict):
    """One search-space entry: ``choices``, a ``low``/``high`` range, or a fixed ``value``."""

    choices: list[Any] | None = None
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    value: Any = None

    @model_validator(mode="after")
    def _one_form(self) -> ParamSpec:
        forms = [self.choices is not None, self.low is not None or self.high is not None, self.value is not None]
        if sum(forms) != 1:
            raise ValueError("give exactly one of 'choices', 'low'/'high', or 'value'")
        if self.choices is not None and len(self.choices) == 0:
            raise ValueError("'choices' is empty")
        if forms[1]:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both 'low' and 'high'")
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) > high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError("a log range needs low > 0")
            if self.log and self.step is not None:
                raise ValueError("'step' cannot be combined with 'log'")
        return self

    @property
    def values(self) -> list[Any] | None:
        """The finite value list (choices or fixed value), None for ranges."""
        if self.choices is not None:
            return list(self.choices)
        if self.value is not None:
            return [self.value]
        return None


DEFAULT_SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "cell": {"choices": list(CELLS)},
    "bidirectional": {"choices": [True, False]},
    "depth": {"low": 1, "high": 2},
    "embedding_dim": {"choices": [32, 64, 128]},
    "units": {"choices": [16, 32, 64, 128]},
    # Few distinct values of these two keep the number of vectorized data sets (and the
    # disk cache) small.
    "max_features": {"choices": [2000, 5000, 10000, 20000]},
    "sequence_length": {"choices": [100, 200, 400]},
    "dropout": {"low": 0.0, "high": 0.5},
    "regularizer": {"choices": list(REGULARIZERS)},
    # Above 1e-4 an L1/L1L2 penalty on every weight held models at chance level in the
    # defaults-only studies (bench/results/search_defaults_*.json), and below 3e-4 the learning
    # rate left 6-epoch trials underfitted.
    "regularizer_strength": {"low": 1e-7, "high": 1e-4, "log": True},
    "initializer": {"choices": ["random_normal", "glorot_uniform", "he_normal", "orthogonal"]},
    "optimizer": {"choices": list(OPTIMIZERS)},
    "learning_rate": {"low": 3e-4, "high": 1e-2, "log": True},
    "batch_size": {"choices": [32, 64, 128]},
    "pooling": {"choices": list(POOLINGS)},
}


# Left out of a config, these two take their choices from the training data.
DATA_AWARE = ("sequence_length", "max_features")


def data_aware_choices(stats: Any) -> dict[str, list[int]]:
    """Choices for the data-dependent parameters from a data set's statistics.

    sequence_length: the 50th, 90th and 99th percentile of tokens per text, rounded up to 8
    (with length-bucketed batches a longer cap only costs on the texts that are that long).
    max_features: a quarter, half and all of the tokens seen at least twice, plus padding and
    OOV, from 1,000 up to 100,000.
    """
    lengths = sorted({max(8, min(20_000, -(-int(v) // 8) * 8)) for v in stats.token_percentiles.values()})
    top = max(1_000, min(100_000, stats.vocabulary_min2 + 2))
    vocab = sorted({v for v in (max(1_000, round(top * f / 500) * 500) for f in (0.25, 0.5)) if v < top} | {top})
    return {"sequence_length": lengths, "max_features": vocab}


def _check_value(name: str, value: Any) -> None:
    kind, allowed = PARAM_KINDS[name]
    ok = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
    }[kind]
    if not ok:
        raise ValueError(f"{value!r} is not {'an' if kind == 'int' else 'a'} {kind}")
    if allowed is not None and value not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(map(str, allowed))}")
    problem = limit_problem(name, value) if kind in ("int", "float") else None
    if problem:
        raise ValueError(problem)


class SamplerConfig(_Strict):
    type: Literal["tpe", "random", "grid"] = "tpe"
    n_startup_trials: int = Field(8, ge=0)
    # Multivariate TPE models the parameters jointly (cell x units x learning rate interact).
    multivariate: bool = True
    # TPE studies run a generic hand-tuner's model first (search/warm_start.py: BASELINE), so the
    # search starts where tuning by hand would and only has to improve on it.
    baseline_trial: bool = True
    # Opt-in: the best of earlier searches on other data sets (search/warm_start.py: PORTFOLIO)
    # run before the baseline, mapped onto this space. Off by default: on Amazon
    # (bench/results/efficiency.md, tpe_sh_transfer, 5 seeds) it ties the default (0.8566 against
    # 0.8580 at the full budget, 0.8496 against 0.8504 on test) and is slower to random search's
    # best (0.579 of the budget against 0.527).
    portfolio: bool = False
    # What TPE's start-up trials after the baseline are: `random` (Optuna's), or
    # `baseline_neighbours`: the baseline with one group of knobs left to the sampler each
    # (search/warm_start.py: NEIGHBOUR_GROUPS), the hand-tuner's one-change-at-a-time moves.
    # Not the default: on the efficiency bench (tpe_sh_neighbours, 5 seeds) it led at 25 % of
    # the budget and trailed at 100 % (0.8532 vs 0.8580): TPE then stayed next to the baseline.
    startup: Literal["random", "baseline_neighbours"] = "random"

    @model_validator(mode="after")
    def _neighbours_need_a_baseline(self) -> SamplerConfig:
        if self.startup == "baseline_neighbours" and not self.runs_baseline:
            raise ValueError("startup: baseline_neighbours needs type: tpe and baseline_trial: true")
        return self

    @property
    def runs_baseline(self) -> bool:
        return self.type == "tpe" and self.baseline_trial

    @property
    def runs_neighbours(self) -> bool:
        return self.runs_baseline and self.startup == "baseline_neighbours"

    @property
    def runs_portfolio(self) -> bool:
        return self.type == "tpe" and self.portfolio


class PrunerConfig(_Strict):
    # Successive halving over epochs (asynchronous, ASHA): Hyperband's first bracket alone. With
    # Hyperband Optuna shows TPE only the current bracket's trials (each bracket pays its own
    # start-up trials); here TPE sees every trial. bench/efficiency.py, 5 seeds: ahead of
    # Hyperband at 50/100 % of the budget (level at 25 %), in epochs to random's best (0.527 vs
    # 0.781) and on test (0.8504 vs 0.8416).
    type: Literal["median", "hyperband", "successive_halving", "none"] = "successive_halving"
    n_startup_trials: int = Field(3, ge=0)
    # Steps count epochs trained (search/objective.py): median prunes from the end of epoch
    # n_warmup_steps on; successive halving's first rung is after min_resource epochs. A first
    # rung after one epoch (arm tpe_sh_rung1) lost to one after two: behind at half the budget,
    # 0.661 vs 0.527 of it to random's best; one epoch also ranks worse (bench/fidelity.py).
    n_warmup_steps: int = Field(2, ge=0)
    # Left out, it depends on the pruner: 2 for successive halving (above), 1 for Hyperband,
    # whose brackets start at min_resource * reduction_factor**k: at 2 a study of up to 5 epochs
    # would have one bracket, which is successive halving with extra steps.
    min_resource: int = Field(2, ge=1)
    reduction_factor: int = Field(3, ge=2)

    @model_validator(mode="before")
    @classmethod
    def _default_min_resource(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("min_resource") is None and data.get("type") == "hyperband":
            return {**data, "min_resource": 1}
        return data


class TrainingConfig(_Strict):
    max_epochs: int = Field(5, ge=1)
    # Early stopping on val_accuracy; 0 turns it off.
    patience: int = Field(2, ge=0)
    # Without a mask, bidirectional RNNs read the padding: 0.73 vs 0.83-0.84 val accuracy in
    # bench/results/throughput.json, at a few percent of speed on CPU.
    mask_zero: bool = True
    # Length-bucketed batches cut to their longest sequence (exact with post-padding + mask;
    # measured speed-ups in bench/results/throughput.json). Ignored where it would not be exact.
    bucketing: bool = True
    mixed_precision: bool = False
    # Cap on training examples per trial (None = all): a cheap way to search on a subset.
    max_train_examples: int | None = Field(None, ge=10)


class WarmStartConfig(_Strict):
    """Earlier studies whose best configurations run first, mapped onto this study's space."""

    studies: list[str] = Field(default_factory=list)  # Optuna studies in `storage`
    storage: str | None = None  # default: this study's storage
    experiments: list[str] = Field(default_factory=list)  # MLflow experiments on this tracking server
    top_k: int = Field(3, ge=1, le=100)
    # A trained model bundle (`search pull` output, or an ensemble's directory: its best member),
    # or a registered model `models:/NAME@ALIAS` on this study's tracking server (pulled once per
    # version into a cache), whose weights every trial starts from (models/transfer.py); its
    # architecture is then fixed.
    weights: str | None = Field(None, min_length=1)
    # Set when `weights` was a registry URI: that URI with the version and run it resolved to
    # (what the study records); `weights` is then the local copy.
    weights_origin: str | None = None

    @property
    def weights_from_registry(self) -> bool:
        return self.weights is not None and self.weights.startswith("models:/")


class TrackingConfig(_Strict):
    uri: str | None = None
    experiment: str | None = None
    model_name: str | None = None
    # Log a Keras-flavour MLflow model for each COMPLETE trial (what the registry serves).
    log_keras_model: bool = True


class WorkerConfig(_Strict):
    heartbeat_interval: int | None = Field(10, ge=1)
    grace_period: int | None = Field(None, ge=1)
    max_retry: int = Field(3, ge=0)
    # A worker stops (non-zero exit) after this many of its own trials failed in a row: that
    # is a fault of the code, data or machine, not of one configuration. 0: never stop.
    max_consecutive_failures: int = Field(5, ge=0)


class ConstraintsConfig(_Strict):
    """Opt-in size/latency limits. Accuracy stays the one objective (so the pruner keeps working:
    Optuna cannot prune multi-objective studies); each trial reports its constraint values
    (``Trial.set_constraint``, which TPE learns from) and the champion is the most accurate
    trial that meets them."""

    max_latency_ms: float | None = Field(None, gt=0)  # per example, batch of 1, CPU of the worker
    max_params: int | None = Field(None, ge=1)

    @property
    def enabled(self) -> bool:
        return self.max_latency_ms is not None or self.max_params is not None

    def violations(self, measured: dict[str, Any]) -> dict[str, float]:
        """Constraint name -> value, Optuna's convention: <= 0 is feasible."""
        out = {}
        if self.max_latency_ms is not None:
            out["latency_ms_b1"] = float(measured["latency_ms_b1"]) - self.max_latency_ms
        if self.max_params is not None:
            out["n_params"] = float(measured["n_params"]) - self.max_params
        return out

    def describe(self) -> str:
        limits = [f"latency_ms_b1 <= {self.max_latency_ms:g}" if self.max_latency_ms is not None else "",
                  f"n_params <= {self.max_params}" if self.max_params is not None else ""]
        return " and ".join(x for x in limits if x)


class ChampionConfig(_Strict):
    """What gets registered as ``champion``."""

    # The mean of the top-N COMPLETE trials' probabilities (1: the best trial alone). Stored
    # searches (bench/results/search_*.md, "ensemble"): Amazon test 0.848 alone, 0.873 for the
    # top 8; short sentences 0.794 and 0.801. A plain mean of the top N, because greedy
    # selection on the validation split (Caruana et al. 2004) kept the best trial nearly alone
    # on the short sentences (1,000 validation texts reward its luck) and gained no more on Amazon.
    # Refitting the members on train+validation was not better on Amazon (0.870 vs 0.873).
    ensemble_size: int = Field(8, ge=1, le=50)


class StudyConfig(_Strict):
    study_name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    storage: str | None = None
    seed: int | None = None
    # Default budget of `run` (per invocation); the CLI's --n-trials/--timeout override it.
    n_trials: int | None = Field(10, ge=1)
    timeout: float | None = Field(None, gt=0)
    # Stop once this many COMPLETE trials in a row have not beaten the best (pruned ones are cheap
    # and not counted); None = run to n_trials/timeout. Every worker checks before each trial.
    max_stagnation_trials: int | None = Field(None, ge=1)
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    data: DataSpec
    training: TrainingConfig = TrainingConfig()
    tracking: TrackingConfig = TrackingConfig()
    worker: WorkerConfig = WorkerConfig()
    constraints: ConstraintsConfig = ConstraintsConfig()
    champion: ChampionConfig = ChampionConfig()
    search_space: dict[str, ParamSpec] = Field(default_factory=dict, validate_default=True)
    enqueue: list[dict[str, Any]] = Field(default_factory=list)
    warm_start: WarmStartConfig = WarmStartConfig()

    # Parameters the config left out, whose choices come from the training data (set by
    # `with_data_aware_space`, recorded in the study and the MLflow summary run).
    derived_from_data: dict[str, list[Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _fill_space(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        value = data.get("search_space")
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ValueError("search_space: must be a mapping of parameter name to spec")
        unknown = sorted(set(value) - set(PARAM_KINDS))
        if unknown:
            raise ValueError(f"search_space: unknown parameter(s) {', '.join(map(str, unknown))}; "
                             f"known: {', '.join(PARAM_KINDS)}")
        missing = [name for name in DATA_AWARE if name not in value]
        return {**data, "search_space": {**DEFAULT_SEARCH_SPACE, **value},
                "derived_from_data": data.get("derived_from_data") or {name: [] for name in missing}}

    @model_validator(mode="after")
    def _check_space(self) -> StudyConfig:
        for name, spec in self.search_space.items():
            kind, _ = PARAM_KINDS[name]
            try:
                if spec.values is not None:
                    for v in spec.values:
                        _check_value(name, v)
                else:
                    if kind in ("str", "bool"):
                        raise ValueError("a categorical parameter needs 'choices' or 'value'")
                    if kind == "int":
                        for bound in (spec.low, spec.high, spec.step):
                            if bound is not None and bound != int(bound):
                                raise ValueError("an integer range needs integer low/high/step")
                    for bound in (spec.low, spec.high):
                        _check_value(name, int(bound) if kind == "int" else float(bound))
                    if spec.step is not None and spec.step <= 0:
                        raise ValueError("'step' must be > 0")
            except ValueError as exc:
                raise ValueError(f"search_space.{name}: {exc}") from None
        for i, entry in enumerate(self.enqueue):
            for name, v in entry.items():
                if name not in PARAM_KINDS:
                    raise ValueError(f"enqueue[{i}].{name}: unknown parameter")
                try:
                    _check_value(name, v)
                except ValueError as exc:
                    raise ValueError(f"enqueue[{i}].{name}: {exc}") from None
            try:
                ModelParams.from_dict(entry)
            except ValueError as exc:
                raise ValueError(f"enqueue[{i}]: {exc}") from None
        if self.sampler.type == "grid":
            ranged = [n for n, s in self.search_space.items() if s.values is None and not (n == "regularizer_strength")]
            if ranged:
                raise ValueError(f"sampler.type: grid needs 'choices' or 'value' for {', '.join(ranged)}")
        return self

    def with_data_aware_space(self, stats: Any) -> StudyConfig:
        """This config with data-derived choices for the parameters it left out."""
        if not self.derived_from_data:
            return self
        derived = {k: v for k, v in data_aware_choices(stats).items() if k in self.derived_from_data}
        space = {**self.search_space, **{k: ParamSpec(choices=v) for k, v in derived.items()}}
        return self.model_copy(update={"search_space": space, "derived_from_data": derived})

    def with_weight_source(self) -> StudyConfig:
        """This config with the architecture (and initializer) of its ``warm_start.weights``
        bundle fixed: the copied layers need the source's shapes, and the copy replaces what the
        initializer drew, so only the other parameters are searched."""
        if self.warm_start.weights is None:
            return self
        from models.errors import BundleError
        from models.transfer import source_architecture

        try:
            fixed = source_architecture(self.warm_start.weights)
        except BundleError as exc:
            raise ConfigError(f"warm_start.weights: {exc}") from None
        for name, value in fixed.items():
            try:
                _check_value(name, value)
            except ValueError as exc:
                raise ConfigError(f"warm_start.weights: sidecar params.{name}: {exc}") from None
        return self.model_copy(update={"search_space": {**self.search_space,
                                                        **{k: ParamSpec(value=v) for k, v in fixed.items()}}})

    @property
    def ensemble_size(self) -> int:
        """Members of the registered champion. Size/latency limits are per model, so a study
        with constraints registers its best feasible trial alone."""
        return 1 if self.constraints.enabled else self.champion.ensemble_size

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///studies/{self.study_name}.db"

    @property
    def model_name(self) -> str:
        return self.tracking.model_name or self.study_name

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.study_name


def _format_error(source: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"config {source}: {loc + ': ' if loc else ''}{msg}{more}"


def parse_config(data: Any, source: str = "<config>", overrides: dict[str, Any] | None = None) -> StudyConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"config {source}: top level must be a mapping")
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config {source}: {key}: must be a mapping")
        node[leaf] = value
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read a YAML study config; ``overrides`` maps dotted keys to values (None = keep)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config {p}: file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {p}: not valid YAML ({describe(exc)})") from None
    return parse_config(data, str(p), overrides)
