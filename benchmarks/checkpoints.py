"""Checkpoints: saving and loading against writing and reading the same bytes and against transformers.Trainer's
checkpoints of the same model and optimizer, their size against the parameters, and how long Stop takes to leave a
paused checkpoint on disk.

"Our save" is the trainer's own save path (``CheckpointSaver.save`` of a real run state into a run directory);
"our load" is what a resume reads (``Checkpoint.open`` with sha256 verification, the weights, the optimizer state,
the RNG states, the LR plan and the history).
"""
from __future__ import annotations

import dataclasses
import os
import random
import shutil
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from azr import AZRTrainer, build_model
from azr.checkpoints.checkpoint import Checkpoint
from azr.training import rng
from azr.training.saving import CheckpointSaver, StepSnapshot
from azr.training.session import Run, prepare_run

from .common import SELF_PLAY_EVERY, Bench, Entry, alternate, paired_ratio, progress, timed
from .hf_checkpoints import HFCheckpoints

BLOB = "checkpoint.bin"
STOP_MARGIN_S = 0.1
STOP_EARLIEST_S = 0.2  # Stop comes at least this long after the first status
# The order in which the save and load contenders alternate.
ORDER = ("azr_save", "hf_trainer_save", "hf_trainer_save_fsync", "write_fsync_one_file", "write_fsync_same_files",
         "azr_load", "hf_trainer_load", "read_one_file")
LOADED = "Checkpoint.open (sha256 of every file) + load_weights + optimizer.load_state_dict + RNG + plan + history"


@dataclass
class Subject:
    """A model being checkpointed: the run state a resume of ``source`` prepares, and the saver of that run."""

    model: torch.nn.Module
    run: Run
    saver: CheckpointSaver
    source: Path
    device: torch.device

    def save(self, run_dir: Path, run: Run | None = None) -> Path:
        """Save the run (or ``run``, a variant of it) as the trainer does, into ``run_dir``; return the checkpoint."""
        return self.saver.save(dataclasses.replace(run or self.run, run_dir=run_dir), "iter", StepSnapshot())

    def load(self, path: Path) -> None:
        """Read ``path`` as a resume does, into this subject's model and optimizer."""
        checkpoint = Checkpoint.open(path, verify=True)
        checkpoint.load_weights(self.model)
        self.run.optimizer.load_state_dict(checkpoint.optimizer_state(self.device))
        rng.restore(checkpoint.rng_state(), self.device)
        checkpoint.plan()
        checkpoint.history()

    def describe(self) -> str:
        return f"{sum(p.numel() for p in self.model.parameters()) / 1e6:.1f}M parameters"


def subject(bench: Bench, model: torch.nn.Module, source: Path) -> Subject:
    """Return the subject resuming checkpoint ``source`` of ``model``'s run (prepared as ``train()`` would)."""
    checkpoint = Checkpoint.open(source)
    run = prepare_run(model, bench.tokenizer, bench.device, bench.texts, None, source.parent, checkpoint, True, {})
    return Subject(model, run, CheckpointSaver(model, bench.tokenizer, bench.device), source, bench.device)


def realistic_checkpoint(bench: Bench) -> tuple[AZRTrainer, Path]:
    """Train a default-cadence run (self-play included) for a few steps; return the trainer and its checkpoint."""
    trainer = AZRTrainer(bench.model(), bench.tokenizer, device=bench.device)
    for _ in trainer.train(bench.texts, bench.sizes.checkpoint_steps, bench.directory("source"),
                           batch_size=bench.sizes.batch_size, self_play_every=SELF_PLAY_EVERY):
        pass
    return trainer, Path(trainer.last_status.checkpoint)


def larger_checkpoint(bench: Bench) -> tuple[AZRTrainer, Path]:
    """Train a model of ``sizes.larger_model`` two small steps (AdamW state exists); return it and its checkpoint."""
    trainer = AZRTrainer(build_model(bench.sizes.larger_model, seed=0), bench.tokenizer, device=bench.device)
    for _ in trainer.train(bench.texts, 2, bench.directory("larger"), batch_size=1, self_play_every=0,
                           val_every=0):
        pass
    return trainer, Path(trainer.last_status.checkpoint)


