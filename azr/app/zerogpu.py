"""ZeroGPU Spaces: the app's training job runs in time-budget slices, each inside ``spaces.GPU(duration=…)``.

A ZeroGPU Space lends a GPU only while a function decorated with ``spaces.GPU`` runs, for about its ``duration``;
the function runs in a forked worker process, and what it yields comes back pickled. So the job trains in
slices: each builds its trainer inside the GPU function (the new run, or a resume of the checkpoint the previous
slice paused at), trains for the slice's time budget and pauses with a checkpoint on disk; the next slice resumes
from it, until the run completes, is stopped or fails, or the job's own time budget is spent. Stop requests reach
the slice through a flag in memory shared across the fork. Off ZeroGPU the job does not use this module.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import multiprocessing
import os
from collections.abc import Callable, Iterator

from azr.training.status import TrainingStatus

ZERO_GPU_ENV = "SPACES_ZERO_GPU"  # set on ZeroGPU Spaces (the spaces package reads it too)
SLICE_ENV = "AZR_ZEROGPU_SLICE_S"
DEFAULT_SLICE_S = 120.0
GRACE_S = 30  # added to each slice's GPU duration: loading the checkpoint and writing the final one
NONE, PAUSE, INTERRUPT = 0, 1, 2

Prepare = Callable[[float], tuple[object, Iterator[TrainingStatus]]]  # budget -> (trainer, statuses)
Continue = Callable[[str, float], tuple[object, Iterator[TrainingStatus]]]  # checkpoint, budget -> the same


def detected() -> bool:
    """True on a ZeroGPU Space (``SPACES_ZERO_GPU`` set) where the ``spaces`` package is installed."""
    on_zero_gpu = os.environ.get(ZERO_GPU_ENV, "").lower() in ("1", "t", "true")
    return on_zero_gpu and importlib.util.find_spec("spaces") is not None


def slice_seconds() -> float:
    """Return the length of one slice: ``AZR_ZEROGPU_SLICE_S`` seconds when it is a positive number, else 120."""
    try:
        seconds = float(os.environ.get(SLICE_ENV, DEFAULT_SLICE_S))
    except ValueError:
        return DEFAULT_SLICE_S
    return seconds if seconds > 0 else DEFAULT_SLICE_S


class SlicedRun:
    """A run trained in GPU slices; :meth:`stop_training` and :meth:`interrupt` act like the trainer's.

    ``first(budget)`` prepares the first slice, ``then(checkpoint, budget)`` each later one; ``budget_s`` (None:
    none) is shared out among the slices: each slice trains at most ``AZR_ZEROGPU_SLICE_S`` seconds.
    """

    def __init__(self, first: Prepare, then: Continue, budget_s: float | None) -> None:
        self.first, self.then, self.budget_s = first, then, budget_s
        self._request = multiprocessing.get_context("fork").RawValue("b", NONE)  # shared with the forked slice

    def stop_training(self) -> None:
        """Pause the slice in flight (``model_paused_<N>``) and start no other."""
        self._request.value = PAUSE

    def interrupt(self) -> None:
        """Like :meth:`stop_training`, but the checkpoint is ``model_interrupted_<N>``."""
        self._request.value = INTERRUPT

    def statuses(self) -> Iterator[TrainingStatus]:
        """Yield the statuses of every slice; a slice's pause that the next slice continues is a checkpoint."""
        import spaces

        left = math.inf if self.budget_s is None else self.budget_s  # training time, as a TimeBudget counts it
        prepare: Prepare = self.first
        while True:
            seconds = min(slice_seconds(), left)
            left -= seconds
            on_gpu = spaces.GPU(duration=math.ceil(seconds + GRACE_S))(
                functools.partial(_slice, prepare, seconds, self._request))  # a new function: a new worker
            following = None
            for status in on_gpu():
                if status.state == "paused" and self._request.value == NONE and status.checkpoint and left > 0:
                    following = status.checkpoint
                    status = dataclasses.replace(status, state="checkpoint",
                                                 message=f"{status.message} The next GPU slice continues from it.")
                yield status
            if following is None:
                return
            prepare = functools.partial(self.then, following)


def _slice(prepare: Prepare, seconds: float, request) -> Iterator[TrainingStatus]:
    """One slice, run by ``spaces.GPU``: train for ``seconds`` and pass stop requests on to the trainer."""
    trainer, statuses = prepare(seconds)
    for status in statuses:
        yield status
        if request.value != NONE and status.is_training:
            (trainer.interrupt if request.value == INTERRUPT else trainer.stop_training)()
