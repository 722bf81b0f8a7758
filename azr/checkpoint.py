"""The checkpoint format, owned by one object: :class:`Checkpoint` reads it, :func:`save_checkpoint` writes it.

A checkpoint ``<run>/model_<kind>_<N>/`` (format 2) holds the transformers files (``model.safetensors``,
``config.json``, tokenizer files), the sidecars ``optimizer.safetensors``, ``rng_state.safetensors``,
``scheduler.json`` and ``history_tail.safetensors``, and ``trainer_state.json``: the run's O(1) state and the
sha256 of every other file. The history's full chunks live once per run in ``<run>/history/`` (see
:mod:`azr.history`). Format 1 (``optimizer.pt``, ``rng_state.pt``, the history inside the JSON) still loads.
Nothing here unpickles: tensors load with safetensors or ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from functools import cached_property
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from . import storage, tensorfile
from .config import TrainConfig
from .errors import CheckpointError
from .history import CHUNK_DIR, History, chunk_path, chunk_problem
from .schedule import LRPlan

FORMAT_VERSION = 2
STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng_state.safetensors"
SCHEDULER_FILE = "scheduler.json"
HISTORY_FILE = "history_tail.safetensors"
V1_OPTIMIZER_FILE, V1_RNG_FILE = "optimizer.pt", "rng_state.pt"
REQUIRED_FILES = {1: (WEIGHTS_FILE, CONFIG_FILE, SCHEDULER_FILE, V1_RNG_FILE),
                  2: (WEIGHTS_FILE, CONFIG_FILE, SCHEDULER_FILE, RNG_FILE, HISTORY_FILE)}
KINDS = ("iter", "paused", "interrupted", "error", "best")  # best: the lowest validation loss so far
NAME_PATTERN = re.compile(rf"^model_({'|'.join(KINDS)})_(\d+)$")
HUB_LIKE = re.compile(r"^([\w.-]+)/([\w.-]+)(@[^/]+)?(/[\w.-]+)?/?$")


def hub_hint(text: str) -> str:
    """Return advice to write ``hf://`` when a missing local path looks like ``user/run[/name]`` (not like
    ``folder/model_iter_N``) and its first folder does not exist here either; otherwise an empty string."""
    match = HUB_LIKE.match(text)
    if match and not NAME_PATTERN.match(match.group(2)) and not Path(match.group(1)).exists():
        return f"; for a Hub repo write hf://{text}"
    return ""


def checkpoint_name(kind: str, iteration: int) -> str:
    """Return the directory name of a checkpoint of ``kind`` at ``iteration``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return f"model_{kind}_{iteration}"


@dataclass
class CheckpointInfo:
    """One checkpoint as listed: what it is and whether it can be loaded."""

    name: str
    path: str
    kind: str
    iteration: int | None
    max_iterations: int | None
    loss: float | None
    val_loss: float | None
    timestamp: str | None
    size_bytes: int
    has_optimizer: bool
    valid: bool
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return asdict(self)


