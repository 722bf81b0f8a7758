"""Copies of the training state in CPU memory that later steps cannot change: the blocking part of a save.

As in PyTorch DCP's stager, the CPU buffers are allocated on the first save (pinned when the state is on a GPU)
and refilled by every later one, and tensors that share memory (tied weights) share their copy, so that the
copy is written exactly as the live state would be.
"""
from __future__ import annotations

from typing import Any

import torch


class Stager:
    """Copies nested state (dicts, lists and tuples of tensors and plain values) into reused CPU buffers.

    A staged copy stays valid until the next :meth:`stage`, which overwrites the buffers: the caller finishes
    with one copy before it stages the next.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def stage(self, state: Any) -> Any:
        """Return ``state`` with every tensor replaced by its copy in CPU memory."""
        aliases: dict[tuple, torch.Tensor] = {}
        staged = self._copy(state, "", aliases)
        if any(identity[0].type == "cuda" for identity in aliases):
            torch.cuda.synchronize()  # the copies were queued without blocking
        return staged

    def _copy(self, value: Any, key: str, aliases: dict[tuple, torch.Tensor]) -> Any:
        if isinstance(value, torch.Tensor):
            identity = (value.device, value.data_ptr(), value.dtype, tuple(value.shape), value.stride())
            if identity not in aliases:
                buffer = self._buffers.get(key)
                if buffer is None or buffer.shape != value.shape or buffer.dtype != value.dtype:
                    buffer = torch.empty(value.shape, dtype=value.dtype, pin_memory=value.is_cuda)
                    self._buffers[key] = buffer
                aliases[identity] = buffer.copy_(value.detach(), non_blocking=value.is_cuda)
            return aliases[identity]
        if isinstance(value, dict):
            return {name: self._copy(item, f"{key}/{name}", aliases) for name, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._copy(item, f"{key}/{index}", aliases) for index, item in enumerate(value))
        return value
