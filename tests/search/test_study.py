"""A real small study in-process: SQLite storage, local MLflow store, tiny Keras trials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

from models.bundle import TextClassifier
from search.cli import main
from search.config import load_config
from tests.conftest import tiny_config, write_config

WEAK = {"cell": "SimpleRNN", "bidirectional": False, "units": 4, "max_features": 300, "learning_rate": 1e-5,
        "optimizer": "rmsprop", "initializer": "glorot_uniform", "regularizer": "none"}
STRONG = {"cell": "GRU", "bidirectional": True, "units": 8, "max_features": 500, "learning_rate": 0.02,
          "optimizer": "adam", "initializer": "glorot_uniform", "regularizer": "none"}


class Finished:
    def __init__(self, tmp: Path, config_path: Path, outputs: list[str], champion_versions: list[str]):
        self.tmp = tmp
        self.config = load_config(config_path)
        self.study = optuna.load_study(study_name="tiny", storage=self.config.storage_url)
        self.client = MlflowClient(self.config.tracking.uri)
        self.outputs = outputs
        self.champion_versions = champion_versions


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tiny_files: dict[str, Path]) -> Finished:
    tmp = tmp_path_factory.mktemp("study")
    outputs, versions = [], []
    # Run 1: only the weak warm start -> it becomes the champion.
    path = write_config(tmp, tiny_config(tmp, tiny_files, enqueue=[WEAK], n_trials=1))
    assert main(["run", "--config", str(path)]) == 0
    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    versions.append(client.get_model_version_by_alias("tiny", "champion").version)
    # Run 2 resumes the same study: the baseline queued at creation runs, WEAK is skipped (already
    # there), STRONG is queued, then sampled trials.
    path = write_config(tmp, tiny_config(tmp, tiny_files, enqueue=[WEAK, STRONG], n_trials=5))
    assert main(["run", "--config", str(path)]) == 0
    versions.append(client.get_model_version_by_alias("tiny", "champion").version)
    return Finished(tmp, path, outputs, versions)


def test_study_resumes_with_continuous_numbering(finished: Finished) -> None:
    trials = finished.study.get_trials()
    assert [t.number for t in trials] == list(range(6))
    # Run 1 created the study with WEAK then the baseline queued (its learning rate 1e-3 clipped
    # to this space's 3e-3); run 2 ran the baseline, then its new STRONG entry.
    assert trials[0].params["learning_rate"] == 1e-5
    assert trials[1].params["learning_rate"] == 3e-3 and trials[1].params["cell"] == "GRU"
    assert trials[2].params["learning_rate"] == 0.02
    sampled = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(sampled)) == len(sampled)  # nothing repeated
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in trials)


def test_pruner_prunes_and_others_complete(finished: Finished) -> None:
    states = {t.state for t in finished.study.trials}
    assert optuna.trial.TrialState.COMPLETE in states
    details = [(t.number, t.state, t.intermediate_values) for t in finished.study.trials]
    assert optuna.trial.TrialState.PRUNED in states, details
    for t in finished.study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert t.value == pytest.approx(max(t.intermediate_values.values()))
            assert len(t.intermediate_values) == 2  # max_epochs, patience off


def runs_by_trial(f: Finished) -> dict[int, Any]:
    exp = f.client.get_experiment_by_name("tiny")
    runs = f.client.search_runs([exp.experiment_id])
    return {int(r.data.tags["trial_number"]): r for r in runs if "trial_number" in r.data.tags}


def test_every_trial_is_an_mlflow_run_with_curves(finished: Finished) -> None:
    runs = runs_by_trial(finished)
    assert sorted(runs) == [t.number for t in finished.study.trials]
    for t in finished.study.trials:
        run = runs[t.number]
        assert run.info.run_name == f"trial-{t.number}"
        assert t.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.tags["study_name"] == "tiny"
        assert run.data.tags["trial_state"] == t.state.name
        assert "worker" in run.data.tags
        for name, value in t.params.items():
            assert run.data.params[name] == str(value)
        assert int(run.data.params["n_classes"]) == 2 and int(run.data.params["n_params"]) > 0
        history = finished.client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == sorted(t.intermediate_values)
        reported = [t.intermediate_values[s] for s in sorted(t.intermediate_values)]
        assert [m.value for m in history] == pytest.approx(reported)
        for name in ("loss", "accuracy", "val_loss"):
            assert len(finished.client.get_metric_history(run.info.run_id, name)) == len(history)
        artifacts = {a.path for a in finished.client.list_artifacts(run.info.run_id)}
        assert {"best.h5", "sidecar.json"} <= artifacts
        # Next to the SQLite store (here the test's temp dir), not under the working directory.
        assert run.info.artifact_uri.startswith((finished.tmp / "artifacts").as_uri())
    summary = finished.client.search_runs([finished.client.get_experiment_by_name("tiny").experiment_id],
                                          filter_string="tags.run_type = 'study'")
    assert len(summary) == 1
    assert summary[0].data.metrics["best_value"] == pytest.approx(finished.study.best_value)
    assert summary[0].data.tags["best_trial"] == str(finished.study.best_trial.number)


def test_best_h5_loads_and_matches_reported_accuracy(finished: Finished, tmp_path: Path) -> None:
    from data_pipeline import prepare

    best = finished.study.best_trial
    run_id = best.user_attrs["mlflow_run_id"]
    for name in ("best.h5", "sidecar.json"):
        finished.client.download_artifacts(run_id, name, str(tmp_path))
    model = keras.models.load_model(tmp_path / "best.h5")
    data = prepare(finished.config.data, best.params["max_features"], best.params["sequence_length"])
    probs = model.predict(data.x_val, verbose=0)[:, 0]
    accuracy = float(((probs >= 0.5).astype(int) == data.y_val).mean())
    assert accuracy == pytest.approx(best.value, abs=1e-6)


def test_champion_is_best_trial_and_moved_when_beaten(finished: Finished) -> None:
    best = finished.study.best_trial
    assert best.number != 0  # the weak warm start was beaten
    mv = finished.client.get_model_version_by_alias("tiny", "champion")
    assert mv.run_id == best.user_attrs["mlflow_run_id"]
    assert finished.champion_versions[0] != finished.champion_versions[1] == mv.version
    first = finished.client.get_model_version("tiny", finished.champion_versions[0])
    assert first.run_id == finished.study.trials[0].user_attrs["mlflow_run_id"]
    test_acc = finished.client.get_run(mv.run_id).data.metrics["test_accuracy"]
    assert 0.0 <= test_acc <= 1.0


def test_registry_model_and_pull_predict_match(finished: Finished, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    uri = finished.config.tracking.uri
    assert main(["pull", "--model", "tiny", "--out", str(tmp_path / "pulled"), "--tracking-uri", uri]) == 0
    clf = TextClassifier.load(tmp_path / "pulled")
    texts = ["Terrible product, it broke after one day.", "Wonderful album, I love every song!"]
    expected = clf.predict(texts)
    capsys.readouterr()
    assert main(["predict", "--model", "models:/tiny@champion", "--tracking-uri", uri, *texts]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"{p.label}\t{p.probability:.4f}" for p in expected]
    # The registered model is an MLflow pyfunc on raw text: same labels and probabilities from a
    # list of strings and from a DataFrame column `text`.
    mlflow.set_tracking_uri(uri)
    served = mlflow.pyfunc.load_model("models:/tiny@champion")
    for given in (texts, pd.DataFrame({"text": texts})):
        out = served.predict(given)
        assert list(out.columns) == ["label", "probability"]
        assert out["label"].tolist() == [p.label for p in expected]
        np.testing.assert_allclose(out["probability"], [p.probability for p in expected], atol=1e-6)
    # The model version explains itself on the registry page.
    mv = finished.client.get_model_version_by_alias("tiny", "champion")
    assert "Validation accuracy" in mv.description and f"trial {mv.tags['trial_number']}" in mv.description
    assert {"val_accuracy", "test_accuracy", "params", "train_sha256", "test_sha256", "selection_rule"} <= set(mv.tags)
    assert json.loads(mv.tags["params"]) == finished.study.trials[int(mv.tags["trial_number"])].params


def test_a_new_study_runs_the_best_of_earlier_studies_first(finished: Finished) -> None:
    from search.warm_start import map_params

    tmp = finished.tmp
    source = sorted((t for t in finished.study.trials if t.state == optuna.trial.TrialState.COMPLETE),
                    key=lambda t: t.value, reverse=True)[:2]
    raw = tiny_config(tmp, {"train": finished.config.data.train_file, "test": finished.config.data.test_file},
                      study_name="tiny_next", n_trials=1,
                      warm_start={"studies": ["tiny"], "experiments": ["tiny"], "top_k": 2})
    raw["search_space"]["max_features"] = {"choices": [400, 800]}  # "another data set": other sizes
    raw["sampler"]["baseline_trial"] = False
    path = write_config(tmp, raw, "next.yaml")
    assert main(["run", "--config", str(path), "--no-tracking"]) == 0
    study = optuna.load_study(study_name="tiny_next", storage=finished.config.storage_url)
    space = load_config(path).search_space
    expected = [map_params(t.params, space, {"max_features": [300, 500]}) for t in source]
    # The study's best two, in order, their vocabulary moved to the same position among the new
    # choices; the MLflow experiment's best two are the same trials (nearest value instead of
    # position, so 300 -> 400 and 500 -> 400 may differ) and are queued after them unless equal.
    assert expected[0]["max_features"] == {300: 400, 500: 800}[source[0].params["max_features"]]
    assert study.trials[0].params == {**study.trials[0].params, **expected[0]}
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
    waiting = [t.system_attrs["fixed_params"] for t in study.trials[1:]]  # enqueued, not run yet
    assert len(study.trials) >= 2 and study.trials[1].state == optuna.trial.TrialState.WAITING
    assert expected[1] in [expected[0], *waiting]
    assert study.user_attrs["warm_start"]["queued"] == len(study.trials)
    from search.report import build_report

    note = build_report(study).notes["warm_start"]
    assert note.startswith(f"{len(study.trials)} configuration(s) queued") and "study tiny, experiment tiny" in note
    # Resumed, the study does not read its sources again: one that is gone since is no error.
    raw["warm_start"] = {"studies": ["gone"]}
    assert main(["run", "--config", str(write_config(tmp, raw, "next.yaml")), "--no-tracking"]) == 0


def test_without_a_pruner_every_epoch_is_still_reported(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    # The dashboard's curves and the efficiency benchmark's epoch accounting need them.
    config = tiny_config(tmp_path, tiny_files, n_trials=2, pruner={"type": "none"}, sampler={"type": "random"})
    assert main(["run", "--config", str(write_config(tmp_path, config))]) == 0
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for t in study.trials:
        assert sorted(t.intermediate_values) == [1, 2]  # steps count epochs trained; max_epochs 2
        assert t.value == pytest.approx(max(t.intermediate_values.values()))


def test_mlflow_models_serve_answers_raw_text_like_predict(finished: Finished, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`mlflow models serve` on models:/tiny@champion, outside this repository (no PYTHONPATH, other cwd)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.conftest import demo_lines, free_port

    texts = [line.partition(" ")[2] for line in demo_lines("test.txt.gz", 100, start=500)]
    uri = finished.config.tracking.uri
    capsys.readouterr()
    assert main(["predict", "--model", "models:/tiny@champion", "--tracking-uri", uri, *texts]) == 0
    expected = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert len(expected) == 100

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MLFLOW_TRACKING_URI"] = uri
    # `mlflow models serve` execs `uvicorn` from PATH: the virtualenv's bin, as if activated.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m",
                             "models:/tiny@champion", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def post(body: dict[str, Any]) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["predictions"]

    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "serve.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        for body in ({"inputs": texts},
                     {"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}}):
            served = post(body)
            assert [row["label"] for row in served] == [label for label, _ in expected]
            assert [f"{row['probability']:.4f}" for row in served] == [prob for _, prob in expected]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_constraints_keep_pruning_and_pick_a_feasible_champion(tmp_path: Path, tiny_files: dict[str, Path],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Size/latency limits: accuracy stays the single objective, the champion meets the limits."""
    base = {"cell": "SimpleRNN", "bidirectional": False, "depth": 1, "embedding_dim": 8, "units": 4,
            "max_features": 300, "sequence_length": 24, "dropout": 0.0, "regularizer": "none",
            "initializer": "glorot_uniform", "optimizer": "adam", "learning_rate": 0.01, "batch_size": 32}
    config = tiny_config(tmp_path, tiny_files, n_trials=4, constraints={"max_params": 2600},
                         enqueue=[base, {**base, "cell": "GRU", "bidirectional": True, "units": 8}])
    config["search_space"]["max_features"] = {"choices": [300]}
    # No Keras model logged per trial: the champion's pyfunc model is logged at registration.
    config["tracking"]["log_keras_model"] = False
    assert main(["run", "--config", str(write_config(tmp_path, config))]) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="tiny", storage=config["storage"])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete
    for t in complete:
        assert t.user_attrs["latency_ms_b1"] > 0 and t.user_attrs["latency_ms_b256"] > 0
        assert t.user_attrs["feasible"] is (t.user_attrs["n_params"] <= 2600)
    assert study.trials[1].user_attrs["n_params"] > 2600  # the enqueued BiGRU(8) is too big
    feasible = [t for t in complete if t.user_attrs["feasible"]]
    champion = max(feasible, key=lambda t: t.value)
    assert f"(trial {champion.number}," in out and "rule: max val_accuracy over COMPLETE trials with " \
        "n_params <= 2600" in out
    client = MlflowClient(config["tracking"]["uri"])
    mv = client.get_model_version_by_alias("tiny", "champion")
    assert mv.tags["selection_rule"].endswith("n_params <= 2600") and mv.tags["n_params"]
    assert main(["report", "--config", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    assert "accuracy_vs_latency" in page and "Pareto front" in page