class Checkpoint:
    """One checkpoint: opened (and verified) once, then asked for its parts.

    Use :meth:`open`; the parts are read lazily and at most once each.
    """

    def __init__(self, path: Path, state: dict[str, Any]) -> None:
        self.path = path
        self.state = state
        self._verified: dict[str, storage.Buffer] = {}  # the files as hashed: the parts decode these same bytes

    @classmethod
    def open(cls, ref: str | os.PathLike | Checkpoint, *, token: str | None = None, verify: bool = True
             ) -> Checkpoint:
        """Return the checkpoint at a local path or ``hf://user/run[@rev][/name]`` (downloaded and verified).

        Raises CheckpointError for a missing, unreadable, newer-format or (with ``verify``) damaged checkpoint,
        HubError when a Hub checkpoint cannot be fetched.
        """
        if isinstance(ref, Checkpoint):
            return ref
        text = str(ref)
        if text.startswith("hf://"):
            from .hub import download_checkpoint  # noqa: PLC0415 - the Hub only when a reference names it

            return download_checkpoint(text, token)
        path = Path(text).expanduser()
        if not path.exists():
            hint = hub_hint(text) or "; check the path or run `azr list`"
            raise CheckpointError(f"Checkpoint {text!r} does not exist{hint}.")
        checkpoint = cls(path, read_state(path))
        if verify:
            checkpoint.verify()
        return checkpoint

    # ------------------------------------------------------------------ what it is

    @property
    def name(self) -> str:
        return self.state.get("name") or self.path.name

    @property
    def format_version(self) -> int:
        return self.state["format_version"]

    @property
    def iteration(self) -> int:
        return self.state["iteration"]

    @property
    def kind(self) -> str:
        return self.state.get("kind", "iter")

    @property
    def run_id(self) -> str | None:
        return self.state.get("run_id")

    @property
    def files(self) -> dict[str, str]:
        return self.state.get("files") or {}

    @property
    def has_optimizer(self) -> bool:
        return self._optimizer_file in self.files

    @property
    def data_position(self) -> dict[str, int]:
        return self.state.get("data_position") or {}

    @property
    def corpus(self) -> dict[str, Any]:
        return self.state.get("corpus") or {}

    @cached_property
    def train_config(self) -> TrainConfig:
        """The run's settings as saved."""
        return TrainConfig.from_dict(self.state["train_config"])

    @cached_property
    def model_config(self) -> dict[str, Any]:
        """The transformers ``config.json`` as a dict."""
        return json.loads((self.path / CONFIG_FILE).read_text())

    @property
    def history_length(self) -> int:
        """How many iterations the history holds."""
        history = self.state.get("history")
        return history.get("length", 0) if isinstance(history, dict) else len(history or [])

    @property
    def history_chunks(self) -> list[str]:
        return list((self.state.get("history") or {}).get("chunks", [])) if self.format_version >= 2 else []

    @property
    def chunk_dir(self) -> Path:
        """Where the run's history chunks are: ``history/`` beside the checkpoint."""
        return self.path.parent / CHUNK_DIR

    # ------------------------------------------------------------------ verification

    def verify(self) -> None:
        """Check every file and history chunk against its sha256; raises CheckpointError naming the problem."""
        files = self.files
        for required in REQUIRED_FILES[min(self.format_version, FORMAT_VERSION)]:
            if required not in files:
                self._invalid(f"{required} is not recorded")
        paths = [self.path / name for name in files]
        for path in paths:
            if not path.is_file():
                self._invalid(f"{path.name} is missing")
        buffers = {path.name: storage.read_buffer(path) for path in paths}
        actual = storage.in_parallel(lambda path: storage.sha256_parts(buffers[path.name]), paths)
        for name, digest in files.items():
            if actual[name] != digest:
                self._invalid(f"checksum mismatch in {name}")
        self._verified = buffers
        problem = chunk_problem(self.chunk_dir, self.history_chunks)
        if problem:
            self._invalid(problem)

    def _invalid(self, reason: str) -> None:
        raise CheckpointError(f"Checkpoint {str(self.path)!r} is invalid: {reason}.")

    # ------------------------------------------------------------------ parts

    @property
    def _optimizer_file(self) -> str:
        return OPTIMIZER_FILE if self.format_version >= 2 else V1_OPTIMIZER_FILE

    def plan(self) -> LRPlan:
        """The LR plan the run followed."""
        return LRPlan.from_dict(json.loads(bytes(self._read(SCHEDULER_FILE))))

    def history(self) -> History:
        """The run's history up to this checkpoint."""
        if self.format_version < 2:
            history = History()
            for record in self.state.get("history") or []:
                history.append(record)
            return history
        try:
            chunks = [chunk_path(self.chunk_dir, digest).read_bytes() for digest in self.history_chunks]
            return History.from_chunks(chunks, self.history_chunks, bytes(self._read(HISTORY_FILE)))
        except (OSError, ValueError):
            self._invalid("its history is unreadable")

    def optimizer_state(self, device: torch.device | str = "cpu") -> dict[str, Any] | None:
        """The optimizer's ``state_dict()``, or None when the checkpoint has none."""
        if not self.has_optimizer:
            return None
        return self._tensors(self._optimizer_file, device)

    def rng_state(self) -> dict[str, Any]:
        """The random generators' states (see :mod:`azr.rng`)."""
        return self._tensors(RNG_FILE if self.format_version >= 2 else V1_RNG_FILE, "cpu")

    def _read(self, filename: str) -> storage.Buffer:
        """A file's bytes: those verified, or (unverified checkpoints) read now."""
        if filename in self._verified:
            return self._verified[filename]
        return storage.read_buffer(self.path / filename)

    def _tensors(self, filename: str, device: torch.device | str) -> Any:
        try:
            if filename.endswith(".pt"):
                return torch.load(self.path / filename, map_location=device, weights_only=True)
            return tensorfile.decode(self.path / filename, device)
        except Exception as exc:  # any failure to read the file is the same problem for the user
            raise CheckpointError(f"Checkpoint {str(self.path)!r} is invalid: {filename} is unreadable "
                                  f"({type(exc).__name__}).") from exc

    def load_weights(self, model) -> None:
        """Load ``model.safetensors`` into ``model`` on its device (tied weights may be stored once).

        Raises CheckpointError when tensors are missing, unexpected or have other shapes (the model is unchanged
        then).
        """
        try:
            tensors = load_file(self.path / WEIGHTS_FILE, device=str(next(model.parameters()).device))
        except (OSError, SafetensorError) as exc:
            raise CheckpointError(f"Checkpoint {str(self.path)!r} is invalid: {WEIGHTS_FILE} is unreadable "
                                  f"({type(exc).__name__}).") from exc
        problems = tensorfile.misfits(tensors, model.state_dict())
        if problems:
            raise CheckpointError(f"Checkpoint weights do not fit the model: {'; '.join(problems)[:300]}")
        with torch.no_grad():
            model.load_state_dict(tensors, strict=False)

    def info(self, valid: bool = True, reason: str | None = None) -> CheckpointInfo:
        """Describe this checkpoint for listings."""
        kind = self.kind if NAME_PATTERN.match(self.path.name) else "unknown"
        return CheckpointInfo(
            name=self.path.name, path=str(self.path), kind=kind, iteration=self.state.get("iteration"),
            max_iterations=self.state.get("max_iterations"), loss=self.state.get("loss"),
            val_loss=self.state.get("val_loss"), timestamp=self.state.get("timestamp"),
            size_bytes=checkpoint_size(self.path), has_optimizer=self.has_optimizer, valid=valid, reason=reason)


