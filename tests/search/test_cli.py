"""The CLI end to end in subprocesses: help, fail-fast errors, a real run, predict from stdin."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.conftest import PYTHON, ROOT, cli_env, free_port, tiny_config, write_config


def cli(*args: str, cwd: Path = ROOT, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "search", *args], cwd=cwd, env=cli_env(), input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_help_lists_commands() -> None:
    out = cli("--help")
    assert out.returncode == 0
    for command in ("run", "init", "worker", "register", "pull", "predict", "report", "dashboard", "ui"):
        assert command in out.stdout
    run_help = cli("run", "--help").stdout
    for flag in ("--n-trials", "--timeout", "--storage", "--study-name", "--seed", "--train-file", "--test-file",
                 "--max-epochs", "--tracking-uri"):
        assert flag in run_help


def assert_one_line_error(out: subprocess.CompletedProcess, *fragments: str) -> None:
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_bad_config_fails_before_anything_is_written(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    config = tiny_config(tmp_path, tiny_files)
    config["search_space"]["units"] = {"low": 9, "high": 3}
    out = cli("run", "--config", str(write_config(tmp_path, config)))
    assert_one_line_error(out, "study.yaml", "search_space.units", "low (9) > high (3)")
    assert not (tmp_path / "tiny.db").exists() and not (tmp_path / "mlflow.db").exists()


def test_bad_data_fails_with_file_and_line(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("__label__1 fine\n__label__2 also fine\nthis line has no label\n")
    config = write_config(tmp_path, tiny_config(tmp_path, tiny_files))
    out = cli("run", "--config", str(config), "--train-file", str(bad))
    assert_one_line_error(out, f"{bad}:3:", "does not start with a __label__")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_one_line_error(cli("run", "--config", str(config), "--train-file", str(empty)), "empty.txt: file is empty")
    missing_test = cli("run", "--config", str(config), "--test-file", str(tmp_path / "nope.txt"))
    assert_one_line_error(missing_test, "nope.txt: file not found")
    assert not (tmp_path / "tiny.db").exists() and not (tmp_path / "mlflow.db").exists()


def test_unreachable_tracking_server_fails_fast_and_masks_password(tmp_path: Path,
                                                                    tiny_files: dict[str, Path]) -> None:
    config = write_config(tmp_path, tiny_config(tmp_path, tiny_files))
    started = time.monotonic()
    out = cli("run", "--config", str(config), "--tracking-uri", f"http://alice:s3cretpw@127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 60
    assert_one_line_error(out, "tracking server http://alice:***@127.0.0.1:", "unreachable")
    assert "s3cretpw" not in out.stdout + out.stderr
    assert not (tmp_path / "tiny.db").exists()


def test_unreachable_storage_fails_fast_and_masks_password(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    config = write_config(tmp_path, tiny_config(tmp_path, tiny_files))
    url = f"postgresql+psycopg://bob:hunter2pw@127.0.0.1:{free_port()}/optuna"
    out = cli("run", "--config", str(config), "--storage", url)
    assert_one_line_error(out, "storage postgresql+psycopg://bob:***@127.0.0.1:", "unreachable")
    assert "hunter2pw" not in out.stdout + out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # checked before the tracking store is touched


def test_run_resume_and_predict_from_stdin(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    config = write_config(tmp_path, tiny_config(tmp_path, tiny_files, n_trials=2))
    first = cli("run", "--config", str(config), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    trial_lines = [line for line in first.stdout.splitlines() if line.startswith("trial ")]
    assert [line.split()[1] for line in trial_lines] == ["0", "1"]
    assert "champion registered: models:/tiny@champion = version 1" in first.stdout
    second = cli("run", "--config", str(config), "--n-trials", "1", "--cpu-threads", "1", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "1 intra-op thread" in second.stdout  # the device line reads the backend's setting back
    assert [line.split()[1] for line in second.stdout.splitlines() if line.startswith("trial ")] == ["2"]
    assert "2 trials so far" in second.stdout
    pred = cli("predict", "--model", "models:/tiny@champion", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
               stdin="Great book, loved it\nAwful. Broke on day one.\n", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr[-2000:]
    lines = pred.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        label, prob = line.split("\t")
        assert label in {"1", "2"} and 0.5 <= float(prob) <= 1.0


def test_two_runs_creating_the_same_new_study_at_once_both_succeed(tmp_path: Path,
                                                                   tiny_files: dict[str, Path]) -> None:
    """Concurrent creation races on Optuna's and MLflow's schema tables: neither run may fail."""
    config = tiny_config(tmp_path, tiny_files, n_trials=1)
    config["training"] = {"max_epochs": 1, "patience": 0}
    path = write_config(tmp_path, config)
    procs = [subprocess.Popen([PYTHON, "-m", "search", "run", "--config", str(path)], cwd=ROOT, env=cli_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    import optuna
    from mlflow import MlflowClient

    study = optuna.load_study(study_name="tiny", storage=config["storage"])
    assert len(study.trials) == 2
    experiments = MlflowClient(config["tracking"]["uri"]).search_experiments(filter_string="name = 'tiny'")
    assert len(experiments) == 1
