"""The errors a user can cause. Each message is one line naming the file, key or URL (masked).

Kept in one import-light module so the CLI can catch them without importing Optuna, MLflow
or Keras first (``predict`` on a local bundle imports none of them).
"""

from __future__ import annotations

from models.errors import BundleError

__all__ = ["BundleError", "ConfigError", "FailingTrialsError", "RegistryError", "StorageError", "TrackingError",
           "UsageError"]


class UsageError(Exception):
    """A bad command-line argument."""


class ConfigError(ValueError):
    """A bad study configuration; the message is one line naming the key."""


class StorageError(RuntimeError):
    """Storage unreachable or unusable; the message is one line with the URL masked."""


class TrackingError(RuntimeError):
    """Tracking server unreachable or unusable at start-up (one line, URL masked)."""


class RegistryError(RuntimeError):
    """A registered model or alias that is missing or unusable."""



class FailingTrialsError(RuntimeError):
    """A worker's last trials all failed (``worker.max_consecutive_failures``); names the last reason."""
