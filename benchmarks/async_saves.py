"""Asynchronous checkpoints: training throughput with a checkpoint every 10 iterations written in the background,
against no checkpoints and against synchronous saves, with the writer ``AZR_SAVE_WRITER=auto`` picks on this
device and with another one (:func:`other_writer`), and the seconds each save cost the run it happened in; and the
part of a save that blocks training (writing the files into the page cache, or copying the state to CPU memory)
with either writer against a plain copy of the same state. Both at the benchmark's model and at a larger one.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from azr import AZRTrainer, build_model
from azr.checkpoints.writerprocess import automatic_choice
from azr.training.saving import CheckpointSaver, StepSnapshot

from .checkpoints import Subject, larger_checkpoint, subject
from .common import Bench, Entry, alternate, paired_ratio, progress, timed

SAVE_EVERY = 10
# Self-play and validation off: with them, steps are longer and a save weighs less (the conservative case).
SETTINGS: dict[str, Any] = dict(self_play_every=0, val_every=0, keep_last=2, lr_schedule="constant")
LARGER_BATCH = 1  # the larger model's batch: a step of about a second on one CPU thread
SETTLED_AFTER = 4  # iterations after a save from which a run trains at its undisturbed pace again
# Throughput is timed in the steady state: from the end of the iterations the first save disturbs (a run's first
# save also allocates its staging buffers and starts its writing thread: a one-time cost, reported on its own).
WINDOW_START = SAVE_EVERY + SETTLED_AFTER
COPIED = ("model.state_dict(), optimizer.state_dict() and self-play reference tensors (the state a save copies), "
          "each .to('cpu', copy=True)")


def run(bench: Bench, small: Subject) -> list[Entry]:
    """Alternate the four ways of training and the two copies, at the benchmark's model and a larger one."""
    larger_trainer, larger_source = larger_checkpoint(bench)
    larger = subject(bench, larger_trainer.model, larger_source)
    default = automatic_choice(bench.device)  # what AZR_SAVE_WRITER=auto picks here
    other = other_writer(default)
    entries = []
    for suffix, current, make_model, batch, steps in (
            ("", small, bench.model, bench.sizes.batch_size, bench.sizes.async_steps),
            ("_larger", larger, lambda: build_model(bench.sizes.larger_model, seed=0).to(bench.device), LARGER_BATCH,
             bench.sizes.larger_async_steps)):
        progress(f"asynchronous saves, {current.describe()}: training with no saves, async saves (two writers) and "
                 f"synchronous saves every {SAVE_EVERY} iterations ({steps} iterations, batch {batch})")
        costs: dict[str, list[SaveCost]] = {"async_saves": [], "sync_saves": [], "async_saves_other_writer": []}
        training = alternate({name: _throughput(bench, make_model, batch, steps, save_every, asynchronous, writer,
                                                costs.get(name))
                              for name, save_every, asynchronous, writer in (
                                  ("no_saves", 10**9, True, "auto"), ("async_saves", SAVE_EVERY, True, "auto"),
                                  ("sync_saves", SAVE_EVERY, False, "auto"),
                                  ("async_saves_other_writer", SAVE_EVERY, True, other))},
                             bench.sizes.repeats)
        progress("  blocking part of an asynchronous save against a plain copy of the state")
        with mock.patch.dict(os.environ, {"AZR_SAVE_WRITER": other}):
            with_other = dataclasses.replace(current, saver=CheckpointSaver(current.model, bench.tokenizer,
                                                                             bench.device))
        copies = alternate({"async_blocking": _blocking(bench, current), "plain_copy": _plain_copy(bench, current),
                            "other_writer_blocking": _blocking(bench, with_other)}, bench.sizes.repeats)
        with_other.saver.close()
        model = dict(model=current.describe(), checkpoint_bytes=_size(current.source), batch_size=batch,
                     iterations=steps, save_every=SAVE_EVERY, settings=SETTINGS)
        entries += [
            bench.entry(f"async_save_throughput{suffix}", training, "it/s", "async_saves", "no_saves", (">=", 0.98),
                        **model, sync_saves_it_per_s=statistics.median(training["sync_saves"]),
                        sync_ratio_to_no_saves=paired_ratio(training["sync_saves"], training["no_saves"]),
                        writer=default, other_writer=other,
                        other_writer_it_per_s=statistics.median(training["async_saves_other_writer"]),
                        other_writer_ratio_to_no_saves=paired_ratio(training["async_saves_other_writer"],
                                                                    training["no_saves"]),
                        window=f"the end of iteration {WINDOW_START} to the last, as recorded in the history",
                        within_run=_within_run(costs, bench.sizes.repeats),
                        within_run_is=f"each saving run against its own settled iterations (those not within "
                                      f"{SETTLED_AFTER} after a save): the seconds its first save cost it, the "
                                      f"seconds each later save cost it, and its throughput ratio in the window "
                                      f"to training at the settled pace; medians over the rounds"),
            bench.entry(f"async_save_blocking{suffix}", copies, "s", "async_blocking", "plain_copy", ("<=", 1.5),
                        **model, plain_copy=COPIED, operations_per_sample=bench.sizes.saves_per_sample,
                        writer=default, other_writer=other,
                        other_writer_s=statistics.median(copies["other_writer_blocking"]),
                        other_writer_ratio_to_plain_copy=paired_ratio(copies["other_writer_blocking"],
                                                                      copies["plain_copy"]),
                        ratio_to_other_writer=paired_ratio(copies["async_blocking"],
                                                           copies["other_writer_blocking"])),
        ]
    return entries


