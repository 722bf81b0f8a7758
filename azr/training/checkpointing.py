"""The one path of a run's checkpoints: every kind (iter, best, predecay, paused, interrupted, error) is saved by
:meth:`RunSaves.save`, with the kind as data.

A periodic save of an ``async_save`` run is written in the background; any other is written now. Before a save,
the background save in flight is collected: its success is reported like any save, and its failure raises, so a
run never reports success with a checkpoint missing. The hooks' ``on_save`` runs on the training thread.
"""
from __future__ import annotations

import logging
from pathlib import Path

from azr.checkpoints.names import checkpoint_name, iteration_in_name
from azr.checkpoints.writing import share_identical_files
from azr.errors import CheckpointError
from azr.training import distributed
from azr.training.callbacks import TrainerCallback
from azr.training.saving import CheckpointSaver, StepSnapshot
from azr.training.session import Run

log = logging.getLogger(__name__)

REPORTED_KIND = "iter"  # the kind whose saves the run reports in a status of their own
TWINS = {"iter": "best", "best": "iter"}  # kinds a step may be saved as twice: its files are stored once


class RunSaves:
    """The checkpoints of one run: written through ``saver``, announced to ``callbacks``."""

    def __init__(self, saver: CheckpointSaver, run: Run, callbacks: list[TrainerCallback]) -> None:
        self.saver, self.run, self.callbacks = saver, run, callbacks
        self._unreported: list[Path] = []

    def save(self, kind: str, snapshot: StepSnapshot, *, local: bool = False) -> Path | None:
        """Save ``model_<kind>_<iteration>``; return its path (None when it goes on in the background, or when a
        step was cut mid-update).

        Every process takes part (rank 0 writes), except in a ``local`` save: after an error or an interrupt seen
        by this process alone, where the others may never arrive. A failed background save raises
        CheckpointError: before this save, or after it when ``local`` (a stop still saves the state it has).
        """
        failure = self._collect_failure(local)
        if kind == REPORTED_KIND and self.run.config.async_save:
            self.saver.save_in_background(self.run, kind, snapshot)
            return None
        path = self.saver.save(self.run, kind, snapshot, collective=not local)
        if not local:
            distributed.barrier()  # no process runs ahead (or exits) before rank 0 has written the checkpoint
        if path is not None:
            self._saved(kind, path)
        if failure is not None:
            raise failure
        return path

    def collect(self, wait: bool) -> None:
        """Take in the background save that ended (with ``wait``: the one in flight, once it ends); raises
        CheckpointError when it failed."""
        path = self.saver.finished(wait)
        if path is not None:
            self._saved(REPORTED_KIND, path)

    def unreported(self) -> list[Path]:
        """The periodic saves written since the last call, for the run to report."""
        paths, self._unreported = self._unreported, []
        return paths

    def save_error(self, snapshot: StepSnapshot) -> str:
        """Save ``model_error_<N>`` after a failure; return what the final message says of it (when it cannot be
        saved either, e.g. on a full disk: why, and the newest checkpoint that was)."""
        try:
            path = self.save("error", snapshot, local=True)
        except Exception as failure:  # the first failure is the one to report; this one is part of the message
            log.info("saving the error checkpoint failed", exc_info=True)
            newest = f"; the newest checkpoint is {self.run.last_checkpoint}" if self.run.last_checkpoint else ""
            return f"; {checkpoint_name('error', self.run.state.iteration)} could not be saved either " \
                   f"({type(failure).__name__}){newest}"
        return f"; saved {path.name}" if path else "; the step was cut mid-update, so nothing was saved"

    def _collect_failure(self, local: bool) -> CheckpointError | None:
        """Collect the save in flight; its failure raises now, or is returned for a ``local`` save to raise."""
        try:
            self.collect(wait=True)
        except CheckpointError as failure:
            if not local:
                raise
            return failure
        return None

    def _saved(self, kind: str, path: Path) -> None:
        self.run.last_checkpoint = str(path)
        twin = path.parent / checkpoint_name(TWINS.get(kind, kind), iteration_in_name(path.name))
        if twin != path and twin.is_dir():
            share_identical_files(path, twin)
        if kind == REPORTED_KIND:
            self._unreported.append(path)
        for callback in self.callbacks:
            callback.on_save(path, kind)
