"""Worker loop: run trials until the *study* holds a target number of finished trials.

N workers share one budget: before starting a trial a worker counts finished (COMPLETE or
PRUNED) plus running trials, and once a trial is asked for it re-checks that fewer than
``target`` non-failed trials precede it; a trial that lost that race is failed as
"surplus" before any training or tracking. Trials of dead workers turn stale (heartbeats)
and are re-queued with the same params by ``RetryHeartbeatStaleTrialCallback``.

One failed trial never stops a worker; ``max_consecutive_failures`` of its own in a row do
(a systematic fault would otherwise burn the whole budget one failed trial at a time).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from search.errors import FailingTrialsError
from search.signals import GracefulStop, Interrupted
from search.storage import count_states, is_transient

log = logging.getLogger(__name__)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class Surplus(Exception):
    """The study reached its target while this trial was being created."""


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def stagnant_trials(study: optuna.Study) -> int:
    """COMPLETE trials since the first one with the best value (a tie is no improvement).

    Optuna's BestValueStagnationEvaluator computes the same, but ``optuna.terminator`` is
    deprecated since 4.9 (removal in 6.0), and ``study.stop()`` from a callback would only end
    the current ``optimize()`` call, which this loop makes once per trial."""
    values = [float(t.value) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.value is not None]
    return trials_since_best(values, study.direction == optuna.study.StudyDirection.MAXIMIZE)


def trials_since_best(values: list[float], maximize: bool = True) -> int:
    if not values:
        return 0
    return len(values) - 1 - values.index(max(values) if maximize else min(values))


def last_finisher(study: optuna.Study) -> str | None:
    """The worker whose trial ended last, from the trials' ``worker`` attribute. A trial counts
    when its own worker told it: COMPLETE, PRUNED, or FAIL with a ``fail_reason`` (an error or
    an interruption, e.g. SIGTERM at the end of a budget). A trial failed as stale has none:
    its worker is dead and will register nothing."""
    ended = [t for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.FAIL))
             if t.datetime_complete is not None and (t.state != TrialState.FAIL or "fail_reason" in t.user_attrs)]
    if not ended:
        return None
    latest = max(ended, key=lambda t: (t.datetime_complete, t.number))
    worker = latest.user_attrs.get("worker")
    return str(worker) if worker is not None else None


def requeue(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Queue a trial's params again (interrupted or surplus trials keep their configuration)."""
    if not trial.params:
        return
    study.enqueue_trial(dict(trial.params), user_attrs={"requeued_from": trial.number, "requeue_reason": reason})


class BudgetedObjective:
    def __init__(self, objective: Callable[[optuna.Trial], float], target: int | None, stop: GracefulStop):
        self.objective = objective
        self.target = target
        self.stop = stop
        self.consecutive_failures = 0  # this worker's own trials, surplus and interrupted ones excluded
        self.last_failure = ""

    def __call__(self, trial: optuna.Trial) -> float:
        if self.target is not None:
            ahead = [t for t in trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
                     if t.number < trial.number]
            if len(ahead) >= self.target:
                trial.set_user_attr("fail_reason", "surplus: study target reached while this trial started")
                raise Surplus("study target reached")
        try:
            value = self.objective(trial)
        except Interrupted:
            trial.set_user_attr("fail_reason", "interrupted")
            requeue(trial.study, trial, "interrupted")
            raise
        except optuna.TrialPruned:
            self.consecutive_failures = 0
            raise
        except Exception as exc:
            self.consecutive_failures += 1
            reason = trial.user_attrs.get("fail_reason") or f"{type(exc).__name__}: {exc}"
            self.last_failure = f"trial {trial.number}: {' '.join(str(reason).split())[:300]}"
            raise
        self.consecutive_failures = 0
        return value


def run_worker(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    target: int | None,
    n_trials: int | None = None,
    timeout: float | None = None,
    stop: GracefulStop,
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] | None = None,
    poll_seconds: float = 2.0,
    storage_patience: float = 180.0,
    max_consecutive_failures: int = 0,
    max_stagnation_trials: int | None = None,
    out: Any = None,
) -> int:
    """Returns the number of trials this worker ran. Stops on target, n_trials, timeout, signal or
    ``max_stagnation_trials`` COMPLETE trials in a row that did not beat the best; raises
    ``FailingTrialsError`` after ``max_consecutive_failures`` (> 0) failed trials in a row."""
    out = out or sys.stdout
    budgeted = BudgetedObjective(objective, target, stop)
    deadline = None if timeout is None else time.monotonic() + timeout
    ran = 0
    down_since: float | None = None
    while not stop.requested:
        if deadline is not None and time.monotonic() >= deadline:
            print("worker: timeout reached", file=out, flush=True)
            break
        if n_trials is not None and ran >= n_trials:
            break
        sampler = study.sampler
        if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study):
            print("worker: every grid point has been tried", file=out, flush=True)
            break
        try:
            optuna.storages.fail_stale_trials(study)
            if max_stagnation_trials is not None and stagnant_trials(study) >= max_stagnation_trials:
                print(f"worker: the last {max_stagnation_trials} complete trials did not beat the best "
                      "(max_stagnation_trials)", file=out, flush=True)
                break
            if target is not None:
                counts = count_states(study)
                finished = counts["COMPLETE"] + counts["PRUNED"]
                if finished >= target:
                    print(f"worker: study has {finished} finished trials (target {target})", file=out, flush=True)
                    break
                if finished + counts["RUNNING"] >= target:
                    time.sleep(poll_seconds)  # the rest is in flight; a failure there re-opens budget
                    continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            study.optimize(budgeted, n_trials=1, timeout=remaining, catch=(Exception,), callbacks=callbacks)
            ran += 1
            down_since = None
            if 0 < max_consecutive_failures <= budgeted.consecutive_failures:
                raise FailingTrialsError(
                    f"the last {budgeted.consecutive_failures} trials of this worker failed "
                    f"(worker.max_consecutive_failures), stopping; last: {budgeted.last_failure}")
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
            if not is_transient(exc):
                raise
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since > storage_patience:
                raise
            log.warning("storage error in worker loop (%s); retrying", type(exc).__name__)
            time.sleep(poll_seconds)
        except optuna.exceptions.UpdateFinishedTrialError as exc:
            # Our trial was failed as stale by another worker while storage was down; its
            # retry is queued, so just go on.
            log.warning("trial already finished elsewhere: %s", exc)
    if stop.requested:
        print(f"worker: stopped by {stop.signal_name}", file=out, flush=True)
    return ran