def other_writer(default: str) -> str:
    """The writer compared with ``default``: the thread against the writer process (an accelerator's default), the
    writer process (which stages a copy in shared memory, the CPU's default before ``pagecache``) against any other."""
    return "thread" if default == "process" else "process"


def _throughput(bench: Bench, make_model: Callable[[], torch.nn.Module], batch: int, steps: int, save_every: int,
                asynchronous: bool, writer: str, costs: list[SaveCost] | None) -> Callable[[], float]:
    """Return a contender: train ``steps`` iterations of a fresh model, with background saves written by
    ``writer`` (``AZR_SAVE_WRITER``), and return iterations per second; append what the saves cost the run to
    ``costs``.

    The first run with a writer process starts one, which imports torch and transformers while it trains (the
    saves are written in the thread until it is ready); later runs take it from the pool, ready.
    """
    def contender() -> float:
        with mock.patch.dict(os.environ, {"AZR_SAVE_WRITER": writer}):
            trainer = AZRTrainer(make_model(), bench.tokenizer, device=bench.device)
        directory = bench.directory("async")
        try:
            for _ in trainer.train(bench.texts, steps, directory, batch_size=batch, save_every=save_every,
                                   async_save=asynchronous, **SETTINGS):
                pass
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        ends = [record["time"] for record in trainer.history]
        if costs is not None:
            costs.append(SaveCost.of(ends, save_every))
        window = ends[WINDOW_START - 1:]  # ends[i] is the end of iteration i + 1
        return (len(window) - 1) / (window[-1] - window[0])
    return contender


@dataclasses.dataclass
class SaveCost:
    """What its saves cost a run, measured within it against the mean duration of its settled iterations (those
    not within SETTLED_AFTER iterations after a save): the first save, and each later one on average."""

    first_save_s: float
    seconds_lost_per_save: float
    settled_iteration_s: float
    save_every: int

    @classmethod
    def of(cls, ends: list[float], save_every: int) -> SaveCost:
        """The cost in a run whose iteration ``i + 1`` ended at ``ends[i]`` (a save after iteration ``s`` falls in
        iteration ``s + 1``). Within one run, it does not depend on how fast the machine was during other runs;
        the mean (not the median) counts the machine's occasional slow iterations in the pace, not in the cost."""
        durations = {i + 2: end - start for i, (start, end) in enumerate(zip(ends, ends[1:]))}
        saves = list(range(save_every, len(ends), save_every))

        def after(save: int) -> list[int]:
            return [iteration for iteration in durations if save < iteration <= save + SETTLED_AFTER]

        disturbed = {iteration for save in saves for iteration in after(save)}
        pace = statistics.mean(seconds for iteration, seconds in durations.items() if iteration not in disturbed)
        lost = {save: sum(durations[iteration] - pace for iteration in after(save)) for save in saves}
        return cls(lost[saves[0]], statistics.mean(lost[save] for save in saves[1:]), pace, save_every)

    @property
    def ratio(self) -> float:
        """Throughput with the later saves against training at the settled pace throughout."""
        interval = self.save_every * self.settled_iteration_s
        return interval / (interval + self.seconds_lost_per_save)


def _within_run(costs: dict[str, list[SaveCost]], repeats: int) -> dict[str, dict[str, float]]:
    """Each contender's medians over the timed rounds (the last ``repeats``)."""
    return {name: {field: statistics.median(getattr(cost, field) for cost in runs[-repeats:])
                   for field in ("first_save_s", "seconds_lost_per_save", "ratio")}
            for name, runs in costs.items()}


def _blocking(bench: Bench, current: Subject) -> Callable[[], float]:
    """Return a contender timing what an asynchronous save blocks (the write is waited for outside the timing)."""
    def contender() -> float:
        root = bench.directory("blocking")
        run = dataclasses.replace(current.run, run_dir=root)
        seconds = []
        for _ in range(bench.sizes.saves_per_sample):
            seconds.append(timed(lambda: current.saver.save_in_background(run, "iter", StepSnapshot())))
            current.saver.finished(wait=True)
        shutil.rmtree(root)
        return statistics.mean(seconds)
    return contender


def _plain_copy(bench: Bench, current: Subject) -> Callable[[], float]:
    """Return a contender timing a copy of the tensors a save copies (the model's, the optimizer's and the
    self-play reference policy's, when the run has one) to CPU memory."""
    def copy() -> list[torch.Tensor]:
        tensors = list(current.model.state_dict().values())
        tensors += [value for state in current.run.optimizer.state_dict()["state"].values()
                    for value in state.values() if isinstance(value, torch.Tensor)]
        tensors += list((current.run.state.reference.tensors or {}).values())
        return [tensor.detach().to("cpu", copy=True) for tensor in tensors]
    return lambda: statistics.mean(timed(copy) for _ in range(bench.sizes.saves_per_sample))


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
