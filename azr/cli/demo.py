"""The seed guide's pause/resume demonstration: train, extend the target, stop from another thread, resume.

Written against the public API only, so that it reads as an example (``examples/example_pause_resume.py`` and
``azr demo`` run it). A tiny model on the embedded corpus keeps it to about a minute on 2 CPU cores.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from azr import (
    AZRTrainer,
    CheckpointInfo,
    ModelConfig,
    TrainingStatus,
    build_model,
    default_corpus,
    list_checkpoints,
    train_tokenizer,
)

VOCAB_SIZE = 512
MODEL = dict(d_model=64, num_layers=2, num_heads=4, d_ff=128, max_seq_len=64)
SETTINGS = dict(batch_size=8, save_every=50, status_every=10)
STOP_AFTER_S = 3.0
FIRST_TARGET, SECOND_TARGET, STOPPED_TARGET, LAST_EXTENSION = 100, 250, 10_000, 100


def run_demo(directory: str | Path, say: Callable[[str], None] = print,
             on_status: Callable[[TrainingStatus], None] | None = None) -> list[CheckpointInfo]:
    """Run the four steps with checkpoints in ``directory``; return its checkpoints, newest first.

    ``say`` narrates, ``on_status`` receives every training status. Raises KeyboardInterrupt when Ctrl+C or
    SIGTERM stops a step (its ``model_interrupted_<N>`` is saved first).
    """
    texts = default_corpus()
    say(f"Preparing a {VOCAB_SIZE}-token BPE tokenizer and a tiny model ({MODEL['d_model']}-dim, "
        f"{MODEL['num_layers']} layers) on the embedded corpus; checkpoints go to {directory}.")
    tokenizer = train_tokenizer(texts, VOCAB_SIZE)
    config = ModelConfig(vocab_size=len(tokenizer), **MODEL)

    say(f"\nStep 1: train {FIRST_TARGET} iterations.")
    trainer = AZRTrainer(build_model(config, seed=0), tokenizer, status_callback=on_status)
    first = _train(trainer, say, texts=texts, max_iterations=FIRST_TARGET, checkpoint_dir=directory)

    say(f"\nStep 2: a new model object and a new trainer resume {Path(first.checkpoint).name} with a larger "
        f"target, {SECOND_TARGET}; the LR schedule is re-planned, not restarted.")
    trainer = AZRTrainer(build_model(config, seed=1), tokenizer, status_callback=on_status)
    second = _train(trainer, say, texts=texts, max_iterations=SECOND_TARGET, checkpoint_dir=directory,
                    resume_from=first.checkpoint)

    say(f"\nStep 3: continue towards {STOPPED_TARGET}; another thread calls trainer.stop_training() "
        f"{STOP_AFTER_S:g} seconds into training (a Stop button would do the same).")
    trainer = AZRTrainer.from_checkpoint(second.checkpoint)
    timer = threading.Timer(STOP_AFTER_S, trainer.stop_training)
    trainer.status_callback = _starting(timer, on_status)
    try:
        stopped = _train(trainer, say, texts=texts, max_iterations=STOPPED_TARGET, checkpoint_dir=directory)
    finally:
        timer.cancel()

    target = stopped.iteration + LAST_EXTENSION
    say(f"\nStep 4: resume {Path(stopped.checkpoint).name} with a new target, {target}.")
    trainer = AZRTrainer.from_checkpoint(stopped.checkpoint, status_callback=on_status)
    final = _train(trainer, say, texts=texts, max_iterations=target, checkpoint_dir=directory)
    say(f"\nDone: {len(final.history)} iterations in one unbroken history, across four trainers and one stop.")
    return list_checkpoints(directory)


def _train(trainer: AZRTrainer, say: Callable[[str], None], **kwargs) -> TrainingStatus:
    """Run one step with the seed guide's ``train_continuous`` and narrate where it ended."""
    trainer.train_continuous(**kwargs, **SETTINGS)
    status = trainer.last_status
    say(f"  {status.message} Checkpoint: {status.checkpoint}")
    if status.state == "interrupted":
        say("  The demo stops here.")
        raise KeyboardInterrupt
    return status


def _starting(timer: threading.Timer, on_status: Callable[[TrainingStatus], None] | None):
    """Return a status callback that starts ``timer`` with the run's first status, then forwards to ``on_status``."""
    def callback(status: TrainingStatus) -> None:
        if timer.ident is None:
            timer.start()
        if on_status is not None:
            on_status(status)
    return callback
