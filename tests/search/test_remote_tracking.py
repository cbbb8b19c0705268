"""Against a real `mlflow server` subprocess (SQL backend, proxied artifacts)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from models.bundle import TextClassifier
from search.cli import _finish, main
from search.config import load_config
from search.errors import RegistryError
from search.objective import Objective
from search.study import create_study
from search.tracking import MlflowTracker
from tests.conftest import MlflowServer, free_port, tiny_config, write_config


def test_remote_server_study_pull_predict_and_masking(mlflow_server: MlflowServer, tmp_path: Path,
                                                      tiny_files: dict[str, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    uri = mlflow_server.url.replace("http://", "http://carol:t0psecret@")
    config = write_config(tmp_path, tiny_config(tmp_path, tiny_files, n_trials=2, study_name="remote"))
    assert main(["run", "--config", str(config), "--tracking-uri", uri]) == 0
    assert main(["pull", "--model", "remote", "--out", str(tmp_path / "pulled"), "--tracking-uri", uri]) == 0
    texts = ["Best purchase ever, works great", "Total waste of money"]
    expected = TextClassifier.load(tmp_path / "pulled").predict(texts)
    capsys.readouterr()
    assert main(["predict", "--model", "models:/remote@champion", "--tracking-uri", uri, *texts]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines() == [f"{p.label}\t{p.probability:.4f}" for p in expected]
    client = MlflowClient(mlflow_server.url)
    exp = client.get_experiment_by_name("remote")
    runs = client.search_runs([exp.experiment_id])
    assert len([r for r in runs if r.data.tags.get("run_type") != "study"]) == 2
    for run in runs:
        blob = repr(run.data.params) + repr(run.data.tags)
        assert "t0psecret" not in blob
    study = optuna.load_study(study_name="remote", storage=f"sqlite:///{tmp_path}/tiny.db")
    assert all("t0psecret" not in repr(t.user_attrs) for t in study.trials)
    assert "t0psecret" not in captured.out + captured.err


def test_server_drop_mid_study_keeps_training_and_later_trials_reconnect(tmp_path: Path,
                                                                         tiny_files: dict[str, Path]) -> None:
    server = MlflowServer(tmp_path / "srv", port=free_port()).start()
    try:
        config = load_config(write_config(tmp_path, tiny_config(tmp_path, tiny_files, study_name="drop")),
                             {"tracking.uri": server.url})
        tracker = MlflowTracker(config.tracking.uri, config.experiment_name)
        tracker.check_reachable()
        tracker.ensure_experiment()
        study = create_study(config)
        objective = Objective(config, tracker)
        study.optimize(objective, n_trials=1, catch=(Exception,))
        server.stop()  # the server goes away during the study
        study.optimize(objective, n_trials=1, catch=(Exception,))
        server.start()
        study.optimize(objective, n_trials=1, catch=(Exception,))
        server.stop()  # and is gone again when the worker registers its champion
        with pytest.raises(RegistryError, match=rf"champion not registered on {server.url}: .*retry with: python "
                                                r"-m search register") as caught:
            _finish(config, tracker, study)
        assert "\n" not in str(caught.value)
    finally:
        server.stop()
    first, during, after = study.trials
    assert during.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert "tracking_error" in during.user_attrs and "tracking_error" not in after.user_attrs
    client = MlflowClient(server.url.replace("127.0.0.1", "localhost"))
    assert "mlflow_run_id" in first.user_attrs and "mlflow_run_id" in after.user_attrs
    del client
