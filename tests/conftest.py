from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from search.cli import quiet_libraries  # noqa: E402

quiet_libraries()  # the same quiet environment the CLI sets; subprocesses inherit it
os.environ.pop("MLFLOW_TRACKING_URI", None)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"


def demo_lines(name: str, n: int, start: int = 0) -> list[str]:
    with gzip.open(DEMO / name, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    return lines[start : start + n]


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real review lines (the committed demo slice): 600 train, 200 test."""
    d = tmp_path_factory.mktemp("tiny")
    train, test = d / "train.txt", d / "test.txt"
    train.write_text("\n".join(demo_lines("train.txt.gz", 600)) + "\n", encoding="utf-8")
    test.write_text("\n".join(demo_lines("test.txt.gz", 200)) + "\n", encoding="utf-8")
    return {"train": train, "test": test}


def tiny_config(tmp_path: Path, files: dict[str, Path], **overrides: Any) -> dict[str, Any]:
    """A study config whose trials take a second or two on a CPU."""
    config: dict[str, Any] = {
        "study_name": "tiny",
        "storage": f"sqlite:///{tmp_path}/tiny.db",
        "seed": 7,
        "n_trials": 3,
        "sampler": {"type": "tpe", "n_startup_trials": 2},
        "pruner": {"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        "data": {
            "train_file": str(files["train"]),
            "test_file": str(files["test"]),
            "validation_fraction": 0.25,
            "cache_dir": str(tmp_path / "cache"),
        },
        "training": {"max_epochs": 2, "patience": 0},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db"},
        "worker": {"heartbeat_interval": 1, "grace_period": 3},
        # The best trial alone: the tests of trials, workers and the registry check that it is
        # the champion; tests/search/test_ensemble.py covers the default ensemble.
        "champion": {"ensemble_size": 1},
        "search_space": {
            "cell": {"choices": ["SimpleRNN", "GRU"]},
            "bidirectional": {"choices": [False, True]},
            "depth": {"value": 1},
            "embedding_dim": {"choices": [8]},
            "units": {"choices": [4, 8]},
            "max_features": {"choices": [300, 500]},
            "sequence_length": {"choices": [24]},
            "dropout": {"value": 0.0},
            "regularizer": {"choices": ["none", "l2"]},
            "regularizer_strength": {"low": 1e-6, "high": 1e-4, "log": True},
            "initializer": {"choices": ["glorot_uniform", "orthogonal"]},
            "optimizer": {"choices": ["adam", "rmsprop"]},
            "learning_rate": {"low": 3e-3, "high": 2e-2, "log": True},
            "batch_size": {"choices": [32]},
        },
    }
    for key, value in overrides.items():
        config[key] = value
    return config


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


PYTHON = sys.executable


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """A real ``mlflow server`` subprocess (lean: one worker, job execution off)."""

    def __init__(self, root: Path, port: int | None = None):
        self.root = root
        self.port = port or free_port()
        self.proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> MlflowServer:
        import subprocess
        import time
        import urllib.request

        self.root.mkdir(parents=True, exist_ok=True)
        env = cli_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
        bindir = Path(PYTHON).parent
        self.log = open(self.root / "server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(bindir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.root}/server.db",
             "--artifacts-destination", str(self.root / "artifacts"), "--workers", "1",
             "--allowed-hosts", f"127.0.0.1:{self.port},localhost:{self.port},mlflow:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not answer /health in time")

    def stop(self) -> None:
        import os
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except Exception:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server
    server.stop()


class Postgres:
    """A throw-away PostgreSQL 15 cluster on 127.0.0.1 (run as `postgres` when we are root)."""

    def __init__(self) -> None:
        import shutil
        import tempfile

        self.port = free_port()
        # Outside pytest's 0700 temp folder: the postgres user must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="pgtest-", dir="/tmp"))
        self.data = self.dir / "data"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "--no-sync", "-A", "trust", "-U", "postgres", "-D", str(self.data))
        self.start()
        self._psql("CREATE DATABASE optuna")

    def _run(self, *cmd: str) -> None:
        import subprocess

        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=60)

    def _psql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(sql)

    def start(self) -> None:
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off -c max_connections=100"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop("fast")
        self.start()

    def url(self, user: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/optuna"

    def destroy(self) -> None:
        import shutil

        try:
            self.stop("immediate")
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():  # type: ignore[no-untyped-def]
    import shutil

    if not shutil.which("initdb") or not shutil.which("pg_ctl"):
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are not on PATH: install postgresql-15")
    pg = Postgres()
    yield pg
    pg.destroy()
