"""`dashboard` (optuna-dashboard on the study storage) and `ui` (MLflow UI with this project's flags)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from search.urls import mask_url


def run_dashboard(args: argparse.Namespace) -> int:
    import optuna_dashboard

    from search.config import load_config
    from search.errors import UsageError
    from search.storage import check_sqlite_path, is_sqlite, make_storage

    url = args.storage or (load_config(args.config).storage_url if args.config else None)
    if not url:
        raise UsageError("dashboard needs --storage (or --config / SEARCH_STORAGE)")
    if is_sqlite(url):
        check_sqlite_path(url, must_exist=True)
    storage = make_storage(url)  # fail fast, and pool_pre_ping for PostgreSQL
    # optuna-dashboard answers any Host header and can delete studies: accept only the names
    # this server is reached by (DNS rebinding), as the MLflow server does.
    hosts = allowed_host_names(args.host, args.port, args.allowed_hosts)
    app = HostCheck(optuna_dashboard.wsgi(storage), hosts)
    print(f"optuna-dashboard on http://{args.host}:{args.port} for {mask_url(url)}", flush=True)
    # As PID 1 in a container Python ignores SIGTERM unless a handler is set: `docker stop`
    # would wait its full grace period and then kill.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    with make_server(args.host, args.port, app, handler_class=_QuietHandler) as server:
        server.serve_forever()
    return 0


def allowed_host_names(host: str, port: int, extra: str | None) -> set[str]:
    """Host headers a local UI accepts: its own address and localhost, with and without the port."""
    hosts = {host, "localhost", "127.0.0.1"}
    hosts |= {f"{h}:{port}" for h in list(hosts)}
    if extra:
        hosts.update(h.strip() for h in extra.split(",") if h.strip())
    return hosts


class HostCheck:
    """WSGI middleware: 403 for a Host header that is not allowed."""

    def __init__(self, app: Any, hosts: set[str]):
        self.app, self.hosts = app, {h.lower() for h in hosts}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        host = environ.get("HTTP_HOST", "").lower()
        if host not in self.hosts:
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"Invalid Host header\n"]
        return self.app(environ, start_response)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - wsgiref's signature
        pass


def mlflow_ui_command(tracking_uri: str, host: str, port: int, allowed_hosts: str | None = None) -> list[str]:
    hosts = allowed_host_names(host, port, allowed_hosts)
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
    if not uri.startswith(("sqlite:", "file:")) and "://" in uri:
        from search.storage import check_reachable

        check_reachable(uri)  # a database store that does not answer would hang the UI silently
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
    command = mlflow_ui_command(uri, args.host, args.port, args.allowed_hosts)
    print(f"MLflow UI on http://{args.host}:{args.port} for {mask_url(uri)}", flush=True)
    os.execvpe(command[0], command, env)
    return 0  # not reached
