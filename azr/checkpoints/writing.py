"""Writing checkpoint directories: atomically, with the run's history chunks stored once (the format is read by
:class:`azr.checkpoints.checkpoint.Checkpoint`)."""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azr.checkpoints import storage
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.history import CHUNK_DIR, EncodedHistory, FrozenHistory, History, chunk_path
from azr.checkpoints.names import HISTORY_FILE, OPTIMIZER_FILE, REFERENCE_FILE, RNG_FILE, SCHEDULER_FILE
from azr.checkpoints.statefile import FORMAT_VERSION, STATE_FILE, read_state, seal
from azr.errors import CheckpointError
from azr.utils.quiet import progress_bars_off
from azr.utils.units import mib_text

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass
class CheckpointContents:
    """Everything a checkpoint holds, taken at one moment: ``weights`` None means the model's own (a save now)."""

    run_dir: Path
    name: str
    values: dict[str, Any]
    plan: dict[str, Any]
    optimizer: dict[str, Any]
    rng_state: dict[str, Any]
    history: History | FrozenHistory | EncodedHistory
    weights: dict[str, torch.Tensor] | None
    reference: dict[str, torch.Tensor] | None  # the self-play reference policy, when the run has one


def write_contents(contents: CheckpointContents, model, files: dict[str, bytes],
                   workers: int = storage.WORKERS) -> Path:
    """Write the checkpoint of ``contents`` atomically, with ``files`` (the tokenizer's, ...) besides its own, in
    up to ``workers`` threads besides this one; return its path."""
    return finish_checkpoint(begin_checkpoint(contents, model, files), workers)


def begin_checkpoint(contents: CheckpointContents, model, files: dict[str, bytes]) -> Unpublished:
    """Write every file of the checkpoint of ``contents`` (and ``files``) into its hidden temporary directory, not yet
    durable: the part of a save that reads the state, and all a background save on a CPU blocks for (the bytes go
    to the page cache, not to memory of this process). :func:`finish_checkpoint` completes it."""
    files = {**files, SCHEDULER_FILE: json.dumps(contents.plan, indent=1).encode()}
    states = {OPTIMIZER_FILE: contents.optimizer, RNG_FILE: contents.rng_state}
    if contents.reference is not None:
        states[REFERENCE_FILE] = contents.reference
    with _disk_errors(contents.run_dir, contents.name):
        return write_files(contents.run_dir, contents.name, model=model, files=files, state=contents.values,
                           history=contents.history, weights=contents.weights, tensor_states=states)


def finish_checkpoint(unpublished: Unpublished, workers: int = storage.WORKERS) -> Path:
    """Make the files :func:`begin_checkpoint` wrote durable, seal and publish them (in up to ``workers`` threads
    besides this one); return the checkpoint's path."""
    with _disk_errors(unpublished.run_dir, unpublished.name):
        path = unpublished.publish(workers)
    log.info("saved checkpoint %s", path)
    return path


@contextmanager
def _disk_errors(run_dir: Path, name: str) -> Iterator[None]:
    """Turn a failure of the disk (full, read-only, …) into one CheckpointError that says so."""
    try:
        yield
    except Exception as exc:
        reason = _disk_failure(run_dir, name, exc)
        if reason is None:
            raise
        raise CheckpointError(reason) from exc


def _disk_failure(run_dir: Path, name: str, exc: Exception) -> str | None:
    """What to tell the user when a checkpoint cannot be written because of the disk (full, read-only, …); None for
    any other failure."""
    where = str(run_dir)
    if storage.is_full_disk(exc):
        free = mib_text(storage.free_space(run_dir))
        return f"The disk holding {where!r} is full ({free} free): {name} could not be written; free some space"
    if isinstance(exc, OSError):
        return f"{name} could not be written in {where!r} ({exc.strerror or exc})"
    return None


def save_checkpoint(run_dir: Path, name: str, *, model, files: dict[str, storage.Buffer], state: dict[str, Any],
                    history: History | FrozenHistory | EncodedHistory,
                    weights: dict[str, torch.Tensor] | None = None,
                    tensor_states: dict[str, Any] | None = None, workers: int = storage.WORKERS) -> Path:
    """Write a complete checkpoint atomically and return its path: :func:`write_files`, then
    :meth:`Unpublished.publish` in up to ``workers`` threads besides this one."""
    return write_files(run_dir, name, model=model, files=files, state=state, history=history, weights=weights,
                       tensor_states=tensor_states).publish(workers)


