"""What every benchmark group shares: sizes, the machine, the corpus and model, alternation and result entries."""
from __future__ import annotations

import copy
import ctypes
import dataclasses
import gc
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import PreTrainedTokenizerFast

from azr import ModelConfig, build_model, default_corpus, preset, train_tokenizer
from azr.config import default_seq_len
from azr.data.corpus import TokenWindows

TOKENIZER_DIR = "tokenizer"
# Self-play every 10 iterations: the AZR cycle the timing groups measure (self-play is off by default; this is the
# cadence whose cost the README quotes), so that their numbers stay comparable with earlier runs.
SELF_PLAY_EVERY = 10
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: buffers up to 32 MiB come from the heap
TRIM_THRESHOLD = 512 * 2**20


@dataclass(frozen=True)
class Sizes:
    """How big a run is: repeats, corpus, model and the length of each timed piece."""

    name: str
    repeats: int  # timed rounds of every in-process comparison (after one warm-up round)
    process_repeats: int  # timed rounds of the fresh-process measurements
    process_warmup: int  # their warm-up rounds
    corpus_chars: int | None  # None: the whole embedded corpus
    model: ModelConfig
    batch_size: int
    train_steps: int  # steps of each timed training run; the first one is not in the timed window
    save_every: int  # checkpoint cadence of the push comparison
    gen_rollouts: int  # self-play rollouts per timed generation sample
    checkpoint_steps: int  # steps trained before the realistic checkpoint is taken
    saves_per_sample: int  # saves (and loads) averaged in one timed checkpoint sample
    stop_window_s: float  # Stop is called at a random moment this long after the first status
    rss_steps: int  # iterations of each peak-memory process
    larger_model: ModelConfig  # a second checkpoint size, where bytes weigh more than fixed costs
    history_records: int  # iterations of history of the long run
    history_short_records: int  # ... and of the short run it is compared with
    listed_checkpoints: int  # checkpoints of the long run in the directory `azr list` lists
    async_steps: int  # iterations of each run of the async-save throughput comparison (≥ 21: a save after the first)
    larger_async_steps: int  # ... at the larger model
    data_mb: tuple[float, ...]  # sizes of the generated corpora the data group tokenises (none: it is skipped)
    data_repeats: int  # timed rounds of each (fresh processes, no warm-up)
    resume_mb: tuple[float, ...]  # sizes of the corpora of the runs the data group resumes (none: not measured)
    resume_base_mb: float  # ... each against a run over a corpus of this size


DEFAULT = Sizes(name="default", repeats=5, process_repeats=5, process_warmup=1, corpus_chars=None, model=preset("tiny"),
                batch_size=16, train_steps=101, save_every=25, gen_rollouts=8, checkpoint_steps=20,
                saves_per_sample=3, stop_window_s=2.0, rss_steps=101, larger_model=preset("base"),
                history_records=1_000_000, history_short_records=1_000, listed_checkpoints=20, async_steps=101,
                larger_async_steps=41, data_mb=(10, 50), data_repeats=3,
                resume_mb=(50,), resume_base_mb=10)
# --quick is a smoke test: one timed round, the "larger" model no larger, a quarter-MB corpus and no resume over
# generated corpora (each of its rounds is two `azr resume` processes; the processes group resumes one already).
QUICK = Sizes(name="quick", repeats=1, process_repeats=1, process_warmup=0, corpus_chars=150_000,
              model=preset("tiny", d_model=32, d_ff=128), batch_size=4, train_steps=11, save_every=10,
              gen_rollouts=1, checkpoint_steps=10, saves_per_sample=1, stop_window_s=0.3, rss_steps=11,
              larger_model=preset("tiny", d_model=32, d_ff=128), history_records=100_000, history_short_records=1_000,
              listed_checkpoints=5, async_steps=21, larger_async_steps=21, data_mb=(0.25,), data_repeats=1,
              resume_mb=(), resume_base_mb=10)


@dataclass
class Entry:
    """One metric of the results: the contender's median ``value`` and, for a pair, the ``baseline``'s and the ratio."""

    name: str
    value: float
    unit: str
    repeats: int
    machine: dict[str, Any]
    sizes: str
    ratio: float | None = None
    baseline: float | None = None
    compared_with: str | None = None
    goal: str | None = None
    met: bool | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return dataclasses.asdict(self)


