"""Small hooks around the training loop (cf. transformers' ``TrainerCallback``): rotation, Hub pushes, time budget.

The loop calls ``on_status`` with every status it yields, ``on_step`` after each step, ``on_save`` after each
checkpoint, ``should_pause`` before each step, ``on_end`` with the final state (its sentence is added to the final
message) and ``close`` when the run is over, whatever happened.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from azr.checkpoints.names import ASIDE_KINDS
from azr.checkpoints.runs import discard_older, rotate_checkpoints
from azr.hub import pending
from azr.hub.pending import PushTarget
from azr.hub.uploader import LATER, HubUploader
from azr.training.signals import stop_deadline
from azr.training.status import TrainingStatus


class TrainerCallback:
    """The hooks, each doing nothing; subclasses override what they need."""

    def on_status(self, status: TrainingStatus) -> None:
        """The run reports ``status``."""

    def on_step(self, iteration: int) -> None:
        """An optimizer step made ``iteration``; called after every step, so it must be quick."""

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


class OnStep(TrainerCallback):
    """Calls ``function(iteration)`` after every step (e.g. to move a progress bar between statuses)."""

    def __init__(self, function: Callable[[int], None]) -> None:
        self.function = function

    def on_step(self, iteration: int) -> None:
        self.function(iteration)


def end_messages(callbacks: list[TrainerCallback]) -> str:
    """The hooks' sentences for a run's final message (``on_end`` of each)."""
    return " ".join(filter(None, (callback.on_end() for callback in callbacks)))


class Rotation(TrainerCallback):
    """Keeps the newest ``keep_last`` ``model_iter`` checkpoints of the run, its newest ``model_best`` and
    ``model_predecay``; never deletes those in ``left_ahead`` (where the run went before it was resumed from an
    earlier checkpoint) unless a save of the same name replaced them."""

    def __init__(self, run_dir: Path, keep_last: int, left_ahead: Collection[str] = ()) -> None:
        self.run_dir, self.keep_last, self.left_ahead = run_dir, keep_last, set(left_ahead)

    def on_save(self, path: Path, kind: str) -> None:
        self.left_ahead.discard(path.name)
        if kind == "iter":
            rotate_checkpoints(self.run_dir, self.keep_last, self.left_ahead)
        elif kind in ASIDE_KINDS:
            discard_older(self.run_dir, kind, path, self.left_ahead)


class TimeBudget(TrainerCallback):
    """Pauses the run once ``seconds`` have passed since it started."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def should_pause(self) -> bool:
        return time.monotonic() >= self.deadline


class HubPush(TrainerCallback):
    """Pushes every checkpoint to ``target`` in the background, and first what the run has pending from before;
    at the end, waits a bounded time for them: ``flush_timeout_s``, and after a signal no longer than
    :func:`~azr.training.signals.stop_deadline`. What is not pushed by then stays pending in the run (see
    :mod:`azr.hub.uploader`)."""

    def __init__(self, uploader: HubUploader, target: PushTarget | None, flush_timeout_s: float) -> None:
        self.uploader, self.target, self.flush_timeout_s = uploader, target, flush_timeout_s
        # Recording a push and staging its copy write and fsync files: off the training thread, in save order.
        self._submitter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="azr-push-submit")
        self._submitted: list[Future] = []

    @classmethod
    def for_run(cls, run_dir: Path, target: PushTarget | None, token: str | None,
                flush_timeout_s: float) -> HubPush | None:
        """Return the hook for a run pushing to ``target`` or with pending pushes; None when it has neither."""
        if target is None and not pending.pending(run_dir):
            return None
        uploader = HubUploader(token)
        uploader.submit_pending(run_dir)
        return cls(uploader, target, flush_timeout_s)

    def on_save(self, path: Path, kind: str) -> None:
        if self.target is not None and kind not in ASIDE_KINDS:  # pushed when asked (`azr push --best`), or never
            self._submitted.append(self._submitter.submit(self.uploader.submit, path, self.target))

    def on_end(self) -> str:
        self._submitter.shutdown(wait=True)
        for submitted in self._submitted:
            submitted.result()  # a push that could not even be recorded surfaces here
        timeout, deadline = self.flush_timeout_s, stop_deadline()
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
        states = self.uploader.finish(timeout)
        repos = ", ".join(sorted(self.uploader.repos))
        missing = [f"{name} ({state})" for name, state in states.items() if not state.startswith("pushed")]
        if not missing:
            return f"All {len(states)} checkpoints pushed to {repos}." if states else ""
        later = f" The pending ones {LATER}." if any(s.startswith("pending") for s in states.values()) else ""
        return f"Not pushed to {repos}: {'; '.join(missing)}.{later}"

    def close(self) -> None:
        self._submitter.shutdown(wait=True)
        self.uploader.close()