def read_state(path: str | Path) -> dict[str, Any]:
    """Return a checkpoint's ``trainer_state.json`` without verifying its files; raises CheckpointError."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"Checkpoint {str(path)!r} is not a checkpoint directory.")
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: {STATE_FILE} is missing.")
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: {STATE_FILE} is unreadable.") from exc
    if not isinstance(state, dict) or not isinstance(state.get("format_version"), int):
        raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: {STATE_FILE} has no format_version.")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} has format version {state['format_version']}, newer than this azr "
            f"supports ({FORMAT_VERSION}); upgrade azr to load it.")
    if not isinstance(state.get("iteration"), int) or state["iteration"] < 0:
        raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: its iteration is not a count.")
    if not isinstance(state.get("train_config"), dict):
        raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: its train_config is missing.")
    return state


def checkpoint_size(path: Path) -> int:
    """Return the bytes of a checkpoint directory's files (0 when it is not a directory)."""
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file()) if path.is_dir() else 0


# ---------------------------------------------------------------------------- writing


def save_checkpoint(run_dir: Path, name: str, *, model, files: dict[str, storage.Blob], state: dict[str, Any],
                    history: History) -> Path:
    """Write a complete checkpoint atomically and return its path.

    ``files`` are the sidecars and tokenizer files as bytes or consecutive parts (written and hashed from memory
    in threads while the model is saved with ``save_pretrained``; every file is fsynced); the history's new full
    chunks go to ``<run_dir>/history/``. A crash at any moment leaves either no new checkpoint or a complete one.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    for directory in (run_dir, run_dir / CHUNK_DIR):
        if directory.is_dir():
            storage.remove_stale_temporaries(directory)
    digests = history.chunk_digests()
    _store_chunks(run_dir / CHUNK_DIR, digests, lambda number, digest: history.chunk(number))
    temp = storage.hidden_sibling(run_dir, storage.TEMP_PREFIX, name)
    temp.mkdir()
    try:
        blobs = {**files, HISTORY_FILE: history.tail()}
        with storage.ParallelWrites(temp) as writes:
            writes.write_all(blobs)
            model.save_pretrained(temp, safe_serialization=True)  # meanwhile the threads write the blobs
            written = writes.adopt_others().digests()
        full_state = {**state, "format_version": FORMAT_VERSION, "name": name,
                      "history": {"length": len(history), "chunks": digests, "tail": HISTORY_FILE},
                      "files": dict(sorted(written.items()))}
        storage.write_bytes(temp / STATE_FILE, json.dumps(full_state, indent=1).encode())
        storage.publish(temp, run_dir / name)
    except BaseException:
        storage.discard(temp) if temp.exists() else None
        raise
    return run_dir / name


def _store_chunks(chunk_dir: Path, digests: list[str], content: Callable[[int, str], bytes]) -> None:
    """Write each history chunk (number, digest) that ``chunk_dir`` lacks, atomically, from ``content``."""
    stored = {p.name for p in chunk_dir.iterdir()} if chunk_dir.is_dir() else set()  # one listing, not a stat each
    for number, digest in enumerate(digests):
        if chunk_path(chunk_dir, digest).name not in stored:
            storage.write_file_atomically(chunk_path(chunk_dir, digest), lambda: content(number, digest))


def copy_checkpoint(checkpoint: Checkpoint, run_dir: str | Path) -> Path:
    """Copy a checkpoint and its history chunks into ``run_dir`` atomically; return the copy's path."""
    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    _store_chunks(root / CHUNK_DIR, checkpoint.history_chunks,
                  lambda number, digest: chunk_path(checkpoint.chunk_dir, digest).read_bytes())
    storage.copy_directory(checkpoint.path, root / checkpoint.path.name)
    return root / checkpoint.path.name


def verify_checkpoint(path: str | Path) -> Checkpoint:
    """Open a local checkpoint and check every file against its sha256; raises CheckpointError naming the problem."""
    return Checkpoint.open(Path(path))
