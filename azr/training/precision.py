"""Mixed precision: the autocast context of a run's forward passes, the GradScaler of fp16, which devices can
run which precision, and which AdamW kernel a run steps with. The weights and the optimizer state stay float32 in
every precision (autocast casts per op).
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from azr.errors import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FUSED_ADAMW_DEVICES = ("cpu", "cuda", "mps", "xpu")  # where a new run's AdamW is fused (torch has the kernel)


def check(precision: str, device: torch.device) -> None:
    """Raise ConfigError (one sentence) when ``device`` cannot run ``precision``."""
    if precision == "fp32":
        return
    if not torch.amp.is_autocast_available(device.type):
        raise ConfigError(f"precision {precision} needs autocast, which torch does not offer on {device.type}; "
                          "use precision fp32 on this device.")
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision bf16 is not supported by {torch.cuda.get_device_name(device)}; "
                          "use precision fp16 (or fp32) on this GPU.")
    if not _runs(precision, device):
        raise ConfigError(f"precision {precision} does not run on {device.type} with this torch build; "
                          "use precision fp32 (or bf16) on this device.")


def _runs(precision: str, device: torch.device) -> bool:
    """True when a small matmul with a backward pass works under this autocast on ``device``."""
    try:
        weight = torch.ones(4, 4, device=device, requires_grad=True)
        with autocast(precision, device):
            product = weight @ weight
        product.float().sum().backward()
        return product.dtype == DTYPES[precision]
    except RuntimeError:
        return False


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Return the context the forward passes of a run in ``precision`` run in (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def new_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """Return the GradScaler of an fp16 run (None otherwise): it keeps small fp16 gradients from underflowing."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def scaler_state(scaler: torch.amp.GradScaler | None) -> dict[str, Any] | None:
    """Return the scaler's state as JSON-able numbers (None without a scaler), for the checkpoint."""
    return None if scaler is None else dict(scaler.state_dict())


def fused_adamw(device: torch.device) -> bool:
    """True when a new run's AdamW uses its fused kernel on ``device``."""
    return device.type in FUSED_ADAMW_DEVICES


def fused_as_saved(state: dict[str, Any]) -> bool | None:
    """Whether the run whose AdamW ``state_dict()`` is ``state`` stepped with the fused kernel (its param groups
    record it; a run from before fused CPU steps records None): a resume keeps the kernel, whose results differ from
    the other's in the last bit."""
    return any(group.get("fused") for group in state["param_groups"]) or None
