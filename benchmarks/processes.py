"""Fresh processes: import time, resume-to-first-step time and peak memory (RSS) of a run against the bare loop.

The parent side (:func:`run`) starts ``python -c IMPORT_AZR`` and ``python -m benchmarks.processes resume|rss ...``,
whose last stdout line is a JSON object of absolute ``time.time()`` marks or the process's peak RSS.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from azr import AZRTrainer, ModelConfig, build_model
from azr.data.corpus import TokenWindows
from azr.training.trainer import resolve_device

from .common import (
    SELF_PLAY_EVERY,
    TOKENIZER_DIR,
    Bench,
    Entry,
    alternate,
    corpus,
    progress,
    window_length,
)
from .loops import PLAIN, bare_loop, batches

REPO = Path(__file__).resolve().parents[1]
IMPORT_AZR = "import json, time; from azr import AZRTrainer; print(json.dumps({'imported': time.time()}))"


def run(bench: Bench, checkpoint: Path) -> list[Entry]:
    """Alternate importing the trainer, resume-to-first-step and the two peak-memory runs in fresh processes."""
    sizes = bench.sizes
    device = ["--device", bench.device.type, "--threads", str(bench.threads)]
    run_args = child_args(bench, bench.model_config, sizes.batch_size, sizes.rss_steps)
    phases: list[dict[str, float]] = []

    def import_azr() -> float:
        start = time.time()
        return run_python("-c", IMPORT_AZR)["imported"] - start

    def resume() -> float:
        start = time.time()
        marks = run_python("-m", "benchmarks.processes", "resume", str(checkpoint), str(bench.directory("resume")),
                        *device)
        phases.append({name: mark - start for name, mark in marks.items()})
        return marks["first_step"] - start

    def peak_rss(kind: str) -> float:
        measured = run_python("-m", "benchmarks.processes", "rss", kind, str(bench.directory("rss")), *run_args)
        return measured["maxrss_mb"]

    progress("fresh processes: import the trainer, resume to first step, peak RSS of a run and of the bare loop")
    samples = alternate({"python_c_import_azr": import_azr, "resume_process": resume,
                         "azr_run": lambda: peak_rss("azr"), "bare_loop": lambda: peak_rss("bare")},
                        sizes.process_repeats, sizes.process_warmup)
    timeline = {name: statistics.median(p[name] for p in phases[sizes.process_warmup:]) for name in phases[0]}
    return [
        bench.entry("import_s", samples, "s", "python_c_import_azr",
                    measured="python started until `from azr import AZRTrainer` done (`import azr` alone is lazy)"),
        bench.entry("resume_to_first_step_s", samples, "s", "resume_process", timeline_s=timeline,
                    path="AZRTrainer.from_checkpoint(path) then train(max_iterations=saved + 1)"),
        bench.entry("peak_rss_mb", samples, "MB", "azr_run", "bare_loop", iterations=sizes.rss_steps,
                    azr_run="default settings: self-play every 10, validation every 50, saves every 100 and last"),
    ]


def child_args(bench: Bench, config: ModelConfig, batch_size: int, steps: int) -> list[str]:
    """The options of a child measurement (:func:`fresh_run`) training ``steps`` iterations of ``batch_size``
    windows of a fresh ``config`` model on the bench's corpus, tokenizer, device and threads."""
    args = ["--tokenizer", str(bench.scratch / TOKENIZER_DIR), "--model", json.dumps(config.to_dict()),
            "--batch-size", str(batch_size), "--steps", str(steps), "--device", bench.device.type,
            "--threads", str(bench.threads)]
    return args if bench.sizes.corpus_chars is None else [*args, "--corpus-chars", str(bench.sizes.corpus_chars)]


def run_python(*args: str) -> dict[str, Any]:
    """Run this interpreter with ``args`` from the repository root; return the JSON of its last stdout line."""
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args[:3])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


# ---------------------------------------------------------------------------- the child processes


