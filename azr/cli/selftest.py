"""``azr selftest``: prove on this machine that a stop and a resume in a fresh process reproduce a run bit for bit."""
from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.names import WEIGHTS_FILE, checkpoint_name
from azr.config import ModelConfig
from azr.data.corpus import default_corpus
from azr.errors import ConfigError
from azr.services import new_model
from azr.training.status import TrainingStatus
from azr.training.trainer import AZRTrainer

CORPUS_CHARS = 60_000
VOCAB_SIZE = 300
MODEL = dict(d_model=32, num_layers=1, num_heads=2, d_ff=64, max_seq_len=32)
SETTINGS = dict(batch_size=4, status_every=1, self_play_every=3, val_every=5)
COMPARED = ("loss", "val_loss", "reward")


def run_selftest(iterations: int = 30, device: str = "auto", say: Callable[[str], None] = print,
                 stop_at: int | None = None) -> bool:
    """Train ``iterations`` uninterrupted, then again stopped at ``stop_at`` (random by default) and resumed by
    ``python -m azr resume`` in a fresh process; return True when every loss and weight is bit-identical.

    Raises ConfigError for fewer than 2 iterations or a stop point outside 1..iterations-1.
    """
    if iterations < 2:
        raise ConfigError(f"--iterations must be at least 2 to stop in between, got {iterations}.")
    stop_at = random.randint(1, iterations - 1) if stop_at is None else stop_at
    if not 1 <= stop_at < iterations:
        raise ConfigError(f"stop_at must be between 1 and {iterations - 1}, got {stop_at}.")
    texts = [default_corpus()[0][:CORPUS_CHARS]]
    config = ModelConfig(vocab_size=VOCAB_SIZE, **MODEL)
    settings = {**SETTINGS, "save_every": iterations}
    final = checkpoint_name("iter", iterations)
    with tempfile.TemporaryDirectory(prefix="azr-selftest-") as temp:
        uninterrupted, stopped = Path(temp, "uninterrupted"), Path(temp, "stopped")
        say(f"1/3 Training a tiny model for {iterations} iterations without a stop...")
        _train(AZRTrainer(*new_model(texts, config), device=device), texts, iterations, uninterrupted, settings)
        say(f"2/3 Training it again, stopping at iteration {stop_at}, and resuming in a fresh process...")
        paused = _train(AZRTrainer(*new_model(texts, config), device=device), texts, iterations, stopped, settings,
                        stop_at)
        resumed = subprocess.run(
            [sys.executable, "-m", "azr", "resume", paused.checkpoint, "--max-iterations", str(iterations),
             "--device", device], capture_output=True, text=True)
        if resumed.returncode:
            last = (resumed.stderr.strip().splitlines() or ["no output"])[-1]
            say(f"Verdict: FAILED, the resume process exited with status {resumed.returncode}: {last}")
            return False
        say("3/3 Comparing every loss and the final weights...")
        difference = first_difference(uninterrupted / final, stopped / final)
    if difference is None:
        say(f"Verdict: bit-identical. All {iterations} iterations' losses and every weight match exactly after a "
            f"stop at iteration {stop_at} and a resume in a fresh process.")
        return True
    say(f"Verdict: NOT identical after a stop at iteration {stop_at}; first difference: {difference}.")
    return False


def _train(trainer: AZRTrainer, texts: list[str], iterations: int, directory: Path, settings: dict[str, Any],
           stop_at: int | None = None) -> TrainingStatus:
    """Drain one run, asking for a stop once it reports ``stop_at``; return its final status."""
    for status in trainer.train(texts, iterations, directory, **settings):
        if status.iteration == stop_at and status.state == "running":
            trainer.stop_training()
    return status


def first_difference(expected: Path, actual: Path) -> str | None:
    """Return None when two checkpoints hold the same per-iteration records and weights, else the first difference."""
    ours, theirs = Checkpoint.open(expected).history(), Checkpoint.open(actual).history()
    if [r["iteration"] for r in ours] != [r["iteration"] for r in theirs]:
        return f"the histories cover {len(ours)} and {len(theirs)} iterations"
    for a, b in zip(ours, theirs):
        for key in COMPARED:
            if a[key] != b[key]:
                gap = f" (difference {abs(a[key] - b[key]):.3g})" if None not in (a[key], b[key]) else ""
                return f"iteration {a['iteration']}, {key} {a[key]!r} vs {b[key]!r}{gap}"
    weights, others = load_file(str(expected / WEIGHTS_FILE)), load_file(str(actual / WEIGHTS_FILE))
    for name in sorted(weights.keys() | others.keys()):
        if name not in weights or name not in others:
            return f"weight {name} is in one model only"
        if not torch.equal(weights[name], others[name]):
            return f"weight {name}, largest difference {(weights[name] - others[name]).abs().max().item():.3g}"
    return None