@dataclass
class Unpublished:
    """A checkpoint whose files are written in its hidden temporary directory ``temp``, not yet durable: until
    :meth:`publish` renames it, a crash leaves only the temporary (which the next save deletes)."""

    run_dir: Path
    name: str
    temp: Path
    state: dict[str, Any]
    history: History | FrozenHistory | EncodedHistory
    digests: list[str]  # the history's full chunks

    def publish(self, workers: int = storage.WORKERS) -> Path:
        """Store the history's new full chunks, fsync and hash every file (in up to ``workers`` threads), write the
        sealed state file and rename the directory into place; return its path. Any failure deletes the temporary."""
        try:
            _store_chunks(self.run_dir / CHUNK_DIR, self.digests, lambda number, digest: self.history.chunk(number))
            written = storage.in_parallel(storage.fsync_and_hash, list(self.temp.iterdir()), workers)
            full_state = {**self.state, "format_version": FORMAT_VERSION, "name": self.name,
                          "history": {"length": len(self.history), "chunks": self.digests, "tail": HISTORY_FILE},
                          "files": dict(sorted(written.items()))}
            storage.write_fsync(self.temp / STATE_FILE, seal(full_state))
            storage.publish(self.temp, self.run_dir / self.name)
        except BaseException:
            storage.discard(self.temp) if self.temp.exists() else None
            raise
        return self.run_dir / self.name


def write_files(run_dir: Path, name: str, *, model, files: dict[str, storage.Buffer], state: dict[str, Any],
                history: History | FrozenHistory | EncodedHistory, weights: dict[str, torch.Tensor] | None = None,
                tensor_states: dict[str, Any] | None = None) -> Unpublished:
    """Write a checkpoint's files into a new hidden temporary directory of ``run_dir``, without fsync, after removing
    the leftovers of dead saves; :meth:`Unpublished.publish` completes it.

    The model's weights are ``weights`` (a copy of its ``state_dict()``) when given, else its own (written with
    ``save_pretrained``); ``files`` are the sidecars and tokenizer files as bytes; ``tensor_states`` are nested states
    written as safetensors files (:func:`azr.checkpoints.tensorfile.write`); the history's tail is written here, its
    full chunks (which never change) go to ``<run_dir>/history/`` when it is published.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    for directory in (run_dir, run_dir / CHUNK_DIR):
        if directory.is_dir():
            storage.remove_stale_temporaries(directory)
    temp = storage.hidden_sibling(run_dir, storage.TEMP_PREFIX, name)
    try:  # from the mkdir on: a signal at any point leaves no temporary behind
        temp.mkdir()
        for filename, data in {**files, HISTORY_FILE: history.tail()}.items():
            storage.write_new(temp / filename, data)
        from transformers.utils import logging as transformers_logging  # noqa: PLC0415 (loaded with the model)
        with progress_bars_off(transformers_logging):  # its "Writing model shards" bar
            model.save_pretrained(temp, safe_serialization=True, state_dict=weights)
        if tensor_states:
            from azr.checkpoints import tensorfile  # noqa: PLC0415  (torch: not for the commands that only list)
            for filename, tensor_state in tensor_states.items():
                tensorfile.write(temp / filename, tensor_state)
    except BaseException:
        storage.discard(temp) if temp.exists() else None
        raise
    return Unpublished(run_dir, name, temp, state, history, history.chunk_digests())


def missing_chunks(chunk_dir: Path, digests: list[str]) -> list[int]:
    """The numbers of the history chunks (of these digests) that ``chunk_dir`` lacks."""
    stored = {p.name for p in chunk_dir.iterdir()} if chunk_dir.is_dir() else set()  # one listing, not a stat each
    return [number for number, digest in enumerate(digests) if chunk_path(chunk_dir, digest).name not in stored]


def _store_chunks(chunk_dir: Path, digests: list[str], content: Callable[[int, str], bytes]) -> None:
    """Write each history chunk (number, digest) that ``chunk_dir`` lacks, atomically, from ``content``."""
    for number in missing_chunks(chunk_dir, digests):
        storage.write_file_atomically(chunk_path(chunk_dir, digests[number]), lambda: content(number, digests[number]))


def copy_checkpoint(checkpoint: Checkpoint, run_dir: str | Path) -> Path:
    """Copy a checkpoint and its history chunks into ``run_dir`` atomically; return the copy's path."""
    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    _store_chunks(root / CHUNK_DIR, checkpoint.history_chunks,
                  lambda number, digest: chunk_path(checkpoint.chunk_dir, digest).read_bytes())
    storage.copy_directory(checkpoint.path, root / checkpoint.path.name)
    return root / checkpoint.path.name


def share_identical_files(checkpoint: Path, twin: Path) -> None:
    """Make the files of ``checkpoint`` that have the same recorded checksum as ``twin``'s hard links to them (a
    ``model_best_N`` and a ``model_iter_N`` of the same step hold the same weights and optimizer state), so that
    a step saved twice takes its room once. Each file is swapped in with one rename; a file system without hard
    links keeps the copies."""
    mine, theirs = (read_state(path).get("files", {}) for path in (checkpoint, twin))
    for name, digest in mine.items():
        if theirs.get(name) != digest or storage.same_file(checkpoint / name, twin / name):
            continue
        link = storage.hidden_sibling(checkpoint, storage.TEMP_PREFIX, name)
        try:
            os.link(twin / name, link)
        except OSError:
            return
        os.replace(link, checkpoint / name)
