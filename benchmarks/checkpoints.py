"""Checkpoints: saving and loading against writing and reading the same bytes, their size against the parameters,
and how long Stop takes to leave a paused checkpoint on disk."""
from __future__ import annotations

import copy
import os
import random
import shutil
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from azr import AZRTrainer, build_model
from azr import checkpoint as ckpt

from .common import Bench, Entry, alternate, paired_ratio, progress, timed
from .loops import adamw

BLOB = "checkpoint.bin"
STOP_MARGIN_S = 0.1
STOP_EARLIEST_S = 0.2  # Stop comes at least this long after the first status


def realistic_checkpoint(bench: Bench) -> tuple[AZRTrainer, Path]:
    """Train a default-cadence run (self-play included) for a few steps; return the trainer and its checkpoint."""
    trainer = AZRTrainer(bench.model(), bench.tokenizer, device=bench.device)
    for _ in trainer.train(bench.texts, bench.sizes.checkpoint_steps, bench.directory("source"),
                           batch_size=bench.sizes.batch_size):
        pass
    return trainer, Path(trainer.last_status.checkpoint)


def run(bench: Bench, trainer: AZRTrainer, source: Path) -> list[Entry]:
    """Alternate save / raw writes / load / raw read of the checkpoint, and of a larger one; then measure Stop.

    The raw baseline is one file holding all the checkpoint's bytes, written and fsynced (or read back): the floor
    for persisting that many bytes. Writing the checkpoint's files one by one, each fsynced, is reported too.
    """
    progress("checkpoints: save, write + fsync the bytes (one file, the same files), load, read the bytes")
    samples = _save_and_load(bench, trainer, source, bench.sizes.saves_per_sample)
    larger, larger_source = larger_checkpoint(bench)
    progress(f"the same for a checkpoint of {_describe(larger)}")
    larger_samples = _save_and_load(bench, larger, larger_source, 1)
    sizes = {p.name: p.stat().st_size for p in sorted(source.iterdir()) if p.is_file()}
    parameters = list(trainer.model.parameters())
    parameter_mb = sum(p.numel() * p.element_size() for p in parameters) / 2**20
    size_samples = {"checkpoint": [sum(sizes.values()) / 2**20], "weights_and_adam_moments": [3 * parameter_mb]}
    common = dict(model=_describe(trainer), bytes=sum(sizes.values()), files=len(sizes),
                  operations_per_sample=bench.sizes.saves_per_sample, page_cache="warm")
    larger_bytes = sum(p.stat().st_size for p in larger_source.iterdir() if p.is_file())

    def at_larger(contender: str, baseline: str) -> dict[str, object]:
        medians = {name: statistics.median(larger_samples[name]) for name in (contender, baseline)}
        return {"model": _describe(larger), "bytes": larger_bytes, **medians,
                "ratio": paired_ratio(larger_samples[contender], larger_samples[baseline])}

    return [
        bench.entry("checkpoint_save_s", samples, "s", "save_checkpoint", "write_fsync_one_file", ("<=", 1.3),
                    **common, write_fsync_same_files_s=statistics.median(samples["write_fsync_same_files"]),
                    ratio_to_same_files=paired_ratio(samples["save_checkpoint"], samples["write_fsync_same_files"]),
                    larger_checkpoint=at_larger("save_checkpoint", "write_fsync_one_file")),
        bench.entry("checkpoint_load_s", samples, "s", "load_checkpoint", "read_one_file", ("<=", 1.3), **common,
                    load="AZRTrainer.load_checkpoint (sha256 check + weights) + optimizer, rng, scheduler, self-play",
                    larger_checkpoint=at_larger("load_checkpoint", "read_one_file")),
        bench.entry("checkpoint_size_mb", size_samples, "MB", "checkpoint", "weights_and_adam_moments",
                    file_bytes=sizes, parameters=sum(p.numel() for p in parameters)),
        stop_latency(bench, statistics.median(samples["save_checkpoint"])),
    ]


def larger_checkpoint(bench: Bench) -> tuple[AZRTrainer, Path]:
    """Train a model of ``sizes.larger_model`` two small steps (AdamW state exists); return it and its checkpoint."""
    trainer = AZRTrainer(build_model(bench.sizes.larger_model, seed=0), bench.tokenizer, device=bench.device)
    for _ in trainer.train(bench.texts, 2, bench.directory("larger"), batch_size=1, self_play_every=0,
                           val_every=0):
        pass
    return trainer, Path(trainer.last_status.checkpoint)


def _describe(trainer: AZRTrainer) -> str:
    return f"{sum(p.numel() for p in trainer.model.parameters()) / 1e6:.1f}M parameters"


def _save_and_load(bench: Bench, trainer: AZRTrainer, source: Path, count: int) -> dict[str, list[float]]:
    """Alternate saving the trainer's state like ``source``, writing its bytes, loading it and reading its bytes;
    each sample is the mean of ``count`` operations."""
    state = {k: v for k, v in ckpt.read_state(source).items() if k not in ("files", "format_version", "name")}
    contents = dict(model=trainer.model, tokenizer=trainer.tokenizer, state=state,
                    optimizer_state=trainer.optimizer.state_dict(), scheduler=ckpt.load_scheduler(source),
                    rng=ckpt.load_tensor_file(source, ckpt.RNG_FILE), self_play=ckpt.load_self_play(source))
    files = {p.name: p.read_bytes() for p in sorted(source.iterdir()) if p.is_file()}
    one_file = {BLOB: b"".join(files.values())}
    blob = _write_and_fsync(bench.directory("blob") / "raw", one_file)
    loader = AZRTrainer(copy.deepcopy(trainer.model), trainer.tokenizer, device=bench.device)
    optimizer = adamw(loader.model)

    def repeated(operation: Callable[[Path, int], object], prefix: str) -> Callable[[], float]:
        """Return a contender timing ``operation(fresh directory, i)`` ``count`` times (the directory is removed)."""
        def contender() -> float:
            root = bench.directory(prefix)
            seconds = statistics.mean(timed(lambda i=i: operation(root, i)) for i in range(count))
            shutil.rmtree(root)
            return seconds
        return contender

    samples = alternate({
        "save_checkpoint": repeated(lambda root, i: ckpt.save_checkpoint(
            root, ckpt.checkpoint_name("iter", i), **contents), "save"),
        "write_fsync_one_file": repeated(lambda root, i: _write_and_fsync(root / str(i), one_file), "write"),
        "write_fsync_same_files": repeated(lambda root, i: _write_and_fsync(root / str(i), files), "write"),
        "load_checkpoint": repeated(lambda root, i: _load(loader, optimizer, source), "load"),
        "read_one_file": repeated(lambda root, i: blob.read_bytes(), "read"),
    }, bench.sizes.repeats)
    shutil.rmtree(blob.parent.parent)
    return samples


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


def _load(trainer: AZRTrainer, optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Everything a resume reads from a checkpoint: verified state and weights, then the sidecars."""
    trainer.load_checkpoint(path)
    optimizer.load_state_dict(ckpt.load_tensor_file(path, ckpt.OPTIMIZER_FILE, trainer.device))
    ckpt.load_tensor_file(path, ckpt.RNG_FILE)
    ckpt.load_scheduler(path)
    ckpt.load_self_play(path)


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
    statuses = trainer.train(bench.texts, 10**6, directory, batch_size=bench.sizes.batch_size)
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
