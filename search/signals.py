"""Graceful stop on SIGTERM/SIGINT: finish the current batch, fail the trial, exit 0."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


class Interrupted(Exception):
    """Raised inside a trial when a stop was requested."""


class GracefulStop:
    """First signal: set ``requested`` (checked between batches); second: hard stop."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._on_request: list[Callable[[], None]] = []

    def install(self) -> GracefulStop:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            signal.signal(signum, signal.SIG_DFL)
            raise KeyboardInterrupt
        self.request(signal.Signals(signum).name)

    def request(self, reason: str) -> None:
        """Ask for a graceful stop without a signal (e.g. a budget spent); ``reason`` names it."""
        self.requested = True
        self.signal_name = reason
        for hook in list(self._on_request):
            hook()

    @contextmanager
    def on_request(self, hook: Callable[[], None]) -> Iterator[None]:
        """Call ``hook`` if a stop is requested inside the block (e.g. set ``model.stop_training``).

        Keras checks ``stop_training`` after every batch at no cost, where a per-batch callback
        would force a host sync each batch.
        """
        self._on_request.append(hook)
        try:
            if self.requested:
                hook()
            yield
        finally:
            self._on_request.remove(hook)

    def check(self) -> None:
        if self.requested:
            raise Interrupted(f"interrupted by {self.signal_name}")
