"""How fast the ``azr`` command answers: help, a usage error and ``azr list`` in fresh processes, against 0.5 s.

Each command runs as ``python -m azr ...`` (what the ``azr`` script runs) from process start to exit, alternated with
``python -c pass`` (the interpreter's own start-up, the floor no command can go under). ``detail.cpu_s`` is the CPU
time the command used, which a busy machine inflates less than the wall time; ``detail.heavy_imports`` the heavy
libraries it loaded, read from ``python -X importtime``.
"""
from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .common import Bench, Entry, alternate, progress
from .history import _python_timed
from .processes import REPO

START_LIMIT_S = 0.5
HEAVY = ("torch", "transformers", "gradio", "huggingface_hub", "safetensors", "numpy")


def commands(run_dir: Path) -> dict[str, tuple[list[str], int]]:
    """Return the timed commands by metric name: ``azr`` arguments and the exit status they must end with."""
    return {"cli_help_s": (["--help"], 0), "cli_subcommand_help_s": (["train", "--help"], 0),
            "cli_usage_error_s": (["train", "--lr-schedule", "linear"], 2), "cli_list_s": (["list", str(run_dir)], 0)}


def run(bench: Bench, checkpoint: Path) -> list[Entry]:
    """Alternate each command with the bare interpreter; judge each median against :data:`START_LIMIT_S`."""
    sizes = bench.sizes
    timed = commands(checkpoint.parent)
    progress("command line: help, a usage error and `azr list` of a run, against `python -c pass`, in new processes")
    cpu: dict[str, list[float]] = {name: [] for name in timed}

    def contender(name: str) -> Callable[[], float]:
        def run_once() -> float:
            seconds, cpu_seconds, _ = _azr(*timed[name])
            cpu[name].append(cpu_seconds)
            return seconds
        return run_once

    samples = alternate({**{name: contender(name) for name in timed},
                         "python_c_pass": lambda: _python_timed("-c", "pass")},
                        sizes.process_repeats, sizes.process_warmup)
    entries = []
    for name, (args, status) in timed.items():
        entry = bench.entry(name, samples, "s", name, "python_c_pass", command=f"python -m azr {' '.join(args)}",
                            measured="process start to exit", heavy_imports=_heavy_imports(args, status),
                            cpu_s=statistics.median(cpu[name][sizes.process_warmup:]))
        entry.goal, entry.met = f"<= {START_LIMIT_S} s", entry.value <= START_LIMIT_S
        entries.append(entry)
    return entries


def _azr(args: list[str], status: int, *options: str) -> tuple[float, float, str]:
    """Run ``python [OPTIONS] -m azr ARGS``; return its seconds from start to exit, the CPU seconds it used (which
    other processes on the machine inflate less) and its stderr. Raises RuntimeError unless it exits with
    ``status``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *options, "-m", "azr", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != status:
        raise RuntimeError(f"azr {' '.join(args)} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    cpu_seconds = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu_seconds, done.stderr


def _heavy_imports(args: list[str], status: int) -> list[str]:
    """Return which of :data:`HEAVY` ``azr ARGS`` imports (from ``python -X importtime``)."""
    stderr = _azr(args, status, "-X", "importtime")[2]
    names = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in stderr.splitlines()
             if line.startswith("import time:") and line.count("|") == 2}
    return sorted(names & set(HEAVY))
