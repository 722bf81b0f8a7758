"""Checkpoints of a long run: with a million iterations of history, ``trainer_state.json`` stays small, a save
costs what it costs at a thousand iterations, and ``azr list`` of 20 such checkpoints stays fast.

Both runs are the benchmark's run (same model, optimizer and tokenizer) with a synthetic history of that many
records. The long run's full history chunks are written by a first, untimed save, as the earlier saves of a real
run would have written them; every timed save then adds one iteration and saves a new checkpoint (steady state).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from safetensors.numpy import save as save_columns

from azr.checkpoints import names
from azr.checkpoints.history import COLUMNS, History, forget_chunk_digests
from azr.checkpoints.statefile import STATE_FILE
from azr.training.session import Run

from .checkpoints import Subject
from .common import Bench, Entry, alternate, progress, timed
from .processes import REPO

STATE_LIMIT_KB = 64
SAVE_RATIO_LIMIT = 1.1
LIST_LIMIT_S = 0.5


def run(bench: Bench, subject: Subject) -> list[Entry]:
    """Alternate saves of the long and the short run; then list a directory of long-run checkpoints."""
    sizes = bench.sizes
    long_records, short_records = sizes.history_records, sizes.history_short_records
    progress(f"history: saves at {long_records:,} against {short_records:,} iterations of history")
    long_run = _variant(subject, long_records, bench.directory("long-run"))
    short_run = _variant(subject, short_records, bench.directory("short-run"))
    started = time.perf_counter()
    first = subject.save(long_run.run_dir, long_run)  # writes every full chunk, as the run's earlier saves did
    first_save_s = time.perf_counter() - started
    state_bytes = {"long": (first / STATE_FILE).stat().st_size,
                   "short": (subject.save(short_run.run_dir, short_run) / STATE_FILE).stat().st_size}
    samples = alternate({"save_long_history": _saving(subject, long_run, sizes.saves_per_sample),
                         "save_short_history": _saving(subject, short_run, sizes.saves_per_sample)}, sizes.repeats)
    shutil.rmtree(short_run.run_dir)
    for _ in range(sizes.listed_checkpoints - 1):
        _next_save(subject, long_run)
    listed = sorted(p.name for p in long_run.run_dir.iterdir() if names.NAME_PATTERN.match(p.name))
    progress(f"listing {len(listed)} checkpoints of {long_records:,} iterations: in-process, then in new processes")
    in_process = alternate({"azr_list_in_process": lambda: _list_in_process(long_run.run_dir, len(listed))},
                           sizes.repeats)
    processes = alternate({"python_m_azr_list": lambda: _python_timed("-m", "azr", "list", str(long_run.run_dir)),
                           "python_c_import_azr_cli": lambda: _python_timed("-c", "import azr.cli.main")},
                          sizes.process_repeats, sizes.process_warmup)
    chunks = len(long_run.state.history.chunk_digests())
    shutil.rmtree(long_run.run_dir)
    common = dict(records=long_records, chunks=chunks, model=subject.describe())
    state_entry = Entry("history_state_kb", state_bytes["long"] / 2**10, "KB", 1, bench.machine, sizes.name,
                        goal=f"<= {STATE_LIMIT_KB} KB", met=state_bytes["long"] <= STATE_LIMIT_KB * 2**10,
                        detail={**common, "bytes": state_bytes["long"], "bytes_at_short_history": state_bytes["short"],
                                "short_records": short_records, "KB": "2^10 bytes"})
    save_entry = bench.entry("history_save_ratio", samples, "s", "save_long_history", "save_short_history",
                             ("<=", SAVE_RATIO_LIMIT), **common, short_records=short_records,
                             operations_per_sample=sizes.saves_per_sample, first_save_writing_chunks_s=first_save_s,
                             save="CheckpointSaver.save after one more iteration, a new checkpoint each time")
    list_entry = bench.entry("list_checkpoints_s", in_process, "s", "azr_list_in_process", **common,
                             checkpoints=len(listed), command="azr.cli.main(['list', DIR]), stdout captured",
                             hashed="every file of every checkpoint, and each shared chunk once (a fresh "
                                    "process's chunk-digest cache is empty: it is cleared before each listing)")
    list_entry.goal, list_entry.met = f"<= {LIST_LIMIT_S} s", list_entry.value <= LIST_LIMIT_S
    process_entry = bench.entry("list_process_s", processes, "s", "python_m_azr_list", "python_c_import_azr_cli",
                                **common, checkpoints=len(listed),
                                import_s=statistics.median(processes["python_c_import_azr_cli"]),
                                listing_beyond_import_s=statistics.median(
                                    a - b for a, b in zip(processes["python_m_azr_list"],
                                                          processes["python_c_import_azr_cli"])),
                                command="python -m azr list DIR, from process start to exit")
    return [state_entry, save_entry, list_entry, process_entry]


def synthetic_history(records: int) -> History:
    """Return a history of ``records`` iterations: losses falling with noise, validation every 50, reward every 10."""
    generator = np.random.default_rng(0)
    iteration = np.arange(1, records + 1, dtype=np.float64)
    loss = 2.0 + 6.0 * np.exp(-iteration / 2e5) + 0.1 * generator.random(records)
    columns = {"iteration": iteration, "loss": loss, "val_loss": np.where(iteration % 50 == 0, loss + 0.05, np.nan),
               "reward": np.where(iteration % 10 == 0, generator.random(records), np.nan),
               "lr": np.full(records, 3e-4), "time": 1.7e9 + 0.06 * iteration}
    history = History()
    history.extend_encoded(save_columns({name: columns[name] for name in COLUMNS if name in columns}))
    history.chunk_digests()  # a running trainer has hashed each full chunk once, when it filled
    return history


def _variant(subject: Subject, records: int, run_dir: Path) -> Run:
    """Return the subject's run at iteration ``records`` with a history of that length, saving into ``run_dir``."""
    run = subject.run
    state = dataclasses.replace(run.state, iteration=records, history=synthetic_history(records))
    return dataclasses.replace(run, config=run.config.updated(max_iterations=2 * records), state=state,
                               run_dir=run_dir)


