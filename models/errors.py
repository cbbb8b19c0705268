from __future__ import annotations


class BundleError(ValueError):
    """A model bundle (best.h5 + sidecar.json) that is missing, unreadable or inconsistent."""
