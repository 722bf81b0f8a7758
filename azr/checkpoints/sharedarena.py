"""One block of shared memory that holds many tensors, for handing a staged checkpoint to another process.

The block is an anonymous memory file (``memfd_create``, not limited by the size of ``/dev/shm``) mapped into this
process; its file descriptor is what another process needs to map the same memory. Each tensor in it is made with
``torch.frombuffer`` and so has a storage of its own, as a separately allocated tensor would (safetensors and
``save_pretrained`` take tensors that share a storage for tied weights). On a GPU the block is pinned with
``cudaHostRegister``, as PyTorch DCP pins its shared staging memory, so that copies into it do not block.
"""
from __future__ import annotations

import mmap
import os
import weakref

import torch

ALIGNMENT = 64  # bytes: every tensor starts on a cache line (and any dtype's alignment)


def supported() -> bool:
    """True where anonymous memory files exist (Linux)."""
    return hasattr(os, "memfd_create")


class SharedArena:
    """``nbytes`` of shared memory; :meth:`tensor` makes tensors in it, :meth:`offset_of` says where one starts."""

    def __init__(self, nbytes: int, fd: int | None = None, pin: bool = False) -> None:
        """A new block (``fd`` None), or the block another process made, from a duplicate of its descriptor."""
        self.nbytes = nbytes
        if fd is None:
            fd = os.memfd_create("azr-staged-checkpoint", os.MFD_CLOEXEC)
            os.ftruncate(fd, nbytes)
        self.fd = fd
        self._memory = mmap.mmap(fd, nbytes)
        self._base = torch.frombuffer(self._memory, dtype=torch.uint8).data_ptr()
        self.pinned = pin and _pin(self._base, nbytes)
        self._release = weakref.finalize(self, _release, fd, self._base if self.pinned else None)

    @staticmethod
    def layout(sizes: list[int]) -> tuple[list[int], int]:
        """The offsets of tensors of ``sizes`` bytes packed in order, and the bytes they need in all."""
        offsets, end = [], 0
        for size in sizes:
            offsets.append(end)
            end += -(-size // ALIGNMENT) * ALIGNMENT
        return offsets, max(end, ALIGNMENT)

    def tensor(self, offset: int, dtype: torch.dtype, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """A tensor of ``dtype`` and ``shape`` at ``offset`` bytes (not zero-sized), with its own storage."""
        count = torch.Size(shape).numel()
        return torch.frombuffer(self._memory, dtype=dtype, count=count, offset=offset).view(shape)

    def offset_of(self, tensor: torch.Tensor) -> int | None:
        """Where ``tensor`` starts in the block, or None when it is not in it."""
        offset = tensor.data_ptr() - self._base
        return offset if tensor.device.type == "cpu" and 0 <= offset < self.nbytes else None

    def close(self) -> None:
        """Unpin the block and close this process's descriptor (as when the arena is collected); the memory goes
        when no tensor uses it."""
        self._release()


def _release(fd: int, pinned_at: int | None) -> None:
    if pinned_at is not None:
        torch.cuda.cudart().cudaHostUnregister(pinned_at)
    os.close(fd)


def _pin(address: int, nbytes: int) -> bool:
    """Page-lock the block for CUDA copies; False (unpinned, still correct) when CUDA refuses."""
    result = torch.cuda.cudart().cudaHostRegister(address, nbytes, 1)  # portable, as in DCP
    return int(result) == 0
