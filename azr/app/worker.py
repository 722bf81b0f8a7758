"""The app's training worker: one run at a time in a background thread, and snapshots of its newest status.

:meth:`Worker.launch` prepares the run in the thread (tokenizer, model, checkpoint) and raises what the
preparation raised to its caller; then the thread drives the trainer's generator of statuses. Stop and interrupt
requests reach the trainer even while the run is still being prepared. Readers get a :class:`Snapshot`, taken
under the worker's lock, of the newest status.
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azr.checkpoints.history import History
from azr.errors import AZRError
from azr.training.status import TrainingStatus

log = logging.getLogger(__name__)

HISTORY_READS = 3  # attempts at reading new history records while the worker appends one
BUSY = "A training run is already active; press Stop (or call /stop_training) and wait until it is paused."

Start = Callable[[], tuple[Any, Iterator[TrainingStatus]]]  # a trainer (or a SlicedRun) and its statuses
Source = tuple[Path, str]  # a resumed checkpoint: its path and listed name


@dataclass(frozen=True)
class Snapshot:
    """The worker at one moment: its newest status, whether a run is active, which launch, run and source."""

    status: TrainingStatus
    active: bool
    launch: int  # counts the starts and resumes; the page resets its curves when it changes
    run_dir: Path | None
    source: Source | None

    def records(self, after: int) -> list[dict[str, Any]]:
        """Return the history records with ``after < iteration <=`` the status's, without copying the older ones.

        The worker appends to the history while this reads it: a record it is appending can be half there (an
        IndexError); the records up to the status's iteration are complete, so reading again gets them.
        """
        for _ in range(HISTORY_READS):
            try:
                return [r for r in self.status.history.since(after) if r["iteration"] <= self.status.iteration]
            except IndexError:
                continue
        return []


class Worker:
    """Runs one training run at a time in a daemon thread; every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._trainer: Any = None  # what the running start() returned: stop_training() and interrupt()
        self._status: TrainingStatus | None = None
        self._launch = 0
        self._run_dir: Path | None = None
        self._source: Source | None = None
        self._closing = False
        self._stop_requested = False

    def _active(self) -> bool:
        """True while a run is being prepared or trains (call with the lock held)."""
        alive = self._thread is not None and self._thread.is_alive()
        return alive and (self._status is None or self._status.is_training)

    def launch(self, start: Start, target: int, run_dir: Path, source: Source | None) -> None:
        """Run ``start`` and then its statuses in the thread; raise AZRError when a run is active or the app is
        closing, and what ``start`` raised (the previous status stays then)."""
        ready: queue.Queue[BaseException | None] = queue.Queue(maxsize=1)
        with self._lock:
            if self._closing:
                raise AZRError("The app is shutting down; start training again after it restarts.")
            if self._active():
                raise AZRError(BUSY)
            previous = (self._status, self._source, self._run_dir, self._launch)
            self._status = TrainingStatus("starting", 0, target, message="Preparing the run…", history=History())
            self._source, self._run_dir, self._launch = source, run_dir, self._launch + 1
            self._stop_requested = False
            self._thread = threading.Thread(target=self._work, args=(start, ready), name="azr-training-job",
                                            daemon=True)
            self._thread.start()
        error = ready.get()
        if error is not None:
            with self._lock:
                self._status, self._source, self._run_dir, self._launch = previous
            raise error

    def _work(self, start: Start, ready: queue.Queue[BaseException | None]) -> None:
        try:
            trainer, statuses = start()
        except Exception as exc:  # handed to the caller of launch()
            ready.put(exc)
            return
        with self._lock:
            self._trainer = trainer
            if self._closing:
                trainer.interrupt()
            elif self._stop_requested:
                trainer.stop_training()
        ready.put(None)
        try:
            for status in statuses:
                with self._lock:
                    self._status = status
        except Exception as exc:  # the trainer saved a checkpoint and yielded an "error" status first
            log.exception("training failed")
            with self._lock:
                if self._status is not None and self._status.is_training:
                    self._status = dataclasses.replace(self._status, state="error",
                                                       message=f"Training failed: {exc}")
        finally:
            with self._lock:
                if self._trainer is trainer:  # a new run may already have started
                    self._trainer = None

    def stop(self) -> bool:
        """Ask the run to pause after the current batch (saving ``model_paused_<N>``); False when none runs."""
        with self._lock:
            if not self._active():
                return False
            self._stop_requested = True  # applied after preparation when the run is still being prepared
            trainer = self._trainer
        if trainer is not None:
            trainer.stop_training()
        return True

    def interrupt(self) -> None:
        """Refuse new runs and ask the current one to save ``model_interrupted_<N>`` (for SIGTERM/SIGINT)."""
        with self._lock:
            self._closing = True
            trainer = self._trainer
        if trainer is not None:
            trainer.interrupt()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread (training and its final pushes) to finish; return True when it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def snapshot(self) -> Snapshot:
        """Return the newest status (an idle one before the first run) and what goes with it."""
        with self._lock:
            status = self._status or TrainingStatus("idle", 0, 0, message="No training run yet; press Start.",
                                                   history=History())
            return Snapshot(status, self._active(), self._launch, self._run_dir, self._source)

    def uses(self, path: Path) -> bool:
        """True while an active run resumed from the checkpoint at ``path`` or saved it last."""
        with self._lock:
            in_use = [self._source[0] if self._source else None, self._status.checkpoint if self._status else None]
            return self._active() and path.resolve() in {Path(p).resolve() for p in in_use if p}
