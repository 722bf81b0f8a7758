"""Data parallelism under ``torchrun``: the process group, each process's share of a batch, and agreement.

Every process draws the same global batch from the same sampler (so the data position counts global samples and
does not depend on the number of processes) and trains on its own slice of it; DistributedDataParallel averages
the gradients, so N processes take the same step as one process with the whole batch. Rank 0 alone writes
(run directory, corpus, checkpoints) and pushes; a stop asked of any process is agreed by all before the next step,
so that every process stops after the same iteration and exactly one checkpoint is written. Outside torchrun (or
with one process) every function here is the single-process identity.
"""
from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from azr.errors import ConfigError

T = TypeVar("T")
STOP_KINDS = (None, "paused", "interrupted")  # a stronger request wins when processes disagree
RANK_SEED_STRIDE = 1_000_003  # process r > 0 seeds its global RNG with seed + r * stride (dropout differs per rank)


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if active() else 0


def size() -> int:
    """The number of processes (1 outside a process group)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """True for the process that writes checkpoints and pushes (rank 0)."""
    return rank() == 0


def join(device: str) -> str | torch.device:
    """Join torchrun's process group when launched with more than one process, and return this process's device.

    ``device`` is a device name (``auto``, ``cpu``, ``cuda``, ...). CUDA processes use the NCCL backend and the GPU
    of their local rank (ConfigError when there are fewer GPUs than processes); the others use gloo. Without
    torchrun (or with ``--nproc_per_node 1``) nothing changes.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or active():
        return device
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if local.index >= torch.cuda.device_count():
            raise ConfigError(f"torchrun started more processes on this machine than it has GPUs "
                              f"({torch.cuda.device_count()}); use --nproc_per_node {torch.cuda.device_count()}.")
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    atexit.register(dist.destroy_process_group)
    return local if use_cuda else ("cpu" if device == "auto" else device)


def micro_batch_size(batch_size: int, grad_accum_steps: int) -> int:
    """Return the windows each process takes per micro-batch: the global batch over processes and accumulation.

    Raises ConfigError when the global batch cannot be split evenly (e.g. a checkpoint's batch on a new number of
    processes).
    """
    parts = size() * grad_accum_steps
    if batch_size % parts:
        raise ConfigError(
            f"The global batch of {batch_size} windows cannot be split evenly over {size()} process(es) x "
            f"{grad_accum_steps} accumulation step(s); choose processes x grad_accum_steps dividing {batch_size}, "
            "or set another batch_size (a resume then trains with another global batch).")
    return batch_size // parts


def micro_batches(indices: torch.Tensor, grad_accum_steps: int) -> list[torch.Tensor]:
    """Return this process's micro-batches of a global batch (of windows, or of window ``indices``), in order.

    Micro-batch ``a`` of process ``r`` is slice ``a * processes + r`` of the batch cut into equal slices, so that
    the processes together cover the whole batch once per accumulation step.
    """
    slices = indices.chunk(size() * grad_accum_steps)
    return [slices[step * size() + rank()] for step in range(grad_accum_steps)]


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Return ``model`` wrapped in DistributedDataParallel inside a process group (``model`` itself otherwise)."""
    if not active():
        return model
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


def agree(kind: str | None) -> str | None:
    """Return the stop every process makes before the next step: the strongest ``kind`` asked by any of them."""
    if not active():
        return kind
    code = torch.tensor([STOP_KINDS.index(kind)], device=_collective_device())
    dist.all_reduce(code, op=dist.ReduceOp.MAX)
    return STOP_KINDS[int(code.item())]


def everywhere(flag: bool) -> bool:
    """True when ``flag`` is true in every process of the group (one collective)."""
    if not active():
        return flag
    value = torch.tensor([int(flag)], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def mean(value: torch.Tensor) -> float:
    """Return the mean over the processes of a scalar tensor, as a float."""
    if not active():
        return float(value)
    total = value.detach().to(_collective_device(), torch.float64).reshape(1)
    dist.all_reduce(total)
    return float(total.item()) / size()


def from_main(make: Callable[[], T]) -> T:
    """Return what ``make()`` returns on rank 0, to every process (only rank 0 calls it; its error is raised by
    every process)."""
    if not active():
        return make()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("value", make())
        except Exception as exc:  # every process must leave the broadcast, then raise the same error
            box[0] = ("error", exc)
    dist.broadcast_object_list(box, src=0)
    outcome, value = box[0]
    if outcome == "error":
        raise value
    return value


def barrier() -> None:
    """Wait until every process arrives here."""
    if active():
        dist.barrier()


def gather_rng(state: dict[str, Any]) -> dict[str, Any]:
    """Return rank 0's random state with every other rank's under ``other_ranks`` (on every process)."""
    if not active():
        return state
    states: list[Any] = [None] * size()
    dist.all_gather_object(states, state)
    return {**states[0], "other_ranks": states[1:]}


def rank_rng(state: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """Return this process's random state from a saved one, and notes: None (with a note) when the checkpoint has
    none for this rank (it was saved by fewer processes; the process is then seeded by :func:`rank_seed`)."""
    others = state.get("other_ranks") or []
    if rank() == 0:
        return {k: v for k, v in state.items() if k != "other_ranks"}, []
    if rank() <= len(others):
        return others[rank() - 1], []
    return None, [f"The checkpoint holds no random state for process {rank()} (saved by {len(others) + 1} "
                  "process(es)); dropout there differs from an uninterrupted run."]


def rank_seed(seed: int) -> int:
    """Return the global RNG seed of this process (``seed`` itself on rank 0)."""
    return seed + RANK_SEED_STRIDE * rank()


def _collective_device() -> torch.device:
    """The device a collective's tensors live on: the current GPU under NCCL, the CPU under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