def run(bench: Bench, small: Subject) -> list[Entry]:
    """Alternate our save and load, transformers.Trainer's, and raw writes and reads of the same bytes, at the
    benchmark's model and at a larger one; then measure Stop.

    The raw baseline is one file holding all the checkpoint's bytes, written and fsynced (or read back): the floor
    for persisting that many bytes. Writing the checkpoint's files one by one, each fsynced, is reported too.
    """
    progress(f"checkpoints of {small.describe()}: save, transformers.Trainer's save (as is, + fsync), write + fsync "
             "the bytes (one file, the same files), load, Trainer's load, read the bytes")
    samples, hf_bytes = save_and_load(bench, small, bench.sizes.saves_per_sample)
    larger_trainer, larger_source = larger_checkpoint(bench)
    larger = subject(bench, larger_trainer.model, larger_source)
    progress(f"the same for a checkpoint of {larger.describe()}")
    larger_samples, larger_hf_bytes = save_and_load(bench, larger, 1)
    sizes = file_sizes(small.source)
    parameters = list(small.model.parameters())
    parameter_mb = sum(p.numel() * p.element_size() for p in parameters) / 2**20
    size_samples = {"checkpoint": [sum(sizes.values()) / 2**20], "weights_and_adam_moments": [3 * parameter_mb]}
    common = dict(model=small.describe(), bytes=sum(sizes.values()), files=len(sizes),
                  operations_per_sample=bench.sizes.saves_per_sample, page_cache="warm")
    larger_common = dict(model=larger.describe(), bytes=sum(file_sizes(larger_source).values()),
                         operations_per_sample=1, page_cache="warm")

    def at_larger(contender: str, baseline: str) -> dict[str, object]:
        medians = {name: statistics.median(larger_samples[name]) for name in (contender, baseline)}
        return {**larger_common, **medians, "ratio": paired_ratio(larger_samples[contender], larger_samples[baseline])}

    return [
        bench.entry("checkpoint_save_s", samples, "s", "azr_save", "write_fsync_one_file", ("<=", 1.3),
                    **common, write_fsync_same_files_s=statistics.median(samples["write_fsync_same_files"]),
                    ratio_to_same_files=paired_ratio(samples["azr_save"], samples["write_fsync_same_files"]),
                    larger_checkpoint=at_larger("azr_save", "write_fsync_one_file")),
        bench.entry("checkpoint_load_s", samples, "s", "azr_load", "read_one_file", ("<=", 1.3), **common, load=LOADED,
                    larger_checkpoint=at_larger("azr_load", "read_one_file")),
        bench.entry("checkpoint_size_mb", size_samples, "MB", "checkpoint", "weights_and_adam_moments",
                    file_bytes=sizes, parameters=sum(p.numel() for p in parameters)),
        *versus_trainer(bench, samples, common, hf_bytes, ""),
        *versus_trainer(bench, larger_samples, larger_common, larger_hf_bytes, "_larger"),
        stop_latency(bench, statistics.median(samples["azr_save"])),
    ]


def versus_trainer(bench: Bench, values: dict[str, list[float]], model: dict[str, object],
                   trainer_bytes: dict[str, int], suffix: str) -> list[Entry]:
    """The entries of our save and load against transformers.Trainer's, from :func:`save_and_load`'s samples."""
    return [
        bench.entry(f"save_vs_hf_trainer{suffix}", values, "s", "azr_save", "hf_trainer_save_fsync", ("<=", 1.0),
                    **model, hf_trainer_save_as_is_s=statistics.median(values["hf_trainer_save"]),
                    ratio_to_hf_trainer_save_as_is=paired_ratio(values["azr_save"], values["hf_trainer_save"]),
                    hf_trainer_bytes=trainer_bytes, hf_trainer_fsync="every file it wrote, its folder and the "
                    "run folder", hf_trainer="Trainer._save_checkpoint, tokenizer as processing_class"),
        bench.entry(f"load_vs_hf_trainer{suffix}", values, "s", "azr_load", "hf_trainer_load", ("<=", 1.0),
                    **model, load=LOADED, hf_trainer="TrainerState.load_from_json + _load_from_checkpoint + "
                    "_load_optimizer_and_scheduler + _load_rng_state"),
    ]


def file_sizes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(directory.iterdir()) if p.is_file()}


def repeated(bench: Bench, operation: Callable[[Path, int], object], prefix: str,
             count: int) -> Callable[[], float]:
    """Return a contender timing ``operation(fresh directory, i)`` ``count`` times (the directory is removed)."""
    def contender() -> float:
        root = bench.directory(prefix)
        seconds = statistics.mean(timed(lambda i=i: operation(root, i)) for i in range(count))
        shutil.rmtree(root)
        return seconds
    return contender


