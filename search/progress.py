"""One concise console line per finished trial."""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

import optuna

_SHORT = {"bidirectional": "bi", "embedding_dim": "emb", "max_features": "V", "sequence_length": "L",
          "learning_rate": "lr", "batch_size": "bs", "regularizer_strength": "reg_s"}


def format_trial(trial: optuna.trial.FrozenTrial) -> str:
    p = trial.params
    value = f"val_acc={trial.value:.4f}" if trial.value is not None else ""
    if trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
        step = max(trial.intermediate_values)
        value = f"pruned@{step} ({trial.intermediate_values[step]:.4f})"
    if trial.state == optuna.trial.TrialState.FAIL:
        value = str(trial.user_attrs.get("fail_reason", "failed"))[:120]
    parts = []
    if "cell" in p:
        parts.append(("Bi" if p.get("bidirectional") else "") + str(p["cell"]))
    if p.get("pooling", "last") != "last":
        parts.append(f"pool={p['pooling']}")
    for key in ("depth", "units", "embedding_dim", "max_features", "sequence_length", "optimizer",
                "learning_rate", "batch_size", "regularizer"):
        if key in p:
            v = p[key]
            shown = f"{v:.1e}" if isinstance(v, float) else str(v)
            parts.append(shown if key in ("optimizer", "regularizer") else f"{_SHORT.get(key, key)}={shown}")
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    return f"trial {trial.number:>4} {trial.state.name:<8} {value:<22} {' '.join(parts)}  {seconds:.1f}s"


class _DropFailedTrialLog(logging.Filter):
    """Optuna logs every failed trial as a warning with its traceback (and a second line).

    The worker already prints one line per trial with the reason (``fail_reason`` holds the
    exception type, message and where it was raised), so these records only bury that line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not re.match(r"Trial \d+ failed with ", record.getMessage())


def quiet_failed_trial_logs() -> None:
    logging.getLogger("optuna.study._optimize").addFilter(_DropFailedTrialLog())


class ProgressPrinter:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        print(format_trial(trial), file=self.stream, flush=True)
