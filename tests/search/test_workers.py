"""Parallel workers on a shared PostgreSQL study: exact budgets, kill -9, DB restart, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from search.storage import make_storage
from tests.conftest import PYTHON, ROOT, MlflowServer, Postgres, cli_env, tiny_config, write_config

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def start_worker(config: Path, target: int, tmp: Path, name: str) -> subprocess.Popen:
    log = open(tmp / f"{name}.log", "w")  # noqa: SIM115
    return subprocess.Popen([PYTHON, "-m", "search", "worker", "--config", str(config), "--target-trials", str(target)],
                            cwd=ROOT, env=cli_env(), stdout=log, stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def setup_study(tmp: Path, files: dict[str, Path], pg: Postgres, server: MlflowServer, name: str,
                **overrides: object) -> tuple[Path, optuna.Study]:
    config = tiny_config(tmp, files, study_name=name, storage=pg.url(), **overrides)
    config["tracking"] = {"uri": server.url}
    config["training"] = {"max_epochs": 3, "patience": 0}
    config["pruner"] = {"type": "none"}
    path = write_config(tmp, config, f"{name}.yaml")
    out = subprocess.run([PYTHON, "-m", "search", "init", "--config", str(path)], cwd=ROOT, env=cli_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"study {name} ready" in out.stdout
    again = subprocess.run([PYTHON, "-m", "search", "init", "--config", str(path)], cwd=ROOT, env=cli_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]  # idempotent
    # The test's own handle must survive the restart too: same storage adapter as the workers.
    return path, optuna.load_study(study_name=name, storage=make_storage(pg.url()))


def logs(tmp: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp.glob("*.log")))


def test_three_workers_share_budget_survive_kill_and_db_restart(
    tmp_path: Path, tiny_files: dict[str, Path], postgres: Postgres, mlflow_server: MlflowServer
) -> None:
    target = 7
    config, study = setup_study(tmp_path, tiny_files, postgres, mlflow_server, "parallel")
    workers = [start_worker(config, target, tmp_path, f"w{i}") for i in range(3)]
    try:
        # kill -9 the worker that owns the first running trial, mid-trial.
        def running_trial():  # type: ignore[no-untyped-def]
            return [t for t in study.get_trials(states=(TrialState.RUNNING,)) if "n_params" in t.user_attrs]

        wait_for(lambda: running_trial(), 240, "a trial in training")
        victim_trial = running_trial()[0]
        pid = int(victim_trial.user_attrs["worker"].rsplit(":", 1)[1])
        victim = next(w for w in workers if w.pid == pid)
        os.kill(pid, signal.SIGKILL)
        victim.wait(10)
        # Restart PostgreSQL under the surviving workers once a trial has finished.
        wait_for(lambda: len(study.get_trials(states=FINISHED)) >= 2, 300, "two finished trials")
        postgres.restart()
        for w in workers:
            if w is not victim:
                assert w.wait(420) == 0, logs(tmp_path)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    trials = study.get_trials()
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == target, logs(tmp_path)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    killed = study.trials[victim_trial.number]
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs["fail_reason"].startswith("worker lost:")  # a true record of why
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim_trial.number]
    assert retries and retries[0].params == killed.params
    assert "fail_reason" not in retries[0].user_attrs or retries[0].state == TrialState.FAIL
    assert any(t.state in FINISHED for t in retries), logs(tmp_path)
    # One MLflow run per started trial, named and tagged after it; no trial runs twice.
    client = MlflowClient(mlflow_server.url)
    exp = client.get_experiment_by_name("parallel")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("run_type") != "study"]
    numbers = sorted(int(r.data.tags["trial_number"]) for r in runs)
    assert len(numbers) == len(set(numbers))
    for t in finished:
        assert t.number in numbers
    retry_runs = [r for r in runs if r.data.tags.get("retry_of_trial") == str(victim_trial.number)]
    assert retry_runs
    # The killed trial's run is closed as FAILED with the reason, not left RUNNING forever.
    killed_run = client.get_run(killed.user_attrs["mlflow_run_id"])
    assert killed_run.info.status == "FAILED"
    assert killed_run.data.tags["trial_state"] == "FAIL"
    assert killed_run.data.tags["fail_reason"].startswith("worker lost:")
    assert not [r.info.run_name for r in client.search_runs([exp.experiment_id]) if r.info.status == "RUNNING"]
    # Workers that finish together register the champion's run once.
    versions = client.search_model_versions("name = 'parallel'")
    assert len({v.run_id for v in versions}) == len(versions)


def test_workers_started_together_propose_different_configurations(
    tmp_path: Path, tiny_files: dict[str, Path], postgres: Postgres, mlflow_server: MlflowServer
) -> None:
    config, study = setup_study(tmp_path, tiny_files, postgres, mlflow_server, "distinct",
                                sampler={"type": "tpe", "n_startup_trials": 10})
    workers = [start_worker(config, 3, tmp_path, f"d{i}") for i in range(3)]  # the same instant, same seed
    try:
        for w in workers:
            assert w.wait(420) == 0, logs(tmp_path)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    first = [t for t in study.get_trials() if t.number < 3]
    assert len(first) == 3 and all(t.params for t in first)
    assert len({tuple(sorted(t.params.items())) for t in first}) == 3, [t.params for t in first]


def test_sigterm_fails_current_trial_and_exits_zero(
    tmp_path: Path, tiny_files: dict[str, Path], postgres: Postgres, mlflow_server: MlflowServer
) -> None:
    config, study = setup_study(tmp_path, tiny_files, postgres, mlflow_server, "sigterm")
    worker = start_worker(config, 50, tmp_path, "w")
    try:
        wait_for(lambda: any(t.intermediate_values or "n_params" in t.user_attrs
                             for t in study.get_trials(states=(TrialState.RUNNING,))), 240, "a trial in training")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(120) == 0, logs(tmp_path)
    finally:
        if worker.poll() is None:
            worker.kill()
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if t.user_attrs.get("fail_reason") == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0].state == TrialState.FAIL
    requeued = [t for t in trials if t.state == TrialState.WAITING]
    assert requeued and requeued[0].params == {} and requeued[0].user_attrs["requeued_from"] == interrupted[0].number
    assert "stopped by SIGTERM" in (tmp_path / "w.log").read_text()


def test_worker_on_sqlite_warns_when_others_run(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    config = tiny_config(tmp_path, tiny_files)
    path = write_config(tmp_path, config)
    storage = config["storage"]
    study = optuna.create_study(study_name="tiny", storage=storage, direction="maximize")
    study.ask()  # another worker's trial, running
    out = subprocess.run([PYTHON, "-m", "search", "worker", "--config", str(path), "--n-trials", "1",
                          "--no-tracking"], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "use PostgreSQL" in out.stderr
