"""Core benchmark (not a test): data-prep cold vs cached, trial vs bare fit, tracking overhead.

    make bench-core            # writes bench/results/core.json

One fixed configuration on the bundled demo data; pruning and early stopping off so every
arm runs the same epochs. Epoch 0 (graph tracing) is excluded from per-epoch medians.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import ROOT, median, quiet, write_result

FIXED = {"cell": "GRU", "bidirectional": True, "depth": 1, "embedding_dim": 64, "units": 32,
         "max_features": 5000, "sequence_length": 128, "dropout": 0.2, "regularizer": "none",
         "initializer": "glorot_uniform", "optimizer": "adam", "learning_rate": 0.003, "batch_size": 32}


def config_for(tmp: Path, epochs: int, tracking_uri: str | None = None):  # type: ignore[no-untyped-def]
    from search.config import parse_config

    space = {name: {"value": value} for name, value in FIXED.items()}
    space["regularizer_strength"] = {"value": 1e-5}
    return parse_config({
        "study_name": "bench-core", "storage": f"sqlite:///{tmp}/bench.db", "seed": 0,
        "pruner": {"type": "none"},
        "data": {"train_file": str(ROOT / "data/demo/train.txt.gz"), "test_file": str(ROOT / "data/demo/test.txt.gz"),
                 "cache_dir": str(tmp / "cache")},
        "training": {"max_epochs": epochs, "patience": 0},
        "tracking": {"uri": tracking_uri},
        "search_space": space,
    })


def time_data_prep(config) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from data_pipeline import prepare
    from data_pipeline.prepare import _file_digest, _load_corpus

    shutil.rmtree(config.data.cache_dir, ignore_errors=True)
    _load_corpus.cache_clear()
    _file_digest.cache_clear()
    started = time.perf_counter()
    prepare(config.data, FIXED["max_features"], FIXED["sequence_length"])
    cold = time.perf_counter() - started
    _load_corpus.cache_clear()  # a new process: only the disk cache helps
    _file_digest.cache_clear()
    started = time.perf_counter()
    data = prepare(config.data, FIXED["max_features"], FIXED["sequence_length"])
    cached = time.perf_counter() - started
    assert data.from_cache
    return {"cold_seconds": cold, "cached_seconds": cached, "speedup": cold / cached}


def trial_epoch_seconds(config, tracker) -> list[float]:  # type: ignore[no-untyped-def]
    import optuna

    from search.objective import Objective

    study = optuna.create_study(direction="maximize", storage=config.storage_url,
                                study_name=f"core-{time.time_ns()}")
    study.optimize(Objective(config, tracker), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs
    return list(trial.user_attrs["epoch_seconds"])


def bare_fit_epoch_seconds(config) -> list[float]:  # type: ignore[no-untyped-def]
    import keras

    from data_pipeline import prepare
    from models.builder import build_model
    from models.params import ModelParams

    data = prepare(config.data, FIXED["max_features"], FIXED["sequence_length"])
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build_model(ModelParams(**FIXED), data.n_classes, mask_zero=config.training.mask_zero)  # as trials do
    seconds: list[float] = []
    start = [0.0]
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: start.__setitem__(0, time.perf_counter()),
        on_epoch_end=lambda e, logs: seconds.append(time.perf_counter() - start[0]))
    model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=config.training.max_epochs,
              batch_size=FIXED["batch_size"], callbacks=[timer], verbose=0)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="alternating repetitions of each arm")
    args = parser.parse_args()
    quiet()

    from search.tracking import MlflowTracker, NullTracker

    tmp = Path(tempfile.mkdtemp(prefix="bench-core-"))
    try:
        config = config_for(tmp, args.epochs)
        prep = time_data_prep(config)
        tracked_config = config_for(tmp, args.epochs, f"sqlite:///{tmp}/mlflow.db")
        tracker = MlflowTracker(tracked_config.tracking.uri, "bench-core", artifact_root=str(tmp / "artifacts"))
        tracker.ensure_experiment()
        arms: dict[str, list[float]] = {"bare_fit": [], "trial_untracked": [], "trial_tracked": []}
        for _ in range(args.repeats):  # alternate arms so drift hits all of them alike
            arms["bare_fit"] += bare_fit_epoch_seconds(config)[1:]
            arms["trial_untracked"] += trial_epoch_seconds(config, NullTracker())[1:]
            arms["trial_tracked"] += trial_epoch_seconds(tracked_config, tracker)[1:]
        med = {name: median(values) for name, values in arms.items()}
        result = {
            "core": {
                "command": "make bench-core",
                "configuration": FIXED,
                "padding": config.data.padding, "mask_zero": config.training.mask_zero,
                "data": "data/demo (2,000 train lines -> 1,600 train / 400 validation)",
                "epochs_per_run": args.epochs, "repeats": args.repeats,
                "data_prep": prep,
                "epoch_seconds_median": med,
                "epoch_seconds_samples": arms,
                "trial_vs_bare_fit_ratio": med["trial_untracked"] / med["bare_fit"],
                "tracking_overhead_ratio": med["trial_tracked"] / med["trial_untracked"],
            }
        }
        path = write_result("core", result)
        print(f"data prep: cold {prep['cold_seconds']:.2f}s, cached {prep['cached_seconds']:.3f}s "
              f"({prep['speedup']:.0f}x)")
        print(f"epoch seconds (median): bare fit {med['bare_fit']:.2f}, trial {med['trial_untracked']:.2f}, "
              f"trial + MLflow {med['trial_tracked']:.2f}")
        print(f"trial/bare ratio {result['core']['trial_vs_bare_fit_ratio']:.3f}, "
              f"tracking overhead ratio {result['core']['tracking_overhead_ratio']:.3f} -> {path}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