def save_and_load(bench: Bench, subject: Subject, count: int,
                  raw: bool = True) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Alternate our save, the Trainer's save (as is and fsynced), our load and the Trainer's load, and with ``raw``
    writing and reading the same bytes; each sample is the mean of ``count`` operations. Returns the samples and the
    sizes of the Trainer's files."""
    source = subject.save(bench.directory("azr"))
    hf_root = bench.directory("hf")
    hf = HFCheckpoints(subject.model, bench.tokenizer, subject.run.optimizer, bench.device,
                       subject.run.state.iteration, hf_root)
    hf_source = hf.save(hf_root, fsync=True)
    contenders = {
        "azr_save": repeated(bench, lambda root, i: subject.save(root / str(i)), "save", count),
        "hf_trainer_save": repeated(bench, lambda root, i: hf.save(root / str(i)), "hf-save", count),
        "hf_trainer_save_fsync": repeated(bench, lambda root, i: hf.save(root / str(i), fsync=True), "hf-save", count),
        "azr_load": repeated(bench, lambda root, i: subject.load(source), "load", count),
        "hf_trainer_load": repeated(bench, lambda root, i: hf.load(hf_source), "hf-load", count),
    }
    scratch = [source.parent, hf_source.parent]
    if raw:
        scratch.append(_raw_contenders(bench, source, count, contenders))
    samples = alternate({name: contenders[name] for name in ORDER if name in contenders}, bench.sizes.repeats)
    hf_bytes = {str(p.relative_to(hf_source)): p.stat().st_size for p in sorted(hf_source.rglob("*")) if p.is_file()}
    for directory in scratch:
        shutil.rmtree(directory)
    return samples, hf_bytes


def _raw_contenders(bench: Bench, source: Path, count: int, contenders: dict[str, Callable[[], float]]) -> Path:
    """Add writing ``source``'s bytes (as one file and as its files) and reading them back to ``contenders``; return
    the directory of the one file."""
    files = {p.name: p.read_bytes() for p in sorted(source.iterdir()) if p.is_file()}
    blob_bytes = b"".join(files.values())
    blob = _write_and_fsync(bench.directory("blob") / "raw", {BLOB: blob_bytes})
    contenders.update({
        "write_fsync_one_file": repeated(bench, lambda root, i: _write_and_fsync(root / str(i), {BLOB: blob_bytes}),
                                         "write", count),
        "write_fsync_same_files": repeated(bench, lambda root, i: _write_and_fsync(root / str(i), files), "write",
                                           count),
        "read_one_file": repeated(bench, lambda root, i: blob.read_bytes(), "read", count),
    })
    return blob.parent.parent


def _write_and_fsync(directory: Path, payloads: dict[str, bytes]) -> Path:
    """Write each payload to a file in a new ``directory``, fsyncing each; return the last file."""
    directory.mkdir()
    for name, data in payloads.items():
        path = directory / name
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return path


def stop_latency(bench: Bench, save_s: float) -> Entry:
    """Time stop_training(), called from another thread at a random moment, until the paused checkpoint is saved.

    Each repeat's bound is the iteration in flight at the Stop plus one save (``save_s``) plus 0.1 s.
    """
    choose = random.Random(0)
    latencies: list[float] = []
    bounds: list[float] = []
    progress("stop latency: stop_training() from another thread at a random moment")
    for round_ in range(1 + bench.sizes.repeats):
        latency, iteration_s = _stop_once(bench, STOP_EARLIEST_S + choose.uniform(0, bench.sizes.stop_window_s))
        progress(f"  {'warm-up' if round_ == 0 else round_}: latency {latency:.3f} s, in-flight iteration "
                 f"{iteration_s:.3f} s")
        if round_:
            latencies.append(latency)
            bounds.append(iteration_s + save_s)
    entry = bench.entry("stop_latency_s", {"stop_to_paused_checkpoint": latencies, "iteration_plus_save": bounds},
                        "s", "stop_to_paused_checkpoint", "iteration_plus_save", save_s=save_s,
                        settings="default cadence (self-play every 10, validation every 50)")
    entry.goal = f"every repeat <= in-flight iteration + one save + {STOP_MARGIN_S} s"
    entry.met = all(latency <= bound + STOP_MARGIN_S for latency, bound in zip(latencies, bounds))
    return entry


def _stop_once(bench: Bench, delay_s: float) -> tuple[float, float]:
    """Train at the default cadence, Stop after ``delay_s``; return the latency and the in-flight iteration's time."""
    trainer = AZRTrainer(bench.model(), bench.tokenizer, device=bench.device)
    directory = bench.directory("stop")
    statuses = trainer.train(bench.texts, 10**6, directory, batch_size=bench.sizes.batch_size,
                             self_play_every=SELF_PLAY_EVERY)
    next(statuses)
    ends = [time.time()]  # the loop has started: the first step begins
    stopped: list[float] = []
    timer = threading.Timer(delay_s, lambda: (stopped.append(time.time()), trainer.stop_training()))
    timer.start()
    for status in statuses:
        if status.state == "paused":
            done = time.time()
            break
    statuses.close()
    shutil.rmtree(directory)
    ends += [record["time"] for record in trainer.history]
    before = max(end for end in ends if end <= stopped[0])
    after = [end for end in ends if end > stopped[0]]
    in_flight = (after[0] if after else ends[-1]) - (before if after else ends[-2])
    return done - stopped[0], in_flight