def _next_save(subject: Subject, run: Run) -> Path:
    """Train one more (synthetic) iteration and save it, as the trainer does at every ``save_every``."""
    state = run.state
    state.iteration += 1
    state.history.append({"iteration": state.iteration, "loss": 2.0, "lr": 3e-4, "time": time.time()})
    return subject.save(run.run_dir, run)


def _saving(subject: Subject, run: Run, count: int) -> Callable[[], float]:
    """Return a contender timing ``count`` saves of ``run`` (the checkpoints are removed afterwards)."""
    def contender() -> float:
        paths: list[Path] = []
        seconds = statistics.mean(timed(lambda: paths.append(_next_save(subject, run))) for _ in range(count))
        for path in paths:
            shutil.rmtree(path)
        return seconds
    return contender


def _list_in_process(run_dir: Path, expected: int) -> float:
    """Time ``azr list run_dir`` in this process as a fresh process would run it; check that all are valid."""
    from azr.cli.main import main as cli  # noqa: PLC0415 - only this group needs the command line

    forget_chunk_digests()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        started = time.perf_counter()
        status = cli(["list", str(run_dir)])
        seconds = time.perf_counter() - started
    rows = out.getvalue().splitlines()[1:]
    if status or len(rows) != expected or not all(row.rstrip().endswith("  valid") for row in rows):
        raise RuntimeError(f"azr list failed ({status}):\n{out.getvalue()[-2000:]}")
    return seconds


def _python_timed(*args: str) -> float:
    """Return the seconds this interpreter takes to run ``args`` from the repository root, start to exit."""
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started
