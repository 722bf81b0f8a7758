"""Small hooks around the training loop (cf. transformers' ``TrainerCallback``): rotation, Hub pushes, time budget.

The loop calls ``on_save`` after each checkpoint, ``should_pause`` before each step, ``on_end`` with the final
state (its sentence is added to the final message) and ``close`` when the run is over, whatever happened.
"""
from __future__ import annotations

import time
from pathlib import Path

from .runs import discard_older, rotate_checkpoints
from .uploader import HubUploader


class TrainerCallback:
    """The hooks, each doing nothing; subclasses override what they need."""

    def on_save(self, path: Path, kind: str) -> None:
        """A checkpoint of ``kind`` was saved at ``path``."""

    def should_pause(self) -> bool:
        """True to pause the run before the next step."""
        return False

    def on_end(self) -> str:
        """The run reached a final state; return a sentence for the final message (or "")."""
        return ""

    def close(self) -> None:
        """Release resources; called once, after everything else."""


class Rotation(TrainerCallback):
    """Keeps the newest ``keep_last`` ``model_iter`` checkpoints of the run and its newest ``model_best``."""

    def __init__(self, run_dir: Path, keep_last: int) -> None:
        self.run_dir, self.keep_last = run_dir, keep_last

    def on_save(self, path: Path, kind: str) -> None:
        if kind == "iter":
            rotate_checkpoints(self.run_dir, self.keep_last)
        elif kind == "best":
            discard_older(self.run_dir, "best", path)


class TimeBudget(TrainerCallback):
    """Pauses the run once ``seconds`` have passed since it started."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def should_pause(self) -> bool:
        return time.monotonic() >= self.deadline


class HubPush(TrainerCallback):
    """Pushes every checkpoint to a Hub repo in the background; at the end, waits a bounded time for them."""

    def __init__(self, uploader: HubUploader, run_dir: Path, flush_timeout_s: float) -> None:
        self.uploader, self.run_dir, self.flush_timeout_s = uploader, run_dir, flush_timeout_s

    def on_save(self, path: Path, kind: str) -> None:
        self.uploader.submit(path, self.run_dir)

    def on_end(self) -> str:
        states = self.uploader.flush(self.flush_timeout_s)
        missing = [f"{name} ({state})" for name, state in states.items() if not state.startswith("pushed")]
        if not missing:
            return f"All {len(states)} checkpoints pushed to {self.uploader.repo_id}."
        return f"Not pushed to {self.uploader.repo_id}: {'; '.join(missing)}."

    def close(self) -> None:
        self.uploader.close()
