"""PyTorch DCP's asynchronous save against the project's background writer (issue 24): ``python -m benchmarks
--only dcp_saves``.

Four writers save the same training state, side by side and alternated in the same rounds, at the benchmark's model
and at a larger one (a state of 100 MB and more):

- ``own_thread`` and ``own_process``: the trainer's own background saves (``AZR_SAVE_WRITER=thread|process``: the
  stager, the shared-memory arena and the writer process), a complete checkpoint in the project's format;
- ``dcp_thread`` and ``dcp_process``: ``torch.distributed.checkpoint.async_save`` with
  ``AsyncCheckpointerType.THREAD`` / ``PROCESS``, a :class:`DefaultStager` kept for the run (shared memory for the
  process, pinned memory on a GPU) and the ``HuggingFaceStorageWriter`` (safetensors files), ``no_dist=True``. They
  save the tensors of the state: the model's ``state_dict()``, the optimizer's per-parameter state and, when the run
  has one, the self-play reference policy. The optimizer's ``param_groups`` (floats, tuples, booleans) are left out:
  that writer stores non-tensor values as ``torch.save`` pickles in front of the safetensors bytes, which makes the
  file neither safetensors nor pickle-free (``detail.formats`` records what each writer leaves on disk). Nor do they
  write what the project's checkpoint also holds (RNG states, the LR plan, the history, the tokenizer, the run's
  settings, the sha256 of every file, and the read-back check of them): DCP's side writes less.

Three measurements, each in rounds that alternate the contenders:

- ``dcp_save_blocking``: the seconds a save keeps training waiting (until ``save_in_background`` /
  ``async_save`` returns; the write is waited for outside the timing);
- ``dcp_save_throughput``: training iterations per second with a save every 10 iterations against no saves, in the
  steady-state window of :mod:`benchmarks.async_saves` (the DCP saves come from a trainer callback before the step
  after every 10th iteration, where the trainer's own saves come, at most one in flight); and what each save cost
  the run within it (:class:`~benchmarks.async_saves.SaveCost`);
- ``dcp_save_rss_mb``: in a fresh process per contender, the training process's peak RSS, its RSS right after the
  run (the trainer still held, as an app holds it; also after ``malloc_trim``, which leaves what is in use) and
  after the trainer is dropped, and the writer process's RSS.
  The writer processes are started before the run (a long run has them ready), the other state is the same.

DCP's process-based executor needs ``torch.distributed`` initialised even with ``no_dist=True`` (it asks the
default group for its rank to set up its own), so the group starts a one-process gloo group on a ``HashStore``
for the DCP contenders and stops DCP's checkpoint process and the group at the end (no public API stops that
process: it lives in a module global until the interpreter exits). This is why the group runs only when named.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageWriter
from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions
from torch.distributed.checkpoint.state_dict_saver import AsyncCheckpointerType

from azr import AZRTrainer, ModelConfig, build_model
from azr.training.callbacks import TrainerCallback
from azr.training.saving import CheckpointSaver, StepSnapshot

from .async_saves import SETTINGS, WINDOW_START, SaveCost, _within_run
from .checkpoints import Subject, larger_checkpoint, subject
from .common import (
    Bench,
    Entry,
    alternate,
    paired_ratio,
    progress,
    timed,
)
from .processes import child_args, fresh_run, memory_after_run, run_python

SAVE_EVERY = 10
STEPS, LARGER_STEPS = 41, 21  # iterations of a throughput run (at most the sizes' async_steps), saves at 10, 20, ...
LARGER_BATCH = 1
WRITERS = ("own_thread", "own_process", "dcp_thread", "dcp_process")
NO_SAVES = "no_saves"
EXECUTORS = {"thread": AsyncCheckpointerType.THREAD, "process": AsyncCheckpointerType.PROCESS}
KEEP_LAST = 2  # as SETTINGS' keep_last: the DCP runs delete older saves too
NOT_ATOMIC = (
    "DCP's FileSystemWriter, and the HuggingFaceStorageWriter built on it, write the data files under their final "
    "names in the checkpoint directory itself (no temporary directory, no rename of it); the data files are fsynced "
    "(sync_files=True). FileSystemWriter then writes .metadata (a pickle) to .metadata.tmp, fsyncs it, deletes the "
    "old .metadata and renames (the directory is not fsynced): a commit marker. HuggingFaceStorageWriter.finish "
    "writes model.safetensors.index.json directly (no temporary, no fsync, no rename): no commit marker at all. "
    "A kill mid-save leaves a partial directory under the final name; a save into an existing checkpoint_id "
    "overwrites its files in place, so the previous checkpoint of that name is gone. No checksums are written.")


def run(bench: Bench, small: Subject) -> list[Entry]:
    """Alternate the four writers (and no saves) at the benchmark's model and a larger one."""
    larger_trainer, larger_source = larger_checkpoint(bench)
    larger = subject(bench, larger_trainer.model, larger_source)
    steps = min(bench.sizes.async_steps, STEPS), min(bench.sizes.larger_async_steps, LARGER_STEPS)
    entries: list[Entry] = []
    with warnings.catch_warnings():  # DCP warns on every save without a process group that it assumes one process
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        formats = _formats(bench, small)
    try:
        _one_process_group()
        for suffix, current, config, batch, iterations in (
                ("", small, bench.model_config, bench.sizes.batch_size, steps[0]),
                ("_larger", larger, bench.sizes.larger_model, LARGER_BATCH, steps[1])):
            entries += _compare(bench, suffix, current, config, batch, iterations,
                                formats if not suffix else None)
    finally:
        stop_dcp_process()
        if dist.is_initialized():
            dist.destroy_process_group()
    return entries


