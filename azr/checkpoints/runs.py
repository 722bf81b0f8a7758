"""Runs: one directory and one identity per training run.

A run directory holds the run's checkpoints (``model_<kind>_<N>/``), its history chunks (``history/``), its stored
corpus (``corpus/``), its TensorBoard logs (``runs/``) and ``run.json``: the run id, when it was created, its seed,
corpus and base model. Every checkpoint records the run id, so nothing of one run is ever rotated away or
overwritten by another. A directory of run directories (``checkpoints/`` by default) is a *runs root*; the CLI and
the app create a new run directory there for each new training, named by the user or with a readable generated
name. Listing a run's checkpoints and rotating them happen here, within one run.
"""
from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import re
import tempfile
import uuid
import weakref
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from azr.checkpoints import storage
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.history import CHUNK_DIR
from azr.checkpoints.info import CheckpointInfo, checkpoint_size, describe
from azr.checkpoints.names import ASIDE_KINDS, NAME_PATTERN, OPTIMIZER_FILE, V1_OPTIMIZER_FILE, iteration_in_name
from azr.errors import CheckpointError, ConfigError
from azr.utils.units import mib_text

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
LOCK_FILE = ".lock"  # held by the process that trains the run (see RunLock)
_PID_TEXT = "pid {}"  # what the lock file says of its holder
LOG_DIR = "runs"  # TensorBoard event files of the run (see azr.training.reporting), pushed to the Hub repo's runs/
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


@dataclass(frozen=True)
class RunInfo:
    """What ``run.json`` says about a run."""

    id: str
    name: str
    created: str
    seed: int | None = None
    corpus: dict[str, Any] | None = None
    base_model: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return asdict(self)


def new_run_name(root: str | Path) -> str:
    """Return a readable name for a new run under ``root`` that is not taken yet (``run-20261129-083512``)."""
    base = "run-" + datetime.now().strftime("%Y%m%d-%H%M%S")
    name, number = base, 2
    while (Path(root) / name).exists():
        name, number = f"{base}-{number}", number + 1
    return name


def check_run_name(name: str) -> str:
    """Return ``name`` when it can name a run directory; raises ConfigError otherwise."""
    if not RUN_NAME.match(name or "") or NAME_PATTERN.match(name):
        raise ConfigError(f"{name!r} cannot name a run: use letters, digits, '.', '_' and '-' (at most 96), "
                          "not starting with a dot and not like a checkpoint name.")
    return name


def checkpoint_names(directory: str | Path) -> list[str]:
    """Return the names of the checkpoint directories in ``directory`` (none when it does not exist)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if NAME_PATTERN.match(p.name) and p.is_dir())


def read_run(directory: str | Path) -> RunInfo | None:
    """Return the run a directory holds (its ``run.json``), or None when it has none or it is unreadable."""
    try:
        values = json.loads((Path(directory) / RUN_FILE).read_text())
        return RunInfo(**{k: values.get(k) for k in RunInfo.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None


def is_run_directory(directory: str | Path) -> bool:
    """True when ``directory`` holds a run: a ``run.json`` or checkpoints."""
    return (Path(directory) / RUN_FILE).is_file() or bool(checkpoint_names(directory))


def list_runs(root: str | Path) -> list[Path]:
    """Return the run directories directly under a runs root, newest first (none when it does not exist)."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and is_run_directory(p)]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)


def remove_leftovers(root: str | Path) -> None:
    """Delete what interrupted writes, deletions and uploads left in a runs root and in each of its runs (see
    :func:`storage.remove_stale_temporaries`; symbolic links are removed themselves, never followed)."""
    root = Path(root)
    if not root.is_dir():
        return
    storage.remove_stale_temporaries(root)
    for directory in (d for d in root.iterdir() if d.is_dir() and not d.is_symlink()):
        for folder in (directory, directory / CHUNK_DIR):
            if folder.is_dir() and not folder.is_symlink():
                storage.remove_stale_temporaries(folder)


