"""The Optuna objective: one trial = sample, load cached arrays, build, fit, checkpoint, log."""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from data_pipeline import PreparedData, prepare
from models.params import ModelParams
from search.config import StudyConfig
from search.identity import worker_id
from search.signals import GracefulStop, Interrupted
from search.space import sample_params
from search.tracking import NullTracker, NullTrialRun

log = logging.getLogger(__name__)

MONITOR = "val_accuracy"


def epochs_trained_pruning(trial: optuna.Trial, monitor: str) -> Any:
    """optuna-integration's KerasPruningCallback, reporting step = epochs trained (1, 2, ...).

    The library reports Keras' 0-based epoch index, but pruners read a step as resource spent:
    successive halving's rung at ``min_resource`` 1 then fell after the second epoch, every
    later rung one epoch late (the last one on the final epoch, so trials that had trained every
    epoch were marked pruned), and Hyperband's ``max_resource`` (training.max_epochs) was never
    reached. MLflow curves use the same step, so both count epochs trained.
    """
    from optuna_integration import KerasPruningCallback

    class EpochsTrainedPruningCallback(KerasPruningCallback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            super().on_epoch_end(epoch + 1, logs)

    return EpochsTrainedPruningCallback(trial, monitor)


class NonFiniteLoss(FloatingPointError):
    pass


def fail_reason(exc: BaseException) -> str:
    """A short, single-line reason for a FAIL trial (type, message, where it was raised)."""
    if isinstance(exc, Interrupted):
        return "interrupted"
    message = " ".join(str(exc).split())[:400]
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {message}{where}"


def subsample(data: PreparedData, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if limit is None or limit >= len(data.y_train):
        return data.x_train, data.y_train
    idx = np.random.default_rng(seed).choice(len(data.y_train), size=limit, replace=False)
    idx.sort()
    return data.x_train[idx], data.y_train[idx]


@dataclass(frozen=True)
class TrialTraining:
    """What one trial trains, set up as the objective does: its prepared data, training rows
    (``training.max_train_examples``), seed and freshly built model. Benchmarks that retrain a
    trial (bench/efficiency_champions.py) use this too, so a retrain is the trial's training."""

    config: StudyConfig
    params: ModelParams
    data: PreparedData
    x_train: np.ndarray
    y_train: np.ndarray
    seed: int
    model: Any
    transferred: Any = None  # models.transfer.Transferred where the study starts from weights

    @classmethod
    def create(cls, config: StudyConfig, params: ModelParams, trial_number: int) -> TrialTraining:
        import keras

        from models.builder import build_model

        data = prepare(config.data, params.max_features, params.sequence_length)
        x_train, y_train = subsample(data, config.training.max_train_examples, config.data.split_seed)
        seed = (config.seed or 0) + trial_number
        keras.backend.clear_session()
        if config.seed is not None:
            keras.utils.set_random_seed(seed)
        model = build_model(params, data.n_classes, mask_zero=config.training.mask_zero)
        transferred = None
        if config.warm_start.weights is not None:
            from models.transfer import load_source, transfer_weights

            transferred = transfer_weights(model, data.vectorizer.vocabulary, data.labels,
                                           load_source(config.warm_start.weights))
        return cls(config, params, data, x_train, y_train, seed, model, transferred)

    def fit(self, callbacks: list[Any], verbose: int = 0) -> Any:
        """``training.max_epochs`` epochs on the training rows, validated every epoch."""
        from models import training

        return training.fit(
            self.model, self.x_train, self.y_train,
            validation=(self.data.x_val, self.data.y_val),
            epochs=self.config.training.max_epochs,
            batch_size=self.params.batch_size,
            callbacks=callbacks,
            bucketing=training.can_bucket(self.config.data.padding, self.config.training.mask_zero)
            and self.config.training.bucketing,
            seed=self.seed,
            verbose=verbose,
        )


class Objective:
    """Callable for ``study.optimize``; returns the best validation accuracy of the trial."""

    def __init__(self, config: StudyConfig, tracker: Any = None, stop: GracefulStop | None = None,
                 verbose: int = 0):
        self.config = config
        self.tracker = tracker or NullTracker()
        self.stop = stop or GracefulStop()
        self.verbose = verbose

    def __call__(self, trial: optuna.Trial) -> float:
        import keras

        from models import training
        from models.bundle import MODEL_FILE, write_sidecar

        workdir = Path(tempfile.mkdtemp(prefix=f"trial-{trial.number}-"))
        history: dict[str, list[float]] = {}
        started = time.perf_counter()
        run: Any = NullTrialRun()
        try:
            self.stop.check()
            trial.set_user_attr("worker", worker_id())
            params = sample_params(trial, self.config.search_space)
            run = self.tracker.trial_run(trial, params, self.config.study_name)
            if run.run_id:
                trial.set_user_attr("mlflow_run_id", run.run_id)
            setup = TrialTraining.create(self.config, params, trial.number)
            data, model = setup.data, setup.model
            derived = {
                "vocab_size": len(data.vectorizer.vocabulary),
                "n_params": int(model.count_params()),
                "n_classes": data.n_classes,
                "n_train": len(setup.y_train),
                "n_val": len(data.y_val),
            }
            if setup.transferred is not None:
                derived.update(transferred_words=setup.transferred.words, transferred_head=setup.transferred.head)
            run.log_params(derived)
            for key, value in derived.items():
                trial.set_user_attr(key, value)
            write_sidecar(workdir, vectorizer=data.vectorizer, labels=data.labels, params=params.to_dict(),
                          extra={"study_name": self.config.study_name, "trial_number": trial.number,
                                 "mask_zero": self.config.training.mask_zero})
            callbacks = self._callbacks(trial, run, workdir / MODEL_FILE, history, epochs_trained_pruning)
            with self.stop.on_request(lambda: setattr(model, "stop_training", True)):
                setup.fit(callbacks, verbose=self.verbose)
            self.stop.check()  # a signal during fit ended it early: the trial is interrupted
            losses = history.get("loss", [])
            if not losses or not all(math.isfinite(x) for x in losses):
                raise NonFiniteLoss(f"training loss became {losses[-1] if losses else 'undefined'} "
                                    f"at epoch {len(losses) - 1}")
            best = max(history[MONITOR])
            metrics = self._summary(history, started)
            if self.config.constraints.enabled:
                measured: dict[str, float] = {"n_params": derived["n_params"]}
                for size, ms in training.latency_ms(model, data.x_val).items():
                    measured[f"latency_ms_b{size}"] = metrics[f"latency_ms_b{size}"] = ms
                    trial.set_user_attr(f"latency_ms_b{size}", round(ms, 4))
                violations = self.config.constraints.violations(measured)
                for name, value in violations.items():
                    trial.set_constraint(name, value)  # TPE learns the feasible region from these
                trial.set_user_attr("feasible", all(v <= 0 for v in violations.values()))
            run.log_bundle(workdir)
            if self.tracker.enabled and self.config.tracking.log_keras_model:
                run.log_keras_model(keras.models.load_model(workdir / MODEL_FILE, compile=False))
            self._finish(trial, run, "COMPLETE", metrics, history)
            return best
        except optuna.TrialPruned:
            metrics = self._summary(history, started)
            if (workdir / MODEL_FILE).exists():
                run.log_bundle(workdir)
            self._finish(trial, run, "PRUNED", metrics, history)
            raise
        except Exception as exc:
            reason = fail_reason(exc)
            trial.set_user_attr("fail_reason", reason)
            metrics = self._summary(history, started)
            self._finish(trial, run, "FAIL", metrics, history, reason)
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _callbacks(self, trial: optuna.Trial, run: Any, checkpoint: Path, history: dict[str, list[float]],
                   pruning_callback: Any) -> list[Any]:
        import keras

        epoch_started = [0.0]

        def on_epoch_begin(epoch: int, logs: dict[str, float] | None = None) -> None:
            epoch_started[0] = time.perf_counter()

        def on_epoch_end(epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = dict(logs or {})
            logs["epoch_seconds"] = time.perf_counter() - epoch_started[0]
            for key, value in logs.items():
                history.setdefault(key, []).append(float(value))
            run.on_epoch_end(epoch + 1, logs)  # the step the pruner sees: epochs trained

        # No per-batch hook (it would force a host sync every batch): a stop request sets
        # model.stop_training, which Keras checks after each batch anyway.
        callbacks = [
            keras.callbacks.LambdaCallback(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end),
            keras.callbacks.TerminateOnNaN(),
            # Before the pruner, so the best epoch is saved even when this epoch prunes.
            keras.callbacks.ModelCheckpoint(str(checkpoint), monitor=MONITOR, mode="max", save_best_only=True,
                                            verbose=0),
        ]
        if self.config.training.patience > 0:
            callbacks.append(keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max",
                                                           patience=self.config.training.patience))
        # Always report: with pruner "none" (NopPruner) the callback never prunes, but every epoch
        # still lands in the study as an intermediate value (dashboard curves, epoch accounting).
        callbacks.append(pruning_callback(trial, MONITOR))
        return callbacks

    @staticmethod
    def _summary(history: dict[str, list[float]], started: float) -> dict[str, float]:
        metrics: dict[str, float] = {"train_seconds": time.perf_counter() - started}
        values = history.get(MONITOR, [])
        finite = [v for v in values if math.isfinite(v)]
        metrics["epochs_run"] = float(len(values))
        if finite:
            metrics["best_val_accuracy"] = max(finite)
            metrics["best_epoch"] = float(values.index(max(finite)))
        for key in ("loss", "accuracy", "val_loss", MONITOR):
            if history.get(key):
                metrics[f"final_{key}"] = history[key][-1]
        return metrics

    @staticmethod
    def _finish(trial: optuna.Trial, run: Any, state: str, metrics: dict[str, float],
                history: dict[str, list[float]], reason: str | None = None) -> None:
        for key in ("train_seconds", "epochs_run", "best_epoch"):
            if key in metrics:
                trial.set_user_attr(key, round(metrics[key], 3) if key == "train_seconds" else int(metrics[key]))
        if history.get("epoch_seconds"):
            trial.set_user_attr("epoch_seconds", [round(s, 4) for s in history["epoch_seconds"]])
        run.finish(state, metrics, reason)
        if run.errors:
            trial.set_user_attr("tracking_error", run.errors[0])