def _compare(bench: Bench, suffix: str, current: Subject, config: ModelConfig, batch: int, steps: int,
             formats: dict[str, Any] | None) -> list[Entry]:
    model = dict(model=current.describe(), state_mb=_state_bytes(current) / 2**20, batch_size=batch,
                 iterations=steps, save_every=SAVE_EVERY, device=bench.device.type)
    progress(f"DCP async_save against the project's writer, {current.describe()} "
             f"({model['state_mb']:.0f} MB of weights and optimizer state): blocking part of a save")
    savers = {writer: _own_saver(bench, current, writer.removeprefix("own_")) for writer in WRITERS[:2]}
    stagers = {writer: DefaultStager(staging_options(writer.removeprefix("dcp_"), bench.device))
               for writer in WRITERS[2:]}
    try:
        blocking = alternate({**{w: _own_blocking(bench, current, saver) for w, saver in savers.items()},
                              **{w: _dcp_blocking(bench, current, w.removeprefix("dcp_"), stager)
                                 for w, stager in stagers.items()}}, bench.sizes.repeats)
    finally:
        for saver in savers.values():
            saver.close()
        for stager in stagers.values():
            stager.close()

    progress(f"  training with no saves and with a save every {SAVE_EVERY} iterations by each writer "
             f"({steps} iterations, batch {batch})")
    costs: dict[str, list[SaveCost]] = {writer: [] for writer in WRITERS}
    make_model = lambda: build_model(config, seed=0).to(bench.device)  # noqa: E731
    training = alternate({name: _throughput(bench, name, make_model, batch, steps, costs.get(name))
                          for name in (NO_SAVES, *WRITERS)}, bench.sizes.repeats)

    progress("  peak and remaining RSS of a run in a fresh process per writer")
    rss_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in (NO_SAVES, *WRITERS)}
    rss = alternate({name: _rss_contender(bench, name, config, batch, steps, rss_runs[name])
                     for name in (NO_SAVES, *WRITERS)}, 1, 0)

    throughput = {writer: {"it_per_s": statistics.median(training[writer]),
                           "ratio_to_no_saves": paired_ratio(training[writer], training[NO_SAVES]),
                           "per_round_ratios_to_no_saves": [value / base for value, base in
                                                           zip(training[writer], training[NO_SAVES])]}
                  for writer in WRITERS}
    blocked = {writer: {"s": statistics.median(blocking[writer]),
                        **({"ratio_to_own_same_executor": paired_ratio(blocking[writer],
                                                                       blocking[writer.replace("dcp_", "own_")])}
                           if writer.startswith("dcp_") else {})} for writer in WRITERS}
    memory = {name: runs[0] for name, runs in rss_runs.items()}
    dcp_details = dict(dcp_api="torch.distributed.checkpoint.async_save(state, storage_writer="
                       "HuggingFaceStorageWriter(dir), async_checkpointer_type=THREAD|PROCESS, async_stager="
                       "DefaultStager(StagingOptions(...)), no_dist=True)",
                       dcp_state="model.state_dict() + optimizer.state_dict()['state'] (+ self-play reference "
                                 "tensors); param_groups left out (not tensors)",
                       dcp_staging={w: vars(staging_options(w.removeprefix("dcp_"), bench.device))
                                    for w in WRITERS[2:]},
                       own_state="the complete checkpoint: weights, optimizer (param_groups included), RNG, plan, "
                                 "history, tokenizer, state file with sha256; read back and verified")
    entries = [
        bench.entry(f"dcp_save_blocking{suffix}", blocking, "s", "dcp_process", "own_process", **model,
                    writers=blocked, all_samples=blocking, operations_per_sample=bench.sizes.saves_per_sample,
                    **dcp_details,
                    **({"formats": formats, "crash_safety": NOT_ATOMIC} if formats is not None else {})),
        bench.entry(f"dcp_save_throughput{suffix}", training, "it/s", "dcp_process", "own_process", **model,
                    no_saves_it_per_s=statistics.median(training[NO_SAVES]), writers=throughput,
                    all_samples=training,
                    within_run=_within_run(costs, bench.sizes.repeats),
                    window=f"the end of iteration {WINDOW_START} to the last, as recorded in the history",
                    settings=SETTINGS),
        bench.entry(f"dcp_save_rss_mb{suffix}", rss, "MB", "dcp_process", "own_process", **model, runs=memory,
                    measured="peak_mb: VmHWM of the training process over the whole fresh process (imports, corpus, "
                             "run); after_run_mb: VmRSS when the run has ended, the trainer still held; "
                             "after_run_trimmed_mb: the same after malloc_trim(0) (what is still in use, not what "
                             "glibc keeps); after_release_mb: after the trainer (and its saver) is dropped, collected "
                             "and the heap trimmed; shared_*: RssShmem (shared-memory staging); writer: the writer "
                             "process's VmHWM and VmRSS (it cannot be trimmed from outside)",
                    allocator="glibc defaults in the fresh processes"),
    ]
    return entries


