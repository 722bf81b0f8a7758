"""A checkpoint as listings show it: what it is and whether it can be loaded."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.names import NAME_PATTERN


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


def describe(checkpoint: Checkpoint, valid: bool = True, reason: str | None = None) -> CheckpointInfo:
    """Describe an opened checkpoint for listings."""
    state = checkpoint.state
    kind = checkpoint.kind if NAME_PATTERN.match(checkpoint.path.name) else "unknown"
    return CheckpointInfo(
        name=checkpoint.path.name, path=str(checkpoint.path), kind=kind, iteration=state.get("iteration"),
        max_iterations=state.get("max_iterations"), loss=state.get("loss"), val_loss=state.get("val_loss"),
        timestamp=state.get("timestamp"), size_bytes=checkpoint_size(checkpoint.path),
        has_optimizer=checkpoint.has_optimizer, valid=valid, reason=reason)


def checkpoint_size(path: Path) -> int:
    """Return the bytes of a checkpoint directory's own files (0 when it is not a directory or is a link)."""
    if path.is_symlink() or not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file() and not p.is_symlink())
