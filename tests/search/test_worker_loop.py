"""The worker loop: one failed trial never stops a worker, failures in a row do."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.errors import FailingTrialsError
from search.signals import GracefulStop
from search.worker import last_finisher, run_worker
from tests.conftest import PYTHON, ROOT, cli_env, tiny_config, write_config


def scripted(outcomes: str):  # type: ignore[no-untyped-def]
    """An objective whose n-th trial fails (F), is pruned (P) or completes (C)."""

    def objective(trial: optuna.Trial) -> float:
        outcome = outcomes[trial.number]
        if outcome == "F":
            trial.set_user_attr("fail_reason", f"ValueError: broken {trial.number}")
            raise ValueError(f"broken {trial.number}")
        if outcome == "P":
            raise optuna.TrialPruned()
        return 0.5

    return objective


def test_failures_in_a_row_stop_the_worker_with_the_last_reason() -> None:
    study = optuna.create_study(direction="maximize")
    with pytest.raises(FailingTrialsError, match=r"last 3 trials .* last: trial 7: ValueError: broken 7"):
        # A pruned and a complete trial each reset the count; trials 5-7 are the first three in a row.
        run_worker(study, scripted("FFPFCFFFC"), target=None, n_trials=9, stop=GracefulStop(),
                   max_consecutive_failures=3)
    assert [t.state for t in study.trials].count(TrialState.FAIL) == 6
    assert len(study.trials) == 8  # nothing after the stop


def test_zero_never_stops() -> None:
    study = optuna.create_study(direction="maximize")
    ran = run_worker(study, scripted("FFFFFF"), target=None, n_trials=6, stop=GracefulStop(),
                     max_consecutive_failures=0)
    assert ran == 6 and all(t.state == TrialState.FAIL for t in study.trials)


def test_cli_run_whose_every_trial_fails_exits_2_with_one_line(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    # A fault outside any configuration: the data cache directory sits under a regular file, so
    # every trial fails writing its arrays (start-up checks read the data but cache nothing).
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    config = tiny_config(tmp_path, tiny_files, n_trials=6)
    config["data"]["cache_dir"] = str(blocker / "cache")
    config["worker"]["max_consecutive_failures"] = 2
    out = subprocess.run([PYTHON, "-m", "search", "run", "--config", str(write_config(tmp_path, config))],
                         cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("error: the last 2 trials of this worker failed") and "last: trial 1:" in error
    study = optuna.load_study(study_name="tiny", storage=config["storage"])
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]


def valued(values: list[float | None]):  # type: ignore[no-untyped-def]
    """An objective whose n-th trial completes with values[n] (None: pruned)."""

    def objective(trial: optuna.Trial) -> float:
        value = values[trial.number]
        if value is None:
            raise optuna.TrialPruned()
        return value

    return objective


def test_stagnation_stops_after_that_many_complete_trials_without_a_better_one() -> None:
    study = optuna.create_study(direction="maximize")
    # Best 0.8 at trial 1; pruned trials do not count and a tie does not beat the best: the
    # second complete trial after the best is trial 4, and the worker stops before trial 5.
    values: list[float | None] = [0.5, 0.8, 0.7, None, 0.8, None, 0.6, 0.9, 0.9]
    printed = io.StringIO()
    ran = run_worker(study, valued(values), target=None, n_trials=9, stop=GracefulStop(),
                     max_stagnation_trials=2, out=printed)
    assert ran == 5 and [t.number for t in study.trials] == list(range(5))
    assert "the last 2 complete trials did not beat the best" in printed.getvalue()


def test_a_better_trial_restarts_the_stagnation_count() -> None:
    study = optuna.create_study(direction="maximize")
    values: list[float | None] = [0.5, 0.4, 0.6, 0.5, 0.7, 0.6, 0.8]
    ran = run_worker(study, valued(values), target=None, n_trials=7, stop=GracefulStop(), max_stagnation_trials=2)
    assert ran == 7  # never two complete trials in a row without a new best


def test_cli_run_stops_when_complete_trials_stop_beating_the_best(tmp_path: Path,
                                                                  tiny_files: dict[str, Path]) -> None:
    config = tiny_config(tmp_path, tiny_files, n_trials=1)
    config["pruner"] = {"type": "none"}  # pruned trials do not count: keep the count exact
    path = write_config(tmp_path, config)
    run = [PYTHON, "-m", "search", "run", "--config", str(path), "--no-tracking"]
    first = subprocess.run(run, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    # A best no real trial can beat (accuracy 2.0): from here every complete trial is stagnant.
    study = optuna.load_study(study_name="tiny", storage=config["storage"])
    done = study.trials[0]
    study.add_trial(optuna.trial.create_trial(params=done.params, distributions=done.distributions, value=2.0))
    out = subprocess.run([*run, "--n-trials", "6", "--max-stagnation-trials", "2"], cwd=ROOT, env=cli_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "the last 2 complete trials did not beat the best (max_stagnation_trials)" in out.stdout
    assert [t.state for t in optuna.load_study(study_name="tiny", storage=config["storage"]).trials] == \
        [TrialState.COMPLETE] * 4
    # 0 turns the stop off: the resumed run goes on.
    again = subprocess.run([*run, "--n-trials", "1", "--max-stagnation-trials", "0"], cwd=ROOT, env=cli_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "max_stagnation_trials" not in again.stdout
    assert len(optuna.load_study(study_name="tiny", storage=config["storage"]).trials) == 5


def test_last_finisher_is_the_worker_whose_trial_ended_last_not_a_stale_one() -> None:
    study = optuna.create_study(direction="maximize")
    assert last_finisher(study) is None
    for worker, state in (("host-a:1", TrialState.COMPLETE), ("host-b:2", TrialState.PRUNED),
                          ("host-c:3", TrialState.FAIL)):  # failed as stale (no fail_reason): its worker is gone
        trial = study.ask()
        trial.set_user_attr("worker", worker)
        study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
    assert last_finisher(study) == "host-b:2"
    # A trial its worker failed itself (interrupted at the end of a budget) counts: that worker
    # is alive and must build the champion, or nobody would.
    trial = study.ask()
    trial.set_user_attr("worker", "host-d:4")
    trial.set_user_attr("fail_reason", "interrupted")
    study.tell(trial, state=TrialState.FAIL)
    assert last_finisher(study) == "host-d:4"
