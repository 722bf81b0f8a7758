"""Deterministic kernels: the same inputs give the same bits, so a resumed run repeats the uninterrupted one.

For speed PyTorch picks some kernels whose sums run in a varying order (atomic adds): the embedding gradient that
torch.compile generates, and some CUDA kernels. A run with ``deterministic`` on (the default) switches PyTorch's
deterministic mode on for its process, as transformers' ``full_determinism`` and Lightning's ``deterministic=True``
do; an op with no deterministic version warns instead of failing the run.
"""
from __future__ import annotations

import os

import torch

CUBLAS_WORKSPACE = ":4096:8"  # the cuBLAS setting PyTorch's deterministic mode asks for on CUDA


def use_deterministic_kernels() -> None:
    """Make every later PyTorch op in this process pick a deterministic kernel where it has one."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
