"""The non-finite guard: a step whose loss or gradient is NaN or infinite stops the run before the update."""
from __future__ import annotations

import math

import torch

from azr.config import TrainConfig
from azr.errors import TrainingError
from azr.training import distributed

HIGH_LR = 1e-2  # above this peak learning rate, divergence is the likely cause of a non-finite loss


def grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """Return the total gradient norm, clipping the gradients to ``max_norm`` first when it is positive."""
    parameters = [p for p in parameters if p.grad is not None]
    if max_norm:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    return torch.nn.utils.get_total_norm([p.grad for p in parameters])


def check_step(loss: torch.Tensor, norm: torch.Tensor | None, step: int, config: TrainConfig, lr: float) -> None:
    """Raise TrainingError when the step's loss or gradient norm (None: not checked) is not finite (one host
    sync for both)."""
    norm = torch.zeros(()) if norm is None else norm
    values = torch.stack([loss.detach().float().reshape(()), norm.detach().float().reshape(()).to(loss.device)])
    finite = bool(torch.isfinite(values).all())
    if distributed.everywhere(finite):  # every process stops at the same step, or none does
        return
    if finite:
        raise TrainingError(f"Step {step} stopped the run because another process's loss or gradient is not "
                            f"finite ({likely_cause(config, lr)}).")
    loss_value, norm_value = (float(v) for v in values.cpu())
    what = f"the loss is {loss_value}" if not math.isfinite(loss_value) else f"the gradient norm is {norm_value}"
    raise TrainingError(f"Step {step} stopped the run because {what} ({likely_cause(config, lr)}).")


def likely_cause(config: TrainConfig, lr: float) -> str:
    """A short guess at why training diverged, with what to change."""
    if config.lr > HIGH_LR or lr > HIGH_LR:
        return f"likely cause: the learning rate {config.lr:g} is far too high; lower --lr (e.g. 1e-3)"
    if not config.grad_clip:
        return "likely cause: diverging updates without gradient clipping; set --grad-clip 1.0 or lower --lr"
    return "likely cause: diverging updates; lower --lr or add --warmup iterations"
