"""`dashboard` (optuna-dashboard on the study storage) and `ui` (MLflow UI with this project's flags)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from search.urls import mask_url


def run_dashboard(args: argparse.Namespace) -> int:
    import optuna_dashboard

    from search.cli import UsageError
    from search.config import load_config
    from search.storage import make_storage

    url = args.storage or (load_config(args.config).storage_url if args.config else None)
    if not url:
        raise UsageError("dashboard needs --storage (or --config / SEARCH_STORAGE)")
    storage = make_storage(url)  # fail fast, and pool_pre_ping for PostgreSQL
    print(f"optuna-dashboard on http://{args.host}:{args.port} for {mask_url(url)}", flush=True)
    optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    return 0


def mlflow_ui_command(tracking_uri: str, host: str, port: int, allowed_hosts: str | None = None) -> list[str]:
    hosts = {f"{host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}", host, "localhost", "127.0.0.1"}
    if allowed_hosts:
        hosts.update(h.strip() for h in allowed_hosts.split(",") if h.strip())
    executable = Path(sys.executable).with_name("mlflow")
    return [str(executable if executable.exists() else "mlflow"), "server",
            "--backend-store-uri", tracking_uri, "--host", host, "--port", str(port), "--workers", "1",
            "--allowed-hosts", ",".join(sorted(hosts))]


def run_mlflow_ui(args: argparse.Namespace) -> int:
    from search.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):
        print(f"{mask_url(uri)} is already a server: open it in a browser", flush=True)
        return 0
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
    command = mlflow_ui_command(uri, args.host, args.port, args.allowed_hosts)
    print(f"MLflow UI on http://{args.host}:{args.port} for {mask_url(uri)}", flush=True)
    os.execvpe(command[0], command, env)
    return 0  # not reached
