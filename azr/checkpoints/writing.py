"""Writing checkpoint directories: atomically, with the run's history chunks stored once (the format is read by
:class:`azr.checkpoints.checkpoint.Checkpoint`)."""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
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
    files = {**files, SCHEDULER_FILE: json.dumps(contents.plan, indent=1).encode()}
    states = {OPTIMIZER_FILE: contents.optimizer, RNG_FILE: contents.rng_state}
    if contents.reference is not None:
        states[REFERENCE_FILE] = contents.reference
    try:
        path = save_checkpoint(contents.run_dir, contents.name, model=model, files=files, state=contents.values,
                               history=contents.history, weights=contents.weights, tensor_states=states,
                               workers=workers)
    except Exception as exc:
        reason = _disk_failure(contents, exc)
        if reason is None:
            raise
        raise CheckpointError(reason) from exc
    log.info("saved checkpoint %s", path)
    return path


def _disk_failure(contents: CheckpointContents, exc: Exception) -> str | None:
    """What to tell the user when a checkpoint cannot be written because of the disk (full, read-only, …); None for
    any other failure."""
    where = str(contents.run_dir)
    if storage.is_full_disk(exc):
        free = mib_text(storage.free_space(contents.run_dir))
        return (f"The disk holding {where!r} is full ({free} free): {contents.name} could not be written; "
                "free some space")
    if isinstance(exc, OSError):
        return f"{contents.name} could not be written in {where!r} ({exc.strerror or exc})"
    return None


def save_checkpoint(run_dir: Path, name: str, *, model, files: dict[str, storage.Buffer], state: dict[str, Any],
                    history: History | FrozenHistory | EncodedHistory,
                    weights: dict[str, torch.Tensor] | None = None,
                    tensor_states: dict[str, Any] | None = None, workers: int = storage.WORKERS) -> Path:
    """Write a complete checkpoint atomically and return its path.

    The model's weights are ``weights`` (a copy of its ``state_dict()``) when given, else its own.
    ``files`` are the sidecars and tokenizer files as bytes (written and hashed from memory
    in up to ``workers`` threads while the model is saved with ``save_pretrained``; every file is fsynced);
    ``tensor_states`` are nested states written as safetensors files (:func:`azr.checkpoints.tensorfile.write`); the
    history's new full chunks go to ``<run_dir>/history/``. A crash at any moment leaves either no new checkpoint or a
    complete one.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    for directory in (run_dir, run_dir / CHUNK_DIR):
        if directory.is_dir():
            storage.remove_stale_temporaries(directory)
    digests = history.chunk_digests()
    _store_chunks(run_dir / CHUNK_DIR, digests, lambda number, digest: history.chunk(number))
    temp = storage.hidden_sibling(run_dir, storage.TEMP_PREFIX, name)
    try:  # from the mkdir on: a signal at any point leaves no temporary behind
        temp.mkdir()
        blobs = {**files, HISTORY_FILE: history.tail()}
        with storage.ParallelWrites(temp, workers) as writes:
            writes.write_all(blobs)
            # meanwhile the threads write the blobs
            from transformers.utils import logging as transformers_logging  # noqa: PLC0415 (loaded with the model)
            with progress_bars_off(transformers_logging):  # its "Writing model shards" bar
                model.save_pretrained(temp, safe_serialization=True, state_dict=weights)
            if tensor_states:
                from azr.checkpoints import (
                    tensorfile,  # noqa: PLC0415  (torch: not for the commands that only copy or list)
                )
                for filename, tensor_state in tensor_states.items():
                    tensorfile.write(temp / filename, tensor_state)
            written = writes.adopt_others().digests()
        full_state = {**state, "format_version": FORMAT_VERSION, "name": name,
                      "history": {"length": len(history), "chunks": digests, "tail": HISTORY_FILE},
                      "files": dict(sorted(written.items()))}
        storage.write_bytes(temp / STATE_FILE, seal(full_state))
        storage.publish(temp, run_dir / name)
    except BaseException:
        storage.discard(temp) if temp.exists() else None
        raise
    return run_dir / name


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
    """Make the files of ``checkpoint`` that have the same recorded sha256 as ``twin``'s hard links to them (a
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
