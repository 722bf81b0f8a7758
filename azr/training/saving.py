"""Turning a run into a checkpoint: which state is consistent at this moment, and the bytes of each file.

A step changes the data position and the RNG before the update and the weights and optimizer during it.
:class:`StepSnapshot` remembers the state from before the step while the update has not started, so an
interrupt there saves the state from before the step; an interrupt during the update saves nothing (the step
was cut half-way, and no consistent state exists until it ends).

:class:`CheckpointSaver` writes a checkpoint now, or in the background (cf. PyTorch DCP's ``async_save``). On a CPU
(``AZR_SAVE_WRITER=pagecache``, see :func:`~azr.checkpoints.writerprocess.background_writer`) the blocking part writes
the checkpoint's files into its hidden temporary directory without fsync: into the page cache, which is not this
process's memory; a thread then makes them durable, publishes and verifies the checkpoint. Otherwise the blocking part
copies the state to CPU memory (shared memory, where a writer process can take it: see
:mod:`azr.checkpoints.writerprocess`), and a thread hands it to the writer process, or writes it itself, verifies it and
reports it while training goes on. At most one save is in flight; the next save, and the end of the run, wait
for it.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import pickle
import platform
import queue
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import transformers

from azr import __version__
from azr.checkpoints import storage
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.history import CHUNK_DIR
from azr.checkpoints.names import CONFIG_FILE, checkpoint_name
from azr.checkpoints.staging import Stager
from azr.checkpoints.writerprocess import (
    NICENESS,
    SaveJob,
    WriterFailed,
    WriterProcess,
    background_writer,
    lower_priority,
)
from azr.checkpoints.writing import (
    CheckpointContents,
    begin_checkpoint,
    finish_checkpoint,
    missing_chunks,
    write_contents,
)
from azr.errors import CheckpointError
from azr.models.causal_lm import model_config_of
from azr.models.lora import is_peft_model
from azr.training import distributed, rng
from azr.training.state import TrainState

log = logging.getLogger(__name__)


class StepSnapshot:
    """Where the current step is: ``idle`` (between steps), ``before_update`` or ``updating``."""

    def __init__(self) -> None:
        self.phase = "idle"
        self.position: dict[str, int] = {}
        self.rng_state: dict[str, Any] = {}

    def begin(self, state: TrainState, device: torch.device) -> None:
        """A step starts: remember the data position and RNG it starts from."""
        self.position, self.rng_state = state.sampler.state_dict(), rng.capture(device)
        self.phase = "before_update"

    def updating(self) -> None:
        """The optimizer starts changing the weights."""
        self.phase = "updating"

    def end(self) -> None:
        """The step and its bookkeeping are done."""
        self.phase = "idle"


class SaveWorker(threading.Thread):
    """The daemon thread that writes a run's background saves, one at a time (a process killed meanwhile leaves
    only a temporary). Started once per run, so that a save does not wait for a new thread to be scheduled. With a
    ``niceness`` (Linux), it and the threads it starts run below training's CPU priority, as a writer process does."""

    def __init__(self, niceness: int = 0) -> None:
        super().__init__(name="azr-checkpoint-save", daemon=True)
        self._jobs: queue.SimpleQueue[tuple[Future, Callable[[], Path]] | None] = queue.SimpleQueue()
        self._niceness = niceness

    def submit(self, write: Callable[[], Path]) -> Future:
        """Queue ``write``; the future holds its path or its exception."""
        future: Future = Future()
        self._jobs.put((future, write))
        return future

    def stop(self) -> None:
        """End the thread after the queued saves."""
        self._jobs.put(None)

    def run(self) -> None:
        if self._niceness and sys.platform == "linux":  # a thread's own priority (elsewhere the call takes a pid)
            lower_priority(threading.get_native_id(), self._niceness)
        while (job := self._jobs.get()) is not None:
            future, write = job
            try:
                future.set_result(write())
            except BaseException as exc:  # handed to the training thread by CheckpointSaver.finished
                future.set_exception(exc)