# ---------------------------------------------------------------------------- DCP's side


def staging_options(executor: str, device: torch.device) -> StagingOptions:
    """DCP's stager settings for ``executor``: shared memory for a writer process, pinned memory and non-blocking
    copies from a GPU; staging in the caller's thread (as the project's stager does: the next step may change the
    weights, so the copy must end before it)."""
    gpu = device.type == "cuda"
    return StagingOptions(use_pinned_memory=gpu, use_shared_memory=executor == "process", use_async_staging=False,
                          use_non_blocking_copy=gpu)


def tensor_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 reference: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The tensors of a training state as DCP saves them: the model's, the optimizer's per-parameter state and the
    self-play reference policy's (when there is one)."""
    state: dict[str, Any] = {"model": model.state_dict(), "optimizer": {"state": optimizer.state_dict()["state"]}}
    if reference:
        state["reference"] = dict(reference)
    return state


def dcp_async_save(state: dict[str, Any], directory: Path, executor: str, stager: DefaultStager):
    """Start ``dcp.async_save`` of ``state`` into ``directory`` as safetensors; return its future."""
    return dcp.async_save(state, storage_writer=HuggingFaceStorageWriter(str(directory)),
                          async_checkpointer_type=EXECUTORS[executor], async_stager=stager, no_dist=True)


class DcpSaves(TrainerCallback):
    """Saves a run's tensors with ``dcp.async_save`` every ``every`` iterations, before the next step (where the
    trainer's own saves come), at most one in flight, keeping the newest ``KEEP_LAST``; the stager lives for the
    run and is closed at its end."""

    def __init__(self, trainer: AZRTrainer, directory: Path, executor: str, device: torch.device,
                 every: int = SAVE_EVERY) -> None:
        self.trainer, self.directory, self.executor, self.every = trainer, directory, executor, every
        self.stager = DefaultStager(staging_options(executor, device))
        self.future = None
        self.saved: list[Path] = []
        self._last = 0

    def should_pause(self) -> bool:  # the hook the loop calls before every step
        history = self.trainer.history
        iteration = history[-1]["iteration"] if len(history) else 0
        if iteration and iteration % self.every == 0 and iteration != self._last:
            self._last = iteration
            self.wait()
            path = self.directory / f"dcp_iter_{iteration}"
            self.future = dcp_async_save(tensor_state(self.trainer.model, self.trainer.optimizer), path,
                                         self.executor, self.stager)
            self.saved.append(path)
        return False

    def wait(self) -> None:
        """Wait for the save in flight (raising its failure); delete the saves older than the newest KEEP_LAST."""
        if self.future is not None:
            future, self.future = self.future, None
            future.result()
        while len(self.saved) > KEEP_LAST:
            shutil.rmtree(self.saved.pop(0), ignore_errors=True)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.stager.close()


def _one_process_group() -> None:
    """A one-process gloo group: DCP's process executor asks the default group for its rank even with no_dist."""
    if not dist.is_initialized():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)


