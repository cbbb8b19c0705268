"""The compose file's structure and the Dockerfile's shape (fast, no engine).

The stack itself is built and run for real by `make compose-check` (bench/compose_check.py).
"""

from __future__ import annotations

import re

import yaml

from tests.conftest import ROOT


def load() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_dependencies_and_ports() -> None:
    services = load()["services"]
    assert set(services) == {"postgres", "mlflow", "init", "worker", "dashboard", "serve"}
    assert services["serve"]["profiles"] == ["serve"]  # opt-in
    built = [name for name, service in services.items() if "build" in service]
    assert built == ["init"]  # one image build, shared by the other services
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["mlflow"]
    assert services["init"]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                              "mlflow": {"condition": "service_healthy"}}
    assert services["worker"]["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    assert services["init"]["command"] == ["init"] and services["worker"]["command"] == ["worker"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # scalable
    for name, service in services.items():
        for port in service.get("ports", []):
            assert name in ("mlflow", "dashboard", "serve")
            assert port.startswith("${BIND_ADDRESS:-127.0.0.1}:")


def test_environment_and_mlflow_flags() -> None:
    services = load()["services"]
    for name in ("init", "worker", "dashboard"):
        env = services[name]["environment"]
        assert env["SEARCH_STORAGE"].startswith("postgresql+psycopg://")
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert "${POSTGRES_PASSWORD:?" in env["SEARCH_STORAGE"]  # from .env, never hard-coded
    assert "SEARCH_TARGET_TRIALS" in services["worker"]["environment"]
    flags = " ".join(services["mlflow"]["command"])
    assert "--workers=1" in flags and "--allowed-hosts=mlflow:5000" in flags
    assert "--backend-store-uri=postgresql+psycopg://" in flags and "--artifacts-destination=" in flags
    assert services["mlflow"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert set(load()["volumes"]) >= {"pgdata", "mlartifacts"}


def test_env_example_and_dockerfile() -> None:
    example = (ROOT / ".env.example").read_text()
    referenced = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "docker-compose.yml").read_text()))
    defined = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    assert referenced - {"VARIANT", "MLFLOW_DB"} <= defined
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.index("requirements.lock") < dockerfile.index("COPY --chown=search:search search")
    assert "USER search" in dockerfile and "tensorflow[and-cuda]" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "search"]' in dockerfile
