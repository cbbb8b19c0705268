"""Who this process is: the worker name used in trial attributes, MLflow tags and seeds."""

from __future__ import annotations

import os
import socket


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
