"""The bare PyTorch baseline: AZRTrainer's supervised optimisation (same model, AdamW, batches, precision) and
nothing else.

Kept apart from the other benchmark modules so that a peak-memory process of the bare loop imports nothing more
than what the loop needs.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from azr import TrainConfig
from azr.config import preset_training
from azr.data.corpus import ResumableSampler
from azr.models.causal_lm import model_config_of
from azr.training import precision

from .common import synchronize

CONFIG = TrainConfig()  # the trainer's defaults: seed, weight decay, grad clip, batch order
# AZRTrainer settings of the plain runs: self-play, validation and checkpoints off inside the timed window
# (the save at the last iteration comes after it); a constant LR so that the losses must equal the bare loop's.
PLAIN: dict[str, Any] = dict(self_play_every=0, val_every=0, save_every=10**9, lr_schedule="constant")


def batches(windows: torch.Tensor, batch_size: int, count: int, device: torch.device) -> list[torch.Tensor]:
    """Return the first ``count`` batches AZRTrainer draws for a fresh run with the default seed, in order."""
    sampler = ResumableSampler(len(windows), CONFIG.seed)
    return [windows[sampler.next_indices(batch_size)].to(device) for _ in range(count)]


def adamw(model: torch.nn.Module) -> torch.optim.AdamW:
    """AdamW as AZRTrainer sets up a new run's: the model's default LR, weight decay on matrices only, betas
    (0.9, 0.95), fused (on the CPU too)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": CONFIG.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = precision.fused_adamw(next(model.parameters()).device) or None
    lr = preset_training(model_config_of(model))["lr"]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=fused)


def bare_loop(model: torch.nn.Module, data: list[torch.Tensor], device: torch.device,
              precision_name: str = "fp32") -> tuple[list[float], list[torch.Tensor]]:
    """Train one step per batch (forward under autocast, cross-entropy, backward, grad clip, AdamW step; fp16 with
    a GradScaler); return step-end times (``time.time()``, exact for the first and last step on a GPU) and the
    losses."""
    optimizer = adamw(model)
    scaler = torch.amp.GradScaler(device.type, enabled=precision_name == "fp16")
    model.train()
    ends: list[float] = []
    losses: list[torch.Tensor] = []
    for index, batch in enumerate(data):
        with precision.autocast(precision_name, device):
            logits = model(input_ids=batch[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), CONFIG.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.detach().clone())  # a bare detach() keeps ~10 MB per step alive
        if index in (0, len(data) - 1):
            synchronize(device)
        ends.append(time.time())
    return ends, losses