class CheckpointSaver:
    """Writes a run's checkpoints for one model and tokenizer (whose files are serialised once)."""

    def __init__(self, model, tokenizer, device: torch.device) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self._tokenizer_files: dict[str, bytes] | None = None
        self._mode = background_writer(model, device)  # "process", "thread" or "pagecache"
        self._stager = Stager(shared=self._mode == "process")  # allocates on its first stage: never in "pagecache"
        self._writer: WriterProcess | None = None
        self._settings_of: tuple[Any, dict[str, Any]] | None = None
        self._worker: SaveWorker | None = None
        self._pending: tuple[str, Future] | None = None  # the name of the save in flight, and its result

    def save(self, run, kind: str, snapshot: StepSnapshot, collective: bool = True) -> Path | None:
        """Save ``model_<kind>_<iteration>`` in the run directory now; return its path, or None when a step was cut
        mid-update. Collect the save in flight with :meth:`finished` first.

        In a process group only rank 0 writes; a ``collective`` save (every process calls it) also stores every
        process's random state.
        """
        self._check_collected()
        contents = self._contents(run, kind, snapshot, background=False, collective=collective)
        if contents is None or not distributed.is_main():
            return None if contents is None else contents.run_dir / contents.name
        return self._write(contents)

    def save_in_background(self, run, kind: str, snapshot: StepSnapshot) -> None:
        """Take the state now: write the checkpoint's files without fsync (``pagecache``), or copy the state to CPU
        memory; finish and verify the checkpoint in a thread (:meth:`finished` gives its path). Collect the previous
        one first: the copy reuses its buffers.
        """
        self._check_collected()
        main = distributed.is_main()  # every process gives its random state; rank 0 alone copies and writes
        contents = self._contents(run, kind, snapshot, background=main, collective=True)
        if contents is None or not main:
            return
        if self._mode == "pagecache":
            unpublished = begin_checkpoint(contents, self.model, self._files())  # before the next step changes it
            job = functools.partial(_finished_and_verified, unpublished)
        else:
            job = functools.partial(self._write_verified, contents)
        if self._worker is None:
            self._worker = SaveWorker(NICENESS if self._mode == "pagecache" else 0)
            self._worker.start()
        self._pending = contents.name, self._worker.submit(job)

    def finished(self, wait: bool) -> Path | None:
        """Return the path of the background save that ended since the last call (with ``wait``: waiting for the
        one in flight), else None. Raises CheckpointError when it failed."""
        if self._pending is None or (not wait and not self._pending[1].done()):
            return None
        (name, future), self._pending = self._pending, None
        if (error := future.exception()) is not None:
            raise CheckpointError(f"Saving {name} in the background failed ({type(error).__name__}: {error}); "
                                  "the run stopped there, resume it from its last checkpoint.") from error
        return future.result()

    def open_background(self) -> None:
        """A run with background saves starts: take a writer process (one starting up imports meanwhile)."""
        if self._mode == "process" and self._writer is None and distributed.is_main():
            writer = None
            try:
                writer = WriterProcess.take()
                writer.prepare(self.model)  # a model class no other process can import fails here
            except (OSError, WriterFailed, pickle.PicklingError, AttributeError) as exc:
                log.warning("no checkpoint writer process (%s); this process writes the run's saves", exc)
                if writer is not None:
                    writer.give_back()
                return
            self._writer = writer

    def close(self) -> None:
        """End the writing thread once the save in flight (if any) is written, give the writer process back and
        release the staged copy's memory; a later save starts another thread."""
        if self._worker is not None:
            self._worker.stop()
            self._worker.join()  # no writing thread outlives its run (nor the interpreter's shutdown)
            self._worker = None
        if self._writer is not None:
            self._writer.give_back()
            self._writer = None
        self._stager.release()

    def _check_collected(self) -> None:
        if self._pending is not None:
            raise RuntimeError("the previous background save was not collected with finished()")

    def _contents(self, run, kind: str, snapshot: StepSnapshot, background: bool,
                  collective: bool) -> CheckpointContents | None:
        """The checkpoint's contents now; for a ``background`` save the history frozen and (unless its files are
        written at once: ``pagecache``) every tensor a CPU copy later steps cannot change; with ``collective`` (every
        process calls it) the random states of all processes."""
        if snapshot.phase == "updating":
            log.warning("not saving %s: the step was interrupted while the weights were being updated", kind)
            return None
        state = run.state
        values, tensors = state.state_dict(), state.tensors()
        plan = values.pop("plan")
        if snapshot.phase == "before_update":
            values["data_position"], rng_state = snapshot.position, snapshot.rng_state
        else:
            rng_state = rng.capture(self.device)
        if collective:
            rng_state = distributed.gather_rng(rng_state)
        values.update(
            kind=kind, max_iterations=run.config.max_iterations, timestamp=datetime.now(timezone.utc).isoformat(),
            **self._settings(run.config), lr=state.plan.lr_at(state.iteration), device_type=self.device.type,
            processes=distributed.size())
        tensors.update(optimizer=run.optimizer.state_dict(), rng=rng_state)
        if background and self._mode != "pagecache":
            tensors = self._stager.stage({**tensors, "weights": self.model.state_dict()})
        return CheckpointContents(run.run_dir, checkpoint_name(kind, state.iteration), values, plan,
                                  tensors["optimizer"], tensors["rng"],
                                  state.history.frozen() if background else state.history, tensors.get("weights"),
                                  tensors.get("reference"))

    def _settings(self, config) -> dict[str, Any]:
        """The run's settings, the model's and the versions as stored in the state: built once per run config
        (a run never changes its config in place) rather than on every save while training waits; read only."""
        if self._settings_of is None or self._settings_of[0] is not config:
            model_config = model_config_of(self.model)
            self._settings_of = config, {
                "train_config": config.to_dict(), "model_config": model_config.to_dict() if model_config else None,
                "versions": {"azr": __version__, "torch": torch.__version__,
                             "transformers": transformers.__version__, "python": platform.python_version()}}
        return self._settings_of[1]

    def _write(self, contents: CheckpointContents, workers: int = storage.WORKERS) -> Path:
        """Write the checkpoint atomically (in up to ``workers`` threads besides this one); return its path."""
        return write_contents(contents, self.model, self._files(), workers)

    def _write_verified(self, contents: CheckpointContents) -> Path:
        """Write the checkpoint and read it back against its checksums: in the writer process when there is one,
        else in one thread besides this one, so that a save in the background leaves the other cores to
        training."""
        path = self._write_in_writer(contents)
        return path if path is not None else _verified(self._write(contents, workers=1))

    def _write_in_writer(self, contents: CheckpointContents) -> Path | None:
        """The path of the checkpoint the writer process wrote and verified; None when there is no writer or it
        failed (then this process writes the save, and the rest of the run's)."""
        try:
            if self._writer is None or not self._writer.ready():  # until it is, this process writes
                return None
        except WriterFailed as exc:
            return self._without_writer(exc)
        history = contents.history.encoded(missing_chunks(contents.run_dir / CHUNK_DIR,
                                                         contents.history.chunk_digests()))
        job = SaveJob(dataclasses.replace(contents, history=history), self._files())
        try:
            return self._writer.write(job, self._stager.arena)
        except WriterFailed as exc:
            return self._without_writer(exc)

    def _without_writer(self, exc: WriterFailed) -> None:
        log.warning("the checkpoint writer process failed (%s); this process writes the run's saves", exc)
        self._writer.stop()
        self._writer = None

    def _files(self) -> dict[str, bytes]:
        """The files a checkpoint holds besides the state: the tokenizer's, and a LoRA run's base config."""
        return {**self._tokenizer_bytes(), **self._base_config()}

    def _base_config(self) -> dict[str, bytes]:
        """A LoRA run's base model config (peft saves only the adapter), for architecture checks and inspect."""
        if not is_peft_model(self.model):
            return {}
        return {CONFIG_FILE: self.model.get_base_model().config.to_json_string().encode()}

    def _tokenizer_bytes(self) -> dict[str, bytes]:
        """The tokenizer's files, serialised on the first save (a run never changes its tokenizer)."""
        if self._tokenizer_files is None:
            with tempfile.TemporaryDirectory(prefix="azr-tokenizer-") as directory:
                self.tokenizer.save_pretrained(directory)
                self._tokenizer_files = {p.name: p.read_bytes() for p in Path(directory).iterdir() if p.is_file()}
        return self._tokenizer_files


def _finished_and_verified(unpublished) -> Path:
    """Finish a checkpoint written through the page cache (in one thread besides this one) and read it back."""
    return _verified(finish_checkpoint(unpublished, workers=1))


def _verified(path: Path) -> Path:
    """``path``, once its checkpoint is read back against its checksums; raises CheckpointError."""
    Checkpoint.open(path)
    return path
