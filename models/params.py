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

    def __post_init__(self) -> None:
        problems = []
        if self.cell not in CELLS:
            problems.append(f"cell={self.cell!r} (choose from {', '.join(CELLS)})")
        if self.regularizer not in REGULARIZERS:
            problems.append(f"regularizer={self.regularizer!r} (choose from {', '.join(REGULARIZERS)})")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer={self.optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
        for name in ("depth", "embedding_dim", "units", "sequence_length", "batch_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1")
        if self.max_features < 3:
            problems.append("max_features must be >= 3")
        if not 0.0 <= self.dropout < 1.0:
            problems.append("dropout must be in [0, 1)")
        if self.learning_rate <= 0:
            problems.append("learning_rate must be > 0")
        if self.regularizer_strength < 0:
            problems.append("regularizer_strength must be >= 0")
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