def _resume(args: argparse.Namespace) -> dict[str, float]:
    """Resume the checkpoint and train one iteration; return when imports, loading, preparing and the step ended."""
    marks = {"imported": time.time()}
    torch.set_num_threads(args.threads)
    trainer = AZRTrainer.from_checkpoint(args.checkpoint, device=args.device)
    marks["loaded"] = time.time()
    statuses = trainer.train(max_iterations=trainer.history[-1]["iteration"] + 1, checkpoint_dir=args.directory)
    next(statuses)
    marks["prepared"] = time.time()
    for _ in statuses:
        pass
    marks["first_step"] = trainer.history[-1]["time"]
    return marks


def fresh_run(args: argparse.Namespace) -> tuple[torch.device, Any, list[str], ModelConfig, torch.nn.Module]:
    """What a child measurement trains, from its arguments (``--threads``, ``--device``, ``--tokenizer``,
    ``--corpus-chars``, ``--model``): the device, tokenizer, texts, model config and a fresh model."""
    torch.set_num_threads(args.threads)
    config = ModelConfig.from_dict(json.loads(args.model))
    return (resolve_device(args.device), AutoTokenizer.from_pretrained(args.tokenizer), corpus(args.corpus_chars),
            config, build_model(config, seed=0))


def _peak_rss(args: argparse.Namespace) -> dict[str, Any]:
    """Train a run on the corpus (AZRTrainer at its defaults with self-play every 10, AZRTrainer plain with
    background or immediate saves every ``--save-every``, transformers.Trainer saving as often, or the bare loop);
    return the peak RSS and the memory after the run (:func:`memory_after_run`) against ``start_mb``, the RSS before
    training (the model built)."""
    device, tokenizer, texts, config, model = fresh_run(args)
    seq_len = args.seq_len or window_length(config)
    start_mb, start_parts = status_mb("VmRSS"), rss_parts()
    held: list[Any] = []
    blocking: list[float] = []
    if args.kind.startswith("azr"):
        if args.writer:
            os.environ["AZR_SAVE_WRITER"] = args.writer
        trainer = AZRTrainer(model, tokenizer, device=device)
        _time_background_saves(trainer._saver, blocking)
        plain = {**PLAIN, "save_every": args.save_every, "seq_len": seq_len, "async_save": args.kind == "azr_saving"}
        settings = {"self_play_every": SELF_PLAY_EVERY} if args.kind == "azr" else plain
        for _ in trainer.train(texts, args.steps, args.directory, batch_size=args.batch_size, **settings):
            pass
        held.append(trainer)
        del trainer
    else:
        windows = TokenWindows.from_texts(texts, tokenizer, seq_len)
        data = batches(windows.train, args.batch_size, args.steps, device)
        if args.kind == "hf":
            from .training import hf_train  # noqa: PLC0415 (transformers.Trainer: only in its own child)

            hf_train(model, data, Path(args.directory), device, "fp32", args.save_every)
        else:
            bare_loop(model.to(device), data, device)
    from azr.checkpoints.writerprocess import _idle  # noqa: PLC0415 (the pool of writer processes)

    writer = _idle[0].pid if args.kind == "azr_saving" and _idle else None
    return {"maxrss_mb": peak_rss_mb(), "start_mb": start_mb, "start_parts_mb": start_parts,
            "blocking_s": blocking, **memory_after_run(held, writer)}


