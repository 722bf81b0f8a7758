"""Pushes not done yet, recorded in their run: ``<run>/pending_pushes.json``.

A push is recorded before it starts and forgotten once the Hub has the checkpoint, so whatever stops it (a Hub
that is down or hangs, Ctrl+C, a crash) leaves it here, to be pushed at the run's next resume, by
``azr push --pending`` or when the app starts. A run holds one record per checkpoint name and repo, for the content
saved last under that name: a push of older content (in flight when the name was saved again) forgets nothing.

The file is small JSON, replaced atomically (temporary file, fsync, rename) under an exclusive lock on the run
directory, so one process's uploader, ``azr push --pending`` and the app can share it; it is removed when nothing
is pending. It never holds a token.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.runs import list_runs, write_json
from azr.checkpoints.statefile import STATE_FILE

PENDING_FILE = "pending_pushes.json"


@dataclass(frozen=True)
class PushTarget:
    """Where a checkpoint goes: a Hub repo, created private or public, with or without the run's corpus."""

    repo_id: str
    private: bool = True
    push_corpus: bool = True


@dataclass(frozen=True)
class PendingPush:
    """One checkpoint of a run not pushed yet to ``target``."""

    run_dir: Path
    checkpoint: str
    target: PushTarget
    iteration: int | None = None
    timestamp: str | None = None
    content: str | None = None  # the sha256 of the checkpoint's state file (which holds every file's): what is pushed

    @classmethod
    def of(cls, checkpoint: Path, target: PushTarget) -> PendingPush:
        """Return the push of the checkpoint saved now at ``checkpoint``; raises CheckpointError for one that is
        missing or unreadable."""
        state = Checkpoint.open(checkpoint, verify=False).state
        content = hashlib.sha256((checkpoint / STATE_FILE).read_bytes()).hexdigest()
        return cls(checkpoint.parent, checkpoint.name, target, state.get("iteration"), state.get("timestamp"), content)

    @property
    def path(self) -> Path:
        """The checkpoint directory."""
        return self.run_dir / self.checkpoint

    def newness(self) -> tuple[str, int]:
        """The sort key that puts the newest checkpoint last (as listings order them)."""
        return self.timestamp or "", self.iteration or 0


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory (shared by threads and processes)."""
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(run_dir: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads((run_dir / PENDING_FILE).read_text()).get("pushes", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("checkpoint"), str)
            and isinstance(e.get("target"), dict)]


def _write(run_dir: Path, entries: list[dict[str, Any]]) -> None:
    if entries:
        write_json(run_dir / PENDING_FILE, {"pushes": entries})
    else:
        (run_dir / PENDING_FILE).unlink(missing_ok=True)


def record(push: PendingPush) -> None:
    """Record a push as pending in its run, replacing the record of older content under its name and repo."""
    with _locked(push.run_dir):
        entries = [e for e in _read(push.run_dir) if _key(e) != (push.checkpoint, push.target.repo_id)]
        entry = {"checkpoint": push.checkpoint, "target": asdict(push.target), "iteration": push.iteration,
                 "timestamp": push.timestamp, "content": push.content}
        _write(push.run_dir, [*entries, entry])


def forget(push: PendingPush) -> None:
    """Remove a push from its run's pending pushes (done, or impossible), unless newer content of its name was
    recorded since."""
    if not push.run_dir.is_dir():
        return
    with _locked(push.run_dir):
        entries = _read(push.run_dir)
        kept = [e for e in entries if _key(e) != (push.checkpoint, push.target.repo_id)
                or e.get("content") != push.content]
        if len(kept) != len(entries):
            _write(push.run_dir, kept)


def pending(run_dir: str | Path) -> list[PendingPush]:
    """Return the pending pushes of a run, the newest checkpoint first (none without a record)."""
    run_dir = Path(run_dir)
    pushes = []
    for entry in _read(run_dir):
        try:
            pushes.append(PendingPush(run_dir, entry["checkpoint"], PushTarget(**entry["target"]),
                                      entry.get("iteration"), entry.get("timestamp"), entry.get("content")))
        except TypeError:  # a hand-edited entry: ignored
            continue
    return sorted(pushes, key=PendingPush.newness, reverse=True)


def runs_with_pending(where: str | Path) -> list[Path]:
    """Return the run directories with pending pushes: ``where`` itself when it is one, else the runs in it."""
    where = Path(where)
    candidates = [where] if (where / PENDING_FILE).is_file() else list_runs(where)
    return [run for run in candidates if (run / PENDING_FILE).is_file()]


def _key(entry: dict[str, Any]) -> tuple[str, str]:
    return entry["checkpoint"], entry["target"].get("repo_id")
