"""Shared helpers for benchmark scripts: machine facts, versions, atomic JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def quiet() -> None:
    from search.cli import quiet_libraries

    quiet_libraries()


def machine() -> dict[str, Any]:
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except OSError:
        mem_kb = 0
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "memory_gib": round(mem_kb / 2**20, 1), "processor": platform.processor() or platform.machine()}


def versions(*names: str) -> dict[str, str]:
    out = {}
    for name in names or ("tensorflow-cpu", "keras", "optuna", "optuna-integration", "mlflow", "numpy", "SQLAlchemy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def fit_like_trial(setup: Any) -> tuple[dict[str, list[float]], Any]:
    """Train a search.objective.TrialTraining as its trial does and score it on the test file:
    the objective keeps the best epoch's checkpoint and stops after `patience` epochs without gain,
    which EarlyStopping with restore_best_weights reproduces (patience 0: never stop early).
    Returns the history and the test-set class probabilities (as a pulled model predicts)."""
    import keras
    import numpy as np

    from models.bundle import TextClassifier
    from search.objective import MONITOR

    config, data = setup.config, setup.data
    assert data.x_test is not None and data.y_test is not None, f"{config.study_name}: needs a test_file"
    stopper = keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", restore_best_weights=True,
                                            patience=config.training.patience or config.training.max_epochs)
    history = setup.fit([stopper]).history
    classifier = TextClassifier(setup.model, data.vectorizer, data.labels, {"mask_zero": config.training.mask_zero})
    return history, np.asarray(classifier.probabilities_of_ids(data.x_test))


def accuracy(probabilities: Any, y: Any) -> float:
    """Share of rows whose most probable class is the label."""
    return float((probabilities.argmax(-1) == y).mean())


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def write_result(name: str, body: dict[str, Any], merge: bool = True) -> Path:
    """Write bench/results/NAME.json (merging top-level keys with an existing file). The core
    package versions are always recorded (current ones win); ``body["versions"]`` adds others."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data: dict[str, Any] = {}
    if merge and path.exists():
        data = json.loads(path.read_text())
    data.update(body)
    data["machine"] = machine()
    data["versions"] = {**body.get("versions", {}), **versions()}
    data["written_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return write_json(path, data)


def merged_results(name: str, new: dict[str, Any]) -> dict[str, Any]:
    """The ``results`` of bench/results/NAME.json (one entry per config) updated with ``new``,
    sorted by key: a bench run on one config keeps the others' entries."""
    path = RESULTS / f"{name}.json"
    stored = json.loads(path.read_text()).get("results", {}) if path.exists() else {}
    return dict(sorted({**stored, **new}.items()))


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Atomic write: a reader never sees half a result file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
