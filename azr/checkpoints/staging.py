"""Copies of the training state in CPU memory that later steps cannot change: the blocking part of a save.

As in PyTorch DCP's stager, the CPU buffers are allocated on the first save (pinned when the state is on a GPU)
and refilled by every later one, and tensors that share memory (tied weights) share their copy, so that the
copy is written exactly as the live state would be. A shared stager puts every buffer in one
:class:`~azr.checkpoints.sharedarena.SharedArena`, which a writer process maps (see
:mod:`azr.checkpoints.writerprocess`).

Measured against DCP's own stager and ``async_save``: BENCHMARKS.md, "DCP async_save against the project's writer".
"""
from __future__ import annotations

from typing import Any

import torch

from azr.checkpoints.sharedarena import SharedArena


class _Slot(int):
    """Where a staged tensor goes in a copy's structure: the index of its buffer."""


class Stager:
    """Copies nested state (dicts, lists and tuples of tensors and plain values) into reused CPU buffers.

    A staged copy stays valid until the next :meth:`stage`, which overwrites the buffers: the caller finishes
    with one copy before it stages the next.
    """

    def __init__(self, shared: bool = False) -> None:
        self.shared = shared
        self.arena: SharedArena | None = None  # the shared buffers' memory, when shared
        self._layout: list[tuple[torch.dtype, torch.Size, bool]] = []
        self._buffers: list[torch.Tensor] = []

    def stage(self, state: Any) -> Any:
        """Return ``state`` with every tensor replaced by its copy in CPU memory."""
        sources: list[torch.Tensor] = []
        slots: dict[tuple, _Slot] = {}  # tensors that share memory share a copy

        def template(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                identity = (value.device, value.data_ptr(), value.dtype, value.shape, value.stride())
                if identity not in slots:
                    slots[identity] = _Slot(len(sources))
                    sources.append(value)
                return slots[identity]
            if isinstance(value, dict):
                return {name: template(item) for name, item in value.items()}
            if isinstance(value, (list, tuple)):
                return type(value)(template(item) for item in value)
            return value

        def filled(value: Any) -> Any:
            if isinstance(value, _Slot):
                return self._buffers[value]
            if isinstance(value, dict):
                return {name: filled(item) for name, item in value.items()}
            if isinstance(value, (list, tuple)):
                return type(value)(filled(item) for item in value)
            return value

        structure = template(state)
        layout = [(source.dtype, source.shape, source.is_cuda) for source in sources]
        if layout != self._layout:
            self._allocate(layout)
        from_gpu = any(source.is_cuda for source in sources)
        with torch.no_grad():  # one batched copy of every tensor, queued without blocking from a GPU
            torch._foreach_copy_(self._buffers, sources, non_blocking=from_gpu)
        if from_gpu:
            torch.cuda.synchronize()
        return filled(structure)

    def release(self) -> None:
        """Drop the buffers (and the shared arena): their memory goes once no staged copy is in use; the next
        :meth:`stage` allocates again."""
        if self.arena is not None:
            self.arena.close()
        self.arena, self._layout, self._buffers = None, [], []

    def _allocate(self, layout: list[tuple[torch.dtype, torch.Size, bool]]) -> None:
        """New buffers for tensors of this (dtype, shape, on a GPU) layout."""
        pin = any(on_gpu for _, _, on_gpu in layout)
        if not self.shared:
            self._buffers = [torch.empty(shape, dtype=dtype, pin_memory=pin) for dtype, shape, _ in layout]
        else:
            sizes = [shape.numel() * dtype.itemsize for dtype, shape, _ in layout]
            offsets, nbytes = SharedArena.layout(sizes)
            if self.arena is not None:
                self.arena.close()
            self.arena = SharedArena(nbytes, pin=pin)
            self._buffers = [self.arena.tensor(offset, dtype, shape) if size else torch.empty(shape, dtype=dtype)
                             for offset, size, (dtype, shape, _) in zip(offsets, sizes, layout)]
        self._layout = layout