class Bench:
    """The shared setup of a run: sizes, device, scratch directory, corpus, tokenizer and token windows."""

    def __init__(self, sizes: Sizes, device: torch.device, threads: int, scratch: Path, allocator: str,
                 precision: str = "fp32") -> None:
        self.sizes = sizes
        self.device = device
        self.precision = precision  # of the training comparisons (AZRTrainer and the bare loop alike)
        self.threads = threads
        self.scratch = scratch
        self.texts = corpus(sizes.corpus_chars)
        self.tokenizer: PreTrainedTokenizerFast = train_tokenizer(self.texts, sizes.model.vocab_size)
        self.tokenizer.save_pretrained(scratch / TOKENIZER_DIR)
        self.model_config = dataclasses.replace(sizes.model, vocab_size=len(self.tokenizer))
        self.seq_len = window_length(self.model_config)
        self.windows = TokenWindows.from_texts(self.texts, self.tokenizer, self.seq_len)
        self.machine = {**describe_machine(device, threads, allocator), "precision": precision}

    def at(self, model: ModelConfig, batch_size: int, seq_len: int, steps: int) -> Bench:
        """Return this bench training ``model`` instead (the same corpus, tokenizer, device and scratch space):
        ``steps`` iterations of ``batch_size`` windows of ``seq_len`` tokens. ``model``'s vocabulary may be larger
        than the tokenizer's (a preset's own, as a real model of that size has)."""
        view = copy.copy(self)
        view.sizes = dataclasses.replace(self.sizes, model=model, batch_size=batch_size, train_steps=steps,
                                         larger_model=model)
        view.model_config, view.seq_len = model, seq_len
        view.windows = TokenWindows.from_texts(self.texts, self.tokenizer, seq_len)
        return view

    def model(self) -> torch.nn.Module:
        """Return a fresh model with the same initial weights every time, on the run's device."""
        return build_model(self.model_config, seed=0).to(self.device)

    def directory(self, prefix: str) -> Path:
        """Return a new empty directory in the scratch space."""
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.scratch))

    def entry(self, name: str, samples: dict[str, list[float]], unit: str, contender: str,
              baseline: str | None = None, goal: tuple[str, float] | None = None, **detail: Any) -> Entry:
        """Return the entry of ``contender``'s median against ``baseline``'s.

        The ratio is the median of the per-round ratios contender / baseline (:func:`paired_ratio`): each round
        ran the two back to back, so a ratio compares them under the same load from other processes.
        """
        value = statistics.median(samples[contender])
        entry = Entry(name, value, unit, len(samples[contender]), self.machine, self.sizes.name,
                      samples={k: samples[k] for k in (contender, baseline) if k}, detail=detail)
        if baseline is not None:
            entry.baseline = statistics.median(samples[baseline])
            entry.ratio = paired_ratio(samples[contender], samples[baseline])
            entry.compared_with = baseline
            rounds = [value / base for value, base in zip(samples[contender], samples[baseline])]
            entry.detail.setdefault("ratio_range", [min(rounds), max(rounds)])  # the per-round spread
        if goal is not None and entry.ratio is not None:
            op, bound = goal
            entry.goal = f"ratio {op} {bound:g}"
            entry.met = entry.ratio >= bound if op == ">=" else entry.ratio <= bound
        return entry


def paired_ratio(values: list[float], baselines: list[float]) -> float:
    """Return the median of the per-round ratios value / baseline."""
    return statistics.median(value / baseline for value, baseline in zip(values, baselines))


def corpus(chars: int | None) -> list[str]:
    """Return the embedded corpus, or its first ``chars`` characters."""
    texts = default_corpus()
    return texts if chars is None else [texts[0][:chars]]


def window_length(config: ModelConfig) -> int:
    """Return the tokens per training window AZRTrainer uses by default for a model of this size."""
    return default_seq_len(config.max_seq_len)


def learning_pool(workers: int) -> ProcessPoolExecutor:
    """Return a pool of ``workers`` fresh processes for learning runs: one torch thread each, transformers quiet."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_quiet)


def _quiet() -> None:
    """Set up a worker process of :func:`learning_pool`."""
    torch.set_num_threads(1)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def alternate(contenders: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run the contenders in turn ``warmup + repeats`` times; return the timed rounds' values.

    Odd rounds run them in reverse order (A B C, C B A, ...), so that no contender always follows the same one;
    neighbours stay neighbours. Garbage left by earlier contenders is collected before each one starts.
    """
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(warmup + repeats):
        started = time.monotonic()
        order = list(contenders) if round_ % 2 == 0 else list(reversed(contenders))
        values = {name: _collected(contenders[name]) for name in order}
        if round_ >= warmup:
            for name, value in values.items():
                samples[name].append(value)
        label = "warm-up" if round_ < warmup else f"{round_ - warmup + 1}/{repeats}"
        progress(f"  {label} ({time.monotonic() - started:.0f} s): "
                 + ", ".join(f"{name} {value:.4g}" for name, value in values.items()))
    return samples


def _collected(run: Callable[[], float]) -> float:
    gc.collect()
    return run()


def progress(message: str) -> None:
    """Report progress on stderr (stdout carries the table)."""
    print(message, file=sys.stderr, flush=True)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU), so that a timestamp means the work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def tokens_per_s(step_ends: list[float], tokens_per_step: int) -> float:
    """Throughput between the end of the first step and the end of the last (the first step is warm-up)."""
    return (len(step_ends) - 1) * tokens_per_step / (step_ends[-1] - step_ends[0])


def describe_machine(device: torch.device, threads: int, allocator: str) -> dict[str, Any]:
    """Return the CPU model, cores, library versions, torch threads, allocator and device of this run."""
    machine: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": threads,
        "allocator": allocator,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device.type,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    return machine


def steady_allocator() -> str:
    """Fix glibc malloc's mmap and trim thresholds; return a description of the allocator for the results.

    glibc adapts both thresholds to the sizes freed so far, so in one process a contender's buffers may come
    from reused heap memory or from fresh, page-faulting mmaps depending on what ran before it (measured: AZRTrainer
    steps 10-20% slower right after transformers.Trainer than right after the bare loop). Fixed, the thresholds
    give every contender the same allocator.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return "default (not glibc)"
    fixed = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return (f"glibc, mmap threshold {MMAP_THRESHOLD >> 20} MiB and trim threshold {TRIM_THRESHOLD >> 20} MiB fixed"
            if fixed else "glibc, default thresholds")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(function: Callable[[], Any]) -> float:
    """Return the seconds ``function()`` takes."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start