def stop_dcp_process() -> None:
    """End DCP's checkpoint process (a module global of its process executor; its finaliser sends TERMINATE)."""
    from torch.distributed.checkpoint import (
        _async_process_executor as executor,  # noqa: PLC0415
    )

    if executor._CHECKPOINT_PROCESS is not None:
        process, executor._CHECKPOINT_PROCESS = executor._CHECKPOINT_PROCESS, None
        process.__del__()


def dcp_writer_pid() -> int | None:
    from torch.distributed.checkpoint import (
        _async_process_executor as executor,  # noqa: PLC0415
    )

    process = executor._CHECKPOINT_PROCESS
    return process._save_process.pid if process is not None else None


# ---------------------------------------------------------------------------- training with either writer


def train(writer: str, model: torch.nn.Module, tokenizer, device: torch.device, texts: list[str], steps: int,
          batch: int, directory: Path) -> AZRTrainer:
    """Train ``steps`` iterations with ``writer`` saving every SAVE_EVERY (``no_saves``: none); return the trainer.

    The project's writers are the trainer's background saves. A DCP run saves through :class:`DcpSaves` and the
    trainer's only save is its final one, synchronous (as in the no-save run), so that no staged copy of the
    project's writer is in a DCP run.
    """
    own = writer.startswith("own_")
    with mock.patch.dict(os.environ, {"AZR_SAVE_WRITER": writer.removeprefix("own_") if own else "thread"}):
        trainer = AZRTrainer(model, tokenizer, device=device)
    if writer.startswith("dcp_"):
        trainer.callbacks.append(DcpSaves(trainer, directory / "dcp", writer.removeprefix("dcp_"), device))
    for _ in trainer.train(texts, steps, directory / "run", batch_size=batch,
                           save_every=SAVE_EVERY if own else 10**9, async_save=own, **SETTINGS):
        pass
    return trainer