def open_run(directory: str | Path, *, run_id: str | None, seed: int | None, corpus: dict[str, Any] | None,
             base_model: str | None = None, adopt: bool = False) -> RunInfo:
    """Return the run that trains in ``directory``, creating ``run.json`` for a new run.

    ``run_id`` is the id of the run being resumed (None for a new run). A directory holding another run's
    checkpoints (or ``run.json``) is refused, so that rotation never deletes another run's checkpoints. With
    ``adopt`` (resuming a checkpoint of format 1, which has no run id, inside its own directory) a directory
    whose checkpoints record no other run id becomes the run ``run_id``. Raises ConfigError for a refused
    directory or one that cannot be created.
    """
    directory = Path(directory)
    existing = read_run(directory)
    if existing is not None and existing.id == run_id:
        return existing
    taken = existing is not None or checkpoint_names(directory)
    if taken and not (adopt and existing is None and run_id is not None and _adoptable(directory, run_id)):
        what = f"run {existing.name!r}" if existing else "checkpoints of another run"
        raise ConfigError(
            f"{str(directory)!r} already holds {what}; train a new run in a new directory, or resume one of "
            "its checkpoints to continue it.")
    info = RunInfo(id=run_id or uuid.uuid4().hex, name=directory.resolve().name,
                   created=datetime.now(timezone.utc).isoformat(), seed=seed, corpus=corpus, base_model=base_model)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / RUN_FILE, info.as_dict())
    except OSError as exc:
        raise ConfigError(f"Cannot create the run directory {str(directory)!r}: {exc.strerror or exc}.") from exc
    return info


class RunLock:
    """This process trains the run in ``directory``: an exclusive lock on the run's ``.lock`` file (which names the
    process) from the run's start to its end. The system releases it when the process ends, even when killed, so no
    lock is ever left behind."""

    def __init__(self, directory: str | Path, instead: str = "Stop that one first, or continue as a new run (the "
                 "CLI's --run NAME, the app's new run name).") -> None:
        """Take the lock; raises ConfigError when another training holds it, ending with what to do ``instead``."""
        try:  # never through a symbolic link: the lock file is written
            fd = os.open(Path(directory) / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            raise ConfigError(f"Cannot lock {str(Path(directory) / LOCK_FILE)!r} ({exc.strerror or exc}); remove it "
                              "(it is only a lock) and start again.") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = "another training in this process (a train() generator not run to its end nor closed)" \
                if holder == _PID_TEXT.format(os.getpid()) else f"another process{f' ({holder})' if holder else ''}"
            raise ConfigError(
                f"{str(directory)!r} is being trained by {who}: two writers of one run would overwrite each "
                f"other's checkpoints. {instead}") from None
        except OSError as exc:  # a file system without locks: train, unguarded
            log.warning("cannot lock %s (%s); a second training of this run would not be refused", directory, exc)
        os.ftruncate(fd, 0)
        os.write(fd, _PID_TEXT.format(os.getpid()).encode())
        self._close = weakref.finalize(self, os.close, fd)  # also when the run is dropped without an end

    def release(self) -> None:
        """Let another process train the run (the file stays: deleting it would race with a new holder)."""
        self._close()


def check_room(directory: str | Path, needed_bytes: int) -> None:
    """Check that files can be written in the run directory (or, for a new one, where it will be created) and that
    ``needed_bytes`` are free there.

    Raises ConfigError naming the directory, so that a run never fails at its first save.
    """
    directory = Path(directory)
    existing = next(p for p in (directory, *directory.parents) if p.exists())  # the run directory may be new
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".azr-write-check-"):
            free = storage.free_space(existing)
    except OSError as exc:
        raise ConfigError(f"Cannot write checkpoints in {str(directory)!r} ({exc.strerror or exc}); choose a "
                          "directory you can write to.") from exc
    if free < needed_bytes:
        raise ConfigError(f"{str(directory)!r} has {mib_text(free)} free but the run's checkpoints need about "
                          f"{mib_text(needed_bytes)}; free some space or choose another directory.")


