"""Model hyperparameters: names, allowed values, and validation. Imports no Keras."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

CELLS = ("SimpleRNN", "GRU", "LSTM")
REGULARIZERS = ("none", "l1", "l2", "l1l2")
# Any name keras.initializers.get() accepts works; these are the ones the search offers.
INITIALIZERS = (
    "random_normal",
    "random_uniform",
    "glorot_uniform",
    "glorot_normal",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "orthogonal",
)
OPTIMIZERS = ("adam", "rmsprop")
# How the recurrent sequence becomes one vector: the last state, or max/mean over the
# (masked) time steps.
POOLINGS = ("last", "max", "mean")

# Numeric limits (inclusive unless noted): what the model accepts and what a 2-core to
# 1-GPU worker can train. The config checks every fixed value, choice and range end
# against them before anything is written.
LIMITS: dict[str, tuple[float, float]] = {
    "depth": (1, 8),
    "embedding_dim": (1, 4096),
    "units": (1, 4096),
    "max_features": (3, 2_000_000),
    "sequence_length": (1, 20_000),
    "dropout": (0.0, 0.95),
    "regularizer_strength": (0.0, 1.0),
    "learning_rate": (1e-7, 1.0),
    "batch_size": (1, 65_536),
}
FLOATS = ("dropout", "regularizer_strength", "learning_rate")


def limit_problem(name: str, value: float) -> str | None:
    """Why ``value`` is out of range for ``name`` (None when it is fine or unlimited)."""
    if name not in LIMITS:
        return None
    low, high = LIMITS[name]
    if not low <= value <= high:
        return f"{name} must be in [{low:g}, {high:g}], got {value:g}"
    return None


@dataclass(frozen=True)
class ModelParams:
    """One point of the search space. Field names are the Optuna/MLflow parameter names."""

    cell: str = "GRU"
    bidirectional: bool = True
    depth: int = 1
    embedding_dim: int = 64
    units: int = 64
    max_features: int = 10000
    sequence_length: int = 200
    dropout: float = 0.0
    regularizer: str = "none"
    regularizer_strength: float = 0.0
    initializer: str = "glorot_uniform"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 64
    pooling: str = "last"

    def __post_init__(self) -> None:
        for name in FLOATS:  # a YAML integer (learning_rate: 1) must reach Keras as a float
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        problems = []
        if self.cell not in CELLS:
            problems.append(f"cell={self.cell!r} (choose from {', '.join(CELLS)})")
        if self.regularizer not in REGULARIZERS:
            problems.append(f"regularizer={self.regularizer!r} (choose from {', '.join(REGULARIZERS)})")
        if self.pooling not in POOLINGS:
            problems.append(f"pooling={self.pooling!r} (choose from {', '.join(POOLINGS)})")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer={self.optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
        for name in LIMITS:
            problem = limit_problem(name, getattr(self, name))
            if problem:
                problems.append(problem)
        if problems:
            raise ValueError("invalid model parameters: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelParams:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model parameter(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
