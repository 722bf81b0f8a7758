"""Graceful SIGINT/SIGTERM for entry points: the first signal asks for a stop, a second one exits at once.

Nothing is installed on import; entry points wrap their training in :func:`graceful_stop`.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class ForcedExit(KeyboardInterrupt):
    """A second signal: stop at once, writing nothing (every checkpoint on disk is already complete)."""


class graceful_stop:  # noqa: N801 - used as a context manager, like contextlib's helpers
    """Within the block, SIGINT and SIGTERM call ``stop()`` once; a second signal raises ForcedExit.

    ``stop`` is usually ``trainer.interrupt`` (or a trainer, whose ``interrupt`` is then used). Only the main
    thread can install handlers; elsewhere the block changes nothing. ``received`` is the first signal seen.
    """

    def __init__(self, stop: Callable[[], None] | object) -> None:
        self._stop = stop if callable(stop) else stop.interrupt  # type: ignore[attr-defined]
        self._previous: dict[int, object] = {}
        self.received: int | None = None

    @property
    def exit_code(self) -> int | None:
        """The shell's exit status for the received signal (130 for SIGINT, 143 for SIGTERM), or None."""
        return EXIT_CODES.get(self.received) if self.received is not None else None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise ForcedExit
        self.received = signum
        self._stop()

    def __enter__(self) -> graceful_stop:
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
