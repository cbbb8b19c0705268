from __future__ import annotations


class DataError(ValueError):
    """Bad input data. The message is one line that names the file (and line when known)."""
