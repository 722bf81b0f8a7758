"""Deterministic kernels: the same inputs give the same bits, so a resumed run repeats the uninterrupted one.

For speed PyTorch picks some kernels whose sums run in a varying order (atomic adds): the embedding gradient that
torch.compile generates, and some CUDA kernels. A run with ``deterministic`` on (the default) switches PyTorch's
deterministic mode on for its process, as transformers' ``full_determinism`` and Lightning's ``deterministic=True``
do; an op with no deterministic version warns instead of failing the run. The mode lasts as long as the runs that
need it: when the last ends the process has the mode it had before (a Trainer or loop run after it in the same
process is unaffected).
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import torch

CUBLAS_WORKSPACE = ":4096:8"  # the cuBLAS setting PyTorch's deterministic mode asks for on CUDA


@dataclass(frozen=True)
class KernelMode:
    """PyTorch's process-wide kernel choices that decide whether the same inputs give the same bits."""

    deterministic: bool
    warn_only: bool
    fill_new_memory: bool  # fill each new tensor's memory before use (in deterministic mode only)
    cudnn_deterministic: bool
    cudnn_benchmark: bool

    @classmethod
    def current(cls) -> KernelMode:
        return cls(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                   torch.utils.deterministic.fill_uninitialized_memory, torch.backends.cudnn.deterministic,
                   torch.backends.cudnn.benchmark)

    def apply(self) -> None:
        torch.use_deterministic_algorithms(self.deterministic, warn_only=self.warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = self.fill_new_memory
        torch.backends.cudnn.deterministic = self.cudnn_deterministic
        torch.backends.cudnn.benchmark = self.cudnn_benchmark


# Deterministic kernels, without filling new memory: a kernel that reads memory it has not written is a bug either
# way, and the filling costs a pass over every new tensor (about 1 % of a 135m step on the CPU: BENCHMARKS.md).
DETERMINISTIC = KernelMode(deterministic=True, warn_only=True, fill_new_memory=False, cudnn_deterministic=True,
                           cudnn_benchmark=False)


class DeterministicRuns:
    """The runs of this process that hold deterministic kernels: the first to start switches the mode on, the last
    to end gives the process the mode it had before, so that no run loses its exactness to another's end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: set[int] = set()
        self._before: KernelMode | None = None

    def hold(self, holder: object) -> None:
        """``holder`` (a run) starts, and needs deterministic kernels."""
        with self._lock:
            if not self._holders:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
                self._before = KernelMode.current()
                DETERMINISTIC.apply()
            self._holders.add(id(holder))

    def release(self, holder: object) -> None:
        """``holder`` ended (nothing happens when it held nothing)."""
        with self._lock:
            if id(holder) not in self._holders:
                return
            self._holders.discard(id(holder))
            if not self._holders and self._before is not None:
                self._before.apply()
                self._before = None


DETERMINISTIC_RUNS = DeterministicRuns()