def _time_background_saves(saver, seconds: list[float]) -> None:
    """Append to ``seconds`` how long each background save of ``saver`` blocks the training thread."""
    save = saver.save_in_background

    def timed_save(*args, **kwargs):
        start = time.perf_counter()
        save(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
    saver.save_in_background = timed_save


def memory_after_run(held: list[Any], writer_pid: int | None = None) -> dict[str, Any]:
    """The memory of a run that has just ended (MB): the process's peak, its RSS now and the shared part of it, the
    writer process's, the RSS after ``malloc_trim`` and after what ``held`` holds (the trainer, which an app keeps
    until the next run) is dropped (``held`` is emptied)."""
    figures: dict[str, Any] = {"peak_mb": status_mb("VmHWM"), "after_run_mb": status_mb("VmRSS"),
                               "shared_after_run_mb": status_mb("RssShmem")}
    if writer_pid is not None:
        figures["writer"] = {"peak_mb": status_mb("VmHWM", writer_pid), "after_run_mb": status_mb("VmRSS", writer_pid)}
    trim()
    figures["after_run_trimmed_mb"] = status_mb("VmRSS")
    held.clear()
    gc.collect()
    trim()
    figures["after_release_mb"], figures["shared_after_release_mb"] = status_mb("VmRSS"), status_mb("RssShmem")
    figures["after_release_parts_mb"] = rss_parts()
    if writer_pid is not None:
        figures["writer"]["after_release_mb"] = status_mb("VmRSS", writer_pid)
    return figures


def rss_parts() -> dict[str, float]:
    """The resident memory by kind (MB): anonymous (heap, tensors), file-backed (libraries' code and mapped files,
    paged in as they are first used) and shared memory."""
    return {field: status_mb(field) for field in ("RssAnon", "RssFile", "RssShmem")}


def trim() -> None:
    """Give the heap's free memory back to the system (glibc keeps freed blocks), so that RSS counts live memory."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def status_mb(field: str, pid: int | str = "self") -> float:
    """A field of /proc/<pid>/status in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:")) / 2**10


class TreePeak:
    """The largest RSS of this process and its children together (MB), sampled every ``interval`` seconds while
    the ``with`` block runs (a child that tokenises a corpus counts: it holds memory at the same time)."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval, self.peak_mb, self._done = interval, 0.0, threading.Event()

    def __enter__(self) -> TreePeak:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self.peak_mb = max(self.peak_mb, status_mb("VmRSS") + sum(map(_rss_mb, _children())))


def _children() -> list[str]:
    """The pids of this process's children (every thread's)."""
    return [pid for task in Path("/proc/self/task").iterdir()
            for pid in (task / "children").read_text(encoding="ascii").split()]


def _rss_mb(pid: str) -> float:
    """A process's RSS in MB; 0 once it has ended."""
    try:
        return status_mb("VmRSS", pid)
    except (OSError, StopIteration):
        return 0.0


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM on Linux, where ``ru_maxrss`` of a child started by ``subprocess`` (vfork)
    is at least the parent's RSS at the start; ``ru_maxrss`` elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 2**10
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def main(argv: list[str] | None = None) -> None:
    """Run one child measurement and print its JSON result as the last line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.processes")
    commands = parser.add_subparsers(dest="command", required=True)
    resume = commands.add_parser("resume", help="resume a checkpoint and train one iteration")
    resume.add_argument("checkpoint")
    rss = commands.add_parser("rss", help="train a run and report the peak RSS")
    rss.add_argument("kind", choices=("azr", "azr_saving", "azr_sync_saving", "hf", "bare"))
    rss.add_argument("--tokenizer", required=True)
    rss.add_argument("--model", required=True, help="the ModelConfig as JSON")
    rss.add_argument("--batch-size", type=int, required=True)
    rss.add_argument("--steps", type=int, required=True)
    rss.add_argument("--corpus-chars", type=int)
    rss.add_argument("--seq-len", type=int, help="tokens per window (default: the model's, at most 256)")
    rss.add_argument("--save-every", type=int, help="azr_saving, azr_sync_saving and hf: a checkpoint every N steps")
    rss.add_argument("--writer", help="AZRTrainer: the AZR_SAVE_WRITER of the run (default: as set)")
    for command in (resume, rss):
        command.add_argument("directory", help="the run's checkpoint directory")
        command.add_argument("--device", default="cpu")
        command.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(_resume(args) if args.command == "resume" else _peak_rss(args)))


if __name__ == "__main__":
    main()
