"""Graceful SIGINT/SIGTERM for entry points: the first signal asks for a stop, a second one exits at once.

Nothing is installed on import; entry points wrap their training in :func:`graceful_stop`.

The *grace period* (``AZR_GRACE_PERIOD_S``, default 10 s: Docker's, and under Kubernetes' 30 s) is the time the
process gives itself after the first signal: waits that need not finish (pushes to a Hub that does not answer)
end by :func:`stop_deadline`, half-way through it, which leaves the other half for saving, messages and the
interpreter's exit, so the process ends within the grace period whatever the network does.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
GRACE_ENV = "AZR_GRACE_PERIOD_S"
DEFAULT_GRACE_S = 10.0

log = logging.getLogger(__name__)
_deadline: list[float] = []  # after a signal: the time by which waits that can be cut should end
_received: list[int] = []  # the last signal a graceful_stop of this process received


def grace_period_s() -> float:
    """Return the grace period in seconds (``AZR_GRACE_PERIOD_S``; the default for a value that is not positive)."""
    try:
        value = float(os.environ.get(GRACE_ENV) or DEFAULT_GRACE_S)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        log.warning("%s must be a positive number of seconds; using %s", GRACE_ENV, DEFAULT_GRACE_S)
        return DEFAULT_GRACE_S
    return value


def stop_deadline() -> float | None:
    """Return the ``time.monotonic()`` by which waits that can be cut should end after a signal (half-way through
    the grace period), or None (no signal)."""
    return _deadline[0] if _deadline else None


def last_exit_code() -> int | None:
    """The shell's exit status for the last signal a :class:`graceful_stop` of this process received, or None:
    for a command that ends with KeyboardInterrupt after a run inside it stopped on that signal."""
    return EXIT_CODES.get(_received[0]) if _received else None


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
        self._grace_s = DEFAULT_GRACE_S

    @property
    def exit_code(self) -> int | None:
        """The shell's exit status for the received signal (130 for SIGINT, 143 for SIGTERM), or None."""
        return EXIT_CODES.get(self.received) if self.received is not None else None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise ForcedExit
        self.received = signum
        _received[:] = [signum]
        _deadline[:] = [time.monotonic() + self._grace_s / 2]
        self._stop()

    def __enter__(self) -> graceful_stop:
        self._grace_s = grace_period_s()
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        _deadline.clear()
