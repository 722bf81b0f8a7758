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
        self._buffers: dict[tuple, torch.Tensor] = {}

    def stage(self, state: Any) -> Any:
        """Return ``state`` with every tensor replaced by its copy in CPU memory."""
        targets: list[torch.Tensor] = []
        sources: list[torch.Tensor] = []
        aliases: dict[tuple, torch.Tensor] = {}

        def staged(value: Any, key: tuple) -> Any:
            if isinstance(value, torch.Tensor):
                identity = (value.device, value.data_ptr(), value.dtype, value.shape, value.stride())
                if identity not in aliases:
                    aliases[identity] = self._buffer(key, value)
                    targets.append(aliases[identity])
                    sources.append(value)
                return aliases[identity]
            if isinstance(value, dict):
                return {name: staged(item, (*key, name)) for name, item in value.items()}
            if isinstance(value, (list, tuple)):
                return type(value)(staged(item, (*key, index)) for index, item in enumerate(value))
            return value

        copy = staged(state, ())
        from_gpu = any(source.is_cuda for source in sources)
        with torch.no_grad():  # one batched copy of every tensor, queued without blocking from a GPU
            torch._foreach_copy_(targets, sources, non_blocking=from_gpu)
        if from_gpu:
            torch.cuda.synchronize()
        return copy

    def _buffer(self, key: tuple, value: torch.Tensor) -> torch.Tensor:
        """The CPU buffer kept for ``key``, (re)allocated when the tensor's shape or dtype changed."""
        buffer = self._buffers.get(key)
        if buffer is None or buffer.shape != value.shape or buffer.dtype != value.dtype:
            buffer = self._buffers[key] = torch.empty(value.shape, dtype=value.dtype, pin_memory=value.is_cuda)
        return buffer