def _throughput(bench: Bench, writer: str, make_model: Callable[[], torch.nn.Module], batch: int, steps: int,
                costs: list[SaveCost] | None) -> Callable[[], float]:
    """A contender: iterations per second in the steady-state window of a run saved by ``writer``."""
    def contender() -> float:
        directory = bench.directory("dcp-throughput")
        try:
            trainer = train(writer, make_model(), bench.tokenizer, bench.device, bench.texts, steps, batch, directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        ends = [record["time"] for record in trainer.history]
        if costs is not None:
            costs.append(SaveCost.of(ends, SAVE_EVERY))
        window = ends[WINDOW_START - 1:]
        return (len(window) - 1) / (window[-1] - window[0])
    return contender


# ---------------------------------------------------------------------------- the blocking part


def _own_saver(bench: Bench, current: Subject, writer: str) -> CheckpointSaver:
    """The trainer's saver for ``current``'s model with ``AZR_SAVE_WRITER=writer`` (a writer process taken)."""
    with mock.patch.dict(os.environ, {"AZR_SAVE_WRITER": writer}):
        saver = CheckpointSaver(current.model, bench.tokenizer, bench.device)
    saver.open_background()
    return saver


def _own_blocking(bench: Bench, current: Subject, saver: CheckpointSaver) -> Callable[[], float]:
    """A contender: what the trainer's background save blocks (the write is waited for outside the timing)."""
    def contender() -> float:
        root = bench.directory("own-blocking")
        run = dataclasses.replace(current.run, run_dir=root)
        seconds = []
        for _ in range(bench.sizes.saves_per_sample):
            seconds.append(timed(lambda: saver.save_in_background(run, "iter", StepSnapshot())))
            saver.finished(wait=True)
        shutil.rmtree(root)
        return statistics.mean(seconds)
    return contender


def _dcp_blocking(bench: Bench, current: Subject, executor: str, stager: DefaultStager) -> Callable[[], float]:
    """A contender: what ``dcp.async_save`` of the same state blocks (its tensors, collected as the call's
    argument inside the timing; the write is waited for outside it)."""
    def contender() -> float:
        root = bench.directory("dcp-blocking")
        seconds = []
        for number in range(bench.sizes.saves_per_sample):
            futures = []

            def save() -> None:
                state = tensor_state(current.model, current.run.optimizer, current.run.state.reference.tensors)
                futures.append(dcp_async_save(state, root / f"save_{number}", executor, stager))

            seconds.append(timed(save))
            futures[0].result()
        shutil.rmtree(root)
        return statistics.mean(seconds)
    return contender


def _state_bytes(current: Subject) -> int:
    state = tensor_state(current.model, current.run.optimizer, current.run.state.reference.tensors)
    tensors = list(state["model"].values()) + [value for values in state["optimizer"]["state"].values()
                                               for value in values.values()] + list(state.get("reference", {}).values())
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


# ---------------------------------------------------------------------------- what lands on disk


def _formats(bench: Bench, current: Subject) -> dict[str, Any]:
    """Save the state once with each DCP writer and describe the files: which are safetensors, JSON or neither."""
    root = bench.directory("dcp-formats")
    model, optimizer = current.model, current.run.optimizer
    saves = {
        "hf_writer_tensors_only": (tensor_state(model, optimizer), lambda d: HuggingFaceStorageWriter(str(d))),
        "hf_writer_full_optimizer_state_dict": ({"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                                                lambda d: HuggingFaceStorageWriter(str(d))),
        "default_filesystem_writer": (tensor_state(model, optimizer), lambda d: dcp.FileSystemWriter(str(d))),
    }
    formats = {}
    try:
        for name, (state, writer) in saves.items():
            dcp.save(state, storage_writer=writer(root / name), no_dist=True)
            formats[name] = describe_files(root / name)
        formats["own_checkpoint"] = describe_files(current.source)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return formats


def describe_files(directory: Path) -> dict[str, Any]:
    """Each file of ``directory`` as ``safetensors``, ``json`` or ``other`` (a pickle, a zip of pickles, ...), and
    whether all are safetensors or JSON."""
    from safetensors import safe_open  # noqa: PLC0415

    kinds = {}
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        kind = "other"
        try:
            with safe_open(str(path), "pt") as handle:
                handle.keys()
            kind = "safetensors"
        except Exception:  # noqa: BLE001 - not a safetensors file
            try:
                json.loads(path.read_bytes())
                kind = "json"
            except ValueError:
                pass
        kinds[path.name] = kind
    return {"files": kinds, "safetensors_or_json_only": all(kind != "other" for kind in kinds.values())}


# ---------------------------------------------------------------------------- memory, in fresh processes


def _rss_contender(bench: Bench, writer: str, config: ModelConfig, batch: int, steps: int,
                   runs: list[dict[str, Any]]) -> Callable[[], float]:
    """A contender: the peak RSS of a fresh process training with ``writer``; its other figures go to ``runs``."""
    def contender() -> float:
        result = run_python("-m", "benchmarks.dcp_saves", "rss", writer, str(bench.directory("dcp-rss")),
                            *child_args(bench, config, batch, steps))
        runs.append(result)
        return result["peak_mb"]
    return contender


def _rss(args: argparse.Namespace) -> dict[str, Any]:
    """Train one run with ``args.writer`` in this fresh process; return its memory figures (MB)."""
    from azr.checkpoints.writerprocess import WriterProcess, _idle  # noqa: PLC0415

    device, tokenizer, texts, _, model = fresh_run(args)
    directory = Path(args.directory)
    if args.writer == "own_process":  # started and ready, as in a long run (the run takes it from the pool)
        writer = WriterProcess.take()
        writer.prepare(model)
        writer.ready(timeout=300)
        writer.give_back()
    if args.writer == "dcp_process":  # DCP starts its process at the first save: one of a scalar starts it
        _one_process_group()
        stager = DefaultStager(staging_options("process", device))
        dcp_async_save({"x": torch.zeros(1)}, directory / "start", "process", stager).result()
        stager.close()
    trainer = train(args.writer, model, tokenizer, device, texts, args.steps, args.batch_size, directory)
    writer_pid = (_idle[0].pid if args.writer == "own_process" and _idle else
                  dcp_writer_pid() if args.writer == "dcp_process" else None)
    held = [trainer, model]
    del trainer, model
    figures = memory_after_run(held, writer_pid)
    if args.writer == "dcp_process":
        stop_dcp_process()
        dist.destroy_process_group()
    shutil.rmtree(directory, ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> None:
    """Run one memory measurement and print its JSON result as the last line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dcp_saves")
    commands = parser.add_subparsers(dest="command", required=True)
    rss = commands.add_parser("rss", help="train a run with one writer and report its memory")
    rss.add_argument("writer", choices=(NO_SAVES, *WRITERS))
    rss.add_argument("directory")
    rss.add_argument("--tokenizer", required=True)
    rss.add_argument("--model", required=True, help="the ModelConfig as JSON")
    rss.add_argument("--batch-size", type=int, required=True)
    rss.add_argument("--steps", type=int, required=True)
    rss.add_argument("--corpus-chars", type=int)
    rss.add_argument("--device", default="cpu")
    rss.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    from transformers.utils import logging as transformers_logging  # noqa: PLC0415

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    print(json.dumps(_rss(args)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
