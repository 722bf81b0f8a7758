"""A process of the data-parallel tests, launched by ``torchrun --nproc_per_node 2 tests/ddp_worker.py OUT``.

In one process group it trains two runs of the tiny model from ``OUT/model.json`` and ``OUT/tokenizer``: ``OUT/full``
uninterrupted to TARGET, and ``OUT/stopped``, which process 1 alone asks to pause at iteration STOP_AT (every
process must agree to stop there). Rank 0 writes each run's losses to ``OUT/<run>.json``. A third run,
``OUT/diverged``, has process 1 alone see a non-finite loss (with finite gradients) at step DIVERGE_AT: every
process must stop there.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist
from transformers import AutoTokenizer

from azr import AZRError, AZRTrainer, ModelConfig, build_model
from azr.training import distributed
from azr.training.callbacks import TrainerCallback

TARGET, STOP_AT, DIVERGE_AT = 20, 10, 3
SETTINGS = dict(batch_size=16, save_every=10, status_every=5, self_play_every=5, val_every=10, keep_last=3,
                keep_best=False, lr_schedule="cosine")


class PauseOnOneRank(TrainerCallback):
    """Asks for a pause, on rank 1 only, once the trainer has reached ``iteration``."""

    def __init__(self, trainer: AZRTrainer, iteration: int) -> None:
        self.trainer, self.iteration = trainer, iteration

    def should_pause(self) -> bool:
        return distributed.rank() == 1 and len(self.trainer.history) >= self.iteration


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    config = ModelConfig.from_dict(json.loads((out / "model.json").read_text()))
    texts = json.loads((out / "texts.json").read_text())
    for name in ("full", "stopped"):
        trainer = AZRTrainer(build_model(config, seed=0), tokenizer, device="cpu")
        if name == "stopped":
            trainer.callbacks.append(PauseOnOneRank(trainer, STOP_AT))
        statuses = list(trainer.train(texts, TARGET, out / name, **SETTINGS))
        if distributed.is_main():
            (out / f"{name}.json").write_text(json.dumps({
                "losses": [record["loss"] for record in trainer.history], "final": statuses[-1].state,
                "checkpoint": statuses[-1].checkpoint}))
    diverge(out, tokenizer, config, texts)
    dist.destroy_process_group()


def diverge(out: Path, tokenizer, config: ModelConfig, texts: list[str]) -> None:
    """Train ``OUT/diverged``, whose loss is NaN at step DIVERGE_AT on process 1 alone."""
    trainer = AZRTrainer(build_model(config, seed=0), tokenizer, device="cpu")
    loss = trainer._stepper._lm_loss
    if distributed.rank() == 1:
        trainer._stepper._lm_loss = lambda batch: loss(batch) + (  # the value only: gradients stay finite
            float("nan") if len(trainer.history) == DIVERGE_AT - 1 and trainer.model.training else 0.0)
    statuses = []
    try:
        statuses.extend(trainer.train(texts, TARGET, out / "diverged", **SETTINGS))
    except AZRError:
        pass
    if distributed.is_main():
        last = trainer.last_status
        (out / "diverged.json").write_text(json.dumps({"final": last.state, "iteration": last.iteration,
                                                        "message": last.message}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
