"""transformers.Trainer's checkpoints, for the side-by-side comparison in :mod:`benchmarks.checkpoints`.

The Trainer gets the very model, tokenizer (as ``processing_class``, as a user would pass it) and AdamW optimizer
of the AZR run being compared, so both write the same weights and the same optimizer state. Its save is
``Trainer._save_checkpoint`` (model, tokenizer, ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``,
``trainer_state.json``, ``training_args.bin``); its load is what ``Trainer.train(resume_from_checkpoint=...)``
reads (``TrainerState.load_from_json``, ``_load_from_checkpoint``, ``_load_optimizer_and_scheduler``,
``_load_rng_state``).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import Trainer, TrainerState, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from azr.checkpoints import storage


class HFCheckpoints:
    """A transformers.Trainer around an existing model and optimizer that only saves and loads checkpoints."""

    def __init__(self, model, tokenizer, optimizer: torch.optim.Optimizer, device: torch.device, step: int,
                 directory: Path) -> None:
        args = TrainingArguments(output_dir=str(directory), report_to="none", disable_tqdm=True,
                                 use_cpu=device.type == "cpu", save_strategy="steps", save_total_limit=None)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        self.trainer = Trainer(model=model, args=args, processing_class=tokenizer, optimizers=(optimizer, scheduler))
        self.trainer.state.global_step = step

    def save(self, output_dir: Path, fsync: bool = False) -> Path:
        """Save ``checkpoint-<step>`` in ``output_dir`` as the Trainer does; with ``fsync``, then flush every file it
        wrote, the checkpoint folder and ``output_dir`` to disk (what a crash-safe save needs on top). Returns it."""
        self.trainer.args.output_dir = str(output_dir)
        self.trainer._save_checkpoint(self.trainer.model, trial=None)
        path = output_dir / f"{PREFIX_CHECKPOINT_DIR}-{self.trainer.state.global_step}"
        if fsync:
            for folder, _, names in os.walk(path):
                for name in names:
                    storage.fsync_file(Path(folder, name))
            storage.fsync_dir(path)
            storage.fsync_dir(output_dir)
        return path

    def load(self, path: Path) -> None:
        """Read a checkpoint as a resume does: trainer state, weights, optimizer and scheduler, RNG states."""
        TrainerState.load_from_json(str(path / TRAINER_STATE_NAME))
        self.trainer._load_from_checkpoint(str(path))
        self.trainer._load_optimizer_and_scheduler(str(path))
        self.trainer._load_rng_state(str(path))
