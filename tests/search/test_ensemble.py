"""The default champion: the ensemble of the top-N trials, registered, pulled, served, scored."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
import sqlalchemy
from mlflow import MlflowClient

from data_pipeline import read_fasttext
from models.bundle import TextClassifier
from models.ensemble import ENSEMBLE_FILE, EnsembleClassifier
from search.cli import main
from tests.conftest import tiny_config, write_config

TEXTS = ["Terrible product, it broke after one day.", "Wonderful album, I love every song!", "ok"]


def test_champion_is_the_mean_of_the_top_trials_and_serves_raw_text(
        tmp_path: Path, tiny_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    raw = tiny_config(tmp_path, tiny_files, n_trials=4, champion={"ensemble_size": 3})
    path = write_config(tmp_path, raw)
    assert main(["run", "--config", str(path)]) == 0
    printed = capsys.readouterr().out
    uri = raw["tracking"]["uri"]
    client = MlflowClient(uri)
    study = optuna.load_study(study_name="tiny", storage=raw["storage"])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 3
    top = sorted(complete, key=lambda t: (-t.value, t.number))[:3]

    # The alias points at the ensemble's own run, which names its members, best first.
    mv = client.get_model_version_by_alias("tiny", "champion")
    run = client.get_run(mv.run_id)
    assert run.data.tags["run_type"] == "ensemble" and run.info.status == "FINISHED"
    assert run.data.tags["ensemble_trials"] == mv.tags["ensemble_trials"] == ",".join(str(t.number) for t in top)
    assert mv.tags["trial_number"] == str(top[0].number)
    assert mv.description.startswith(f"Ensemble of 3 trials ({', '.join(str(t.number) for t in top)})")
    assert f"(ensemble of trials {', '.join(str(t.number) for t in top)}, val_accuracy=" in printed

    # Pulled, it is the members' own checkpoints; its probabilities are the mean of theirs.
    assert main(["pull", "--model", "tiny", "--out", str(tmp_path / "pulled"), "--tracking-uri", uri]) == 0
    ensemble = EnsembleClassifier.load(tmp_path / "pulled")
    assert [m["run_id"] for m in ensemble.manifest["members"]] == [t.user_attrs["mlflow_run_id"] for t in top]
    members = []
    for t in top:
        own = tmp_path / f"trial-{t.number}"
        for name in ("best.h5", "sidecar.json"):
            client.download_artifacts(t.user_attrs["mlflow_run_id"], name, str(own))
        members.append(TextClassifier.load(own))
    expected = np.mean([m.probabilities(TEXTS) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.probabilities(TEXTS), expected, atol=1e-6)

    # Its test accuracy, logged at registration, is what the raw test texts give.
    test = read_fasttext(tiny_files["test"])
    predicted = [p.label for p in ensemble.predict(test.texts)]
    accuracy = float(np.mean([p == y for p, y in zip(predicted, test.labels, strict=True)]))
    assert run.data.metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert mv.tags["test_accuracy"] == f"{accuracy:.4f}"
    assert 0.0 < run.data.metrics["val_accuracy"] <= 1.0
    assert run.data.metrics["best_member_val_accuracy"] == pytest.approx(top[0].value)

    # `predict` and the registered pyfunc give the same labels and probabilities.
    capsys.readouterr()
    assert main(["predict", "--model", "models:/tiny@champion", "--tracking-uri", uri, *TEXTS]) == 0
    want = ensemble.predict(TEXTS)
    assert capsys.readouterr().out.strip().splitlines() == [f"{p.label}\t{p.probability:.4f}" for p in want]
    mlflow.set_tracking_uri(uri)
    served = mlflow.pyfunc.load_model("models:/tiny@champion").predict(pd.DataFrame({"text": TEXTS}))
    assert served["label"].tolist() == [p.label for p in want]
    np.testing.assert_allclose(served["probability"], [p.probability for p in want], atol=1e-6)

    # Registering again with the same top trials changes nothing and logs no second ensemble.
    assert main(["register", "--config", str(path)]) == 0
    assert "champion unchanged" in capsys.readouterr().out
    assert client.get_model_version_by_alias("tiny", "champion").version == mv.version
    experiment = client.get_experiment_by_name("tiny").experiment_id
    assert len(client.search_runs([experiment], filter_string="tags.run_type = 'ensemble'")) == 1

    # ensemble_size 1: the best trial alone (what a study with size/latency limits registers).
    single = write_config(tmp_path, {**raw, "champion": {"ensemble_size": 1}}, name="single.yaml")
    assert main(["register", "--config", str(single)]) == 0
    alone = client.get_model_version_by_alias("tiny", "champion")
    assert alone.run_id == top[0].user_attrs["mlflow_run_id"] and "ensemble_trials" not in alone.tags
    assert not (tmp_path / "pulled-single").exists()
    assert main(["pull", "--model", "tiny", "--out", str(tmp_path / "pulled-single"), "--tracking-uri", uri]) == 0
    assert not (tmp_path / "pulled-single" / ENSEMBLE_FILE).exists()
    np.testing.assert_allclose(TextClassifier.load(tmp_path / "pulled-single").probabilities(TEXTS),
                               members[0].probabilities(TEXTS), atol=1e-6)


def test_a_worker_leaves_the_ensemble_to_the_last_worker(tmp_path: Path, tiny_files: dict[str, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    raw = tiny_config(tmp_path, tiny_files, champion={"ensemble_size": 3}, sampler={"type": "random"},
                      pruner={"type": "none"})  # every trial COMPLETE: an ensemble whatever is sampled
    path = write_config(tmp_path, raw)
    assert main(["init", "--config", str(path)]) == 0
    elsewhere = optuna.load_study(study_name="tiny", storage=raw["storage"]).ask()  # another worker's trial
    elsewhere.suggest_float("x", 0.0, 1.0)
    assert main(["worker", "--config", str(path), "--n-trials", "2"]) == 0
    out = capsys.readouterr().out
    assert "champion left to the last worker (trials still running)" in out and "champion registered" not in out
    assert not MlflowClient(raw["tracking"]["uri"]).search_registered_models()
    # That worker finished (its trial is told): the next worker to finish registers the ensemble.
    optuna.load_study(study_name="tiny", storage=raw["storage"]).tell(elsewhere, state=optuna.trial.TrialState.FAIL)
    assert main(["worker", "--config", str(path), "--n-trials", "1"]) == 0
    assert "champion registered: models:/tiny@champion = version 1 (ensemble of trials" in capsys.readouterr().out


def test_of_workers_stopping_together_the_one_whose_trial_finished_last_builds_the_ensemble(
        tmp_path: Path, tiny_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    raw = tiny_config(tmp_path, tiny_files, champion={"ensemble_size": 3}, sampler={"type": "random"},
                      pruner={"type": "none"})
    path = write_config(tmp_path, raw)
    assert main(["init", "--config", str(path)]) == 0
    study = optuna.load_study(study_name="tiny", storage=raw["storage"])
    other = study.ask()  # another worker's trial, which finishes after this worker's last one
    other.set_user_attr("worker", "other-host:1")
    study.tell(other, 0.5)
    with sqlalchemy.create_engine(raw["storage"]).begin() as db:
        db.execute(sqlalchemy.text("UPDATE trials SET datetime_complete = '2999-01-01 00:00:00' "
                                   "WHERE number = :n"), {"n": other.number})
    assert main(["worker", "--config", str(path), "--n-trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "champion left to worker other-host:1, whose trial ended last" in out
    assert "champion registered" not in out
    assert not MlflowClient(raw["tracking"]["uri"]).search_registered_models()


def test_a_top_trial_whose_run_lost_its_checkpoint_is_passed_over(tmp_path: Path, tiny_files: dict[str, Path],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    raw = tiny_config(tmp_path, tiny_files, n_trials=3, champion={"ensemble_size": 2}, pruner={"type": "none"},
                      sampler={"type": "random"})
    path = write_config(tmp_path, raw)
    assert main(["run", "--config", str(path), "--no-tracking"]) == 0  # no runs: nothing to serve
    assert main(["run", "--config", str(path), "--n-trials", "2"]) == 0
    study = optuna.load_study(study_name="tiny", storage=raw["storage"])
    tracked = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
                      and "mlflow_run_id" in t.user_attrs), key=lambda t: (-t.value, t.number))
    assert len(tracked) == 2
    mv = MlflowClient(raw["tracking"]["uri"]).get_model_version_by_alias("tiny", "champion")
    assert mv.tags["ensemble_trials"] == ",".join(str(t.number) for t in tracked)
    assert "no MLflow run (tracking was off); passed over for champion" in caplog.text