def _adoptable(directory: Path, run_id: str) -> bool:
    """True when a directory without run.json holds only checkpoints of ``run_id`` (or of no recorded run)."""
    for name in checkpoint_names(directory):
        try:
            state = json.loads((directory / name / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        if state.get("run_id") not in (None, run_id):
            return False
    return True


def write_json(path: Path, values: dict[str, Any]) -> None:
    """Write a small JSON file atomically (temporary file, fsync, rename)."""
    temp = storage.hidden_sibling(path.parent, storage.TEMP_PREFIX, path.name)  # names this process and thread's write
    storage.write_fsync(temp, json.dumps(values, indent=1).encode())
    os.replace(temp, path)


def checkpoint_info(path: str | Path, verify: bool = True) -> CheckpointInfo:
    """Describe one checkpoint directory; an invalid one is described with the reason."""
    path = Path(path)
    try:
        checkpoint = Checkpoint.open(path, verify=False)
        if verify:  # checksums: decoding every part would import torch, which a listing never needs
            checkpoint.verify(parts=False)
    except CheckpointError as exc:
        match = NAME_PATTERN.match(path.name)
        reason = str(exc).split(" is invalid: ", 1)[-1].rstrip(".")
        return CheckpointInfo(path.name, str(path), match.group(1) if match else "unknown",
                              int(match.group(2)) if match else None, None, None, None, None, checkpoint_size(path),
                              (path / OPTIMIZER_FILE).is_file() or (path / V1_OPTIMIZER_FILE).is_file(), False,
                              reason)
    return describe(checkpoint)


def list_checkpoints(run_dir: str | Path, verify: bool = True) -> list[CheckpointInfo]:
    """Return the checkpoints of a run directory, newest first, each marked valid or invalid with the reason.

    Raises CheckpointError when ``run_dir`` is not a directory.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise CheckpointError(f"Checkpoint directory {str(root)!r} does not exist.")
    infos = list(storage.in_parallel(lambda path: checkpoint_info(path, verify), [
        p for p in root.iterdir() if NAME_PATTERN.match(p.name) and p.is_dir()]).values())
    infos.sort(key=lambda i: (i.timestamp or "", i.iteration or 0, i.kind not in ASIDE_KINDS), reverse=True)
    return infos


def discard_older(run_dir: str | Path, kind: str, keep: str | Path, spare: Collection[str] = ()) -> list[str]:
    """Delete the run's ``model_<kind>_*`` checkpoints other than ``keep`` and those named in ``spare``; return the
    deleted names."""
    keep_name = Path(keep).name
    deleted = [name for name in checkpoint_names(run_dir)
               if name != keep_name and name not in spare and NAME_PATTERN.match(name).group(1) == kind]
    for name in deleted:
        storage.discard(Path(run_dir) / name)
    return deleted


def later_checkpoints(run_dir: str | Path, iteration: int) -> list[str]:
    """Return the names of the run's checkpoints after ``iteration``, in the order of their iterations."""
    return sorted((name for name in checkpoint_names(run_dir) if iteration_in_name(name) > iteration),
                  key=iteration_in_name)


def best_checkpoint(ref: str | Path) -> Path:
    """Return the ``model_best_<N>`` checkpoint of the run holding ``ref`` (a run directory or one of its
    checkpoints) with the lowest validation loss (a run resumed from an earlier checkpoint can hold the best of
    each way it went), the later one of equals; raises CheckpointError when the run has none."""
    path = Path(ref).expanduser()
    run_dir = path.parent if NAME_PATTERN.match(path.name) else path
    best = [checkpoint_info(run_dir / name, verify=False) for name in checkpoint_names(run_dir)
            if NAME_PATTERN.match(name).group(1) == "best"]
    if not best:
        raise CheckpointError(f"{str(run_dir)!r} has no model_best checkpoint; train with val_every > 0 first.")
    return Path(min(best, key=lambda i: (_or_infinity(i.val_loss), -(i.iteration or 0))).path)


def _or_infinity(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else math.inf


def rotate_checkpoints(run_dir: str | Path, keep_last: int, spare: Collection[str] = ()) -> list[str]:
    """Delete all but the newest ``keep_last`` ``model_iter_*`` checkpoints of a run, leaving out those named in
    ``spare``; return the deleted names.

    Paused, interrupted and error checkpoints, the newest checkpoint of any kind and the newest one whose loss is
    a finite number (should newer ones hold NaN) are never deleted.
    """
    infos = list_checkpoints(run_dir, verify=False)
    iters = sorted((i for i in infos if i.kind == "iter" and i.name not in spare), key=lambda i: i.iteration or 0,
                   reverse=True)
    finite = next((i.name for i in iters if i.loss is not None and math.isfinite(i.loss)), None)
    kept = {infos[0].name if infos else None, finite}
    deleted = []
    for info in iters[keep_last:]:
        if info.name not in kept:
            storage.discard(Path(info.path))
            deleted.append(info.name)
    return deleted
