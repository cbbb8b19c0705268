"""Registry edge cases against a real ``mlflow server``."""

from __future__ import annotations

import threading
from typing import Any

from mlflow import MlflowClient

from search.registry import set_alias
from search.tracking import CHAMPION_ALIAS
from tests.conftest import MlflowServer


def test_workers_setting_the_champion_alias_at_once_all_succeed(mlflow_server: MlflowServer) -> None:
    # Several workers finishing together each point the alias at the same version; MLflow's SQL
    # store inserts the alias row without a lock, so without set_alias's retry some of them
    # raised UNIQUE-constraint errors (seen in CI as a worker exiting 1 after its trials).
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    experiment = client.create_experiment("alias-race")
    run = client.create_run(experiment)
    name = "alias-race"
    client.create_registered_model(name)
    version = client.create_model_version(name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    errors: list[BaseException] = []
    for _ in range(5):  # each round starts from "no alias", the state where the INSERTs collide
        try:
            client.delete_registered_model_alias(name, CHAMPION_ALIAS)
        except Exception:
            pass
        barrier = threading.Barrier(6)

        def worker(barrier: Any = barrier) -> None:
            own = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
            barrier.wait()
            try:
                set_alias(own, name, version.version)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[0]
        assert client.get_model_version_by_alias(name, CHAMPION_ALIAS).version == version.version
