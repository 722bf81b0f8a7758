"""The status a training run reports: one small dataclass, rendered by the CLI, the app and scripts."""
from __future__ import annotations

import dataclasses
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

STATES = ("running", "checkpoint", "paused", "completed", "interrupted", "error")
FINAL_STATES = ("paused", "completed", "interrupted", "error")


@dataclass
class TrainingStatus:
    """Where a run stands. ``history`` is the run's live :class:`~azr.checkpoints.history.History` (do not modify
    it)."""

    state: str
    iteration: int
    max_iterations: int
    loss: float | None = None
    val_loss: float | None = None
    reward: float | None = None
    heldout_reward: float | None = None  # self-play's reward on held-out prompts, at the last validation
    reward_components: dict[str, float] = field(default_factory=dict)
    reward_std: float | None = None
    kl: float | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)  # latest self-play: prompt, continuation, reward
    quality: dict[str, float] = field(default_factory=dict)  # greedy seq-rep-4 / distinct-2 at the last validation
    lr: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    memory_mb: float | None = None
    checkpoint: str | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    pushes: dict[str, str] = field(default_factory=dict)
    history: Sequence[dict[str, Any]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.state in FINAL_STATES:  # nothing is left to estimate once a run paused, ended or failed
            self.eta_s = None

    @property
    def is_training(self) -> bool:
        """True while the run has not reached a final state."""
        return self.state not in FINAL_STATES

    def as_dict(self, with_history: bool = True) -> dict[str, Any]:
        """Return a JSON-able dict with these fields plus the seed trainer's callback keys."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["reward_components"] = dict(self.reward_components)
        values["quality"] = dict(self.quality)
        values["warnings"] = list(self.warnings)
        values["samples"] = [dict(sample) for sample in self.samples]
        values["pushes"] = dict(self.pushes)
        values["history"] = list(self.history) if with_history else []
        values.update(
            current_iteration=self.iteration,
            current_loss=self.loss,
            current_reward=self.reward,
            is_training=self.is_training,
            progress=self.iteration / self.max_iterations if self.max_iterations else 0.0,
            checkpoint_path=self.checkpoint,
        )
        return values


class StatusClock:
    """Measures the speed of a run between statuses and builds each :class:`TrainingStatus`."""

    def __init__(self) -> None:
        self.steps = 0
        self._window_start = time.monotonic()
        self._window_steps = 0
        self._seconds_per_step: float | None = None

    def count(self) -> None:
        """One step was taken."""
        self.steps += 1
        self._window_steps += 1

    def status(self, run, state: str, message: str, device: torch.device, pushes: dict[str, str]) -> TrainingStatus:
        """Return the status of ``run`` (an :class:`azr.training.session.Run`) now."""
        now = time.monotonic()
        if self._window_steps:
            self._seconds_per_step = (now - self._window_start) / self._window_steps
        self._window_start, self._window_steps = now, 0
        per_step, config, train = self._seconds_per_step, run.config, run.state
        return TrainingStatus(
            state=state, iteration=train.iteration, max_iterations=config.max_iterations, loss=train.loss,
            val_loss=train.val_loss, reward=train.reward, heldout_reward=train.heldout_reward,
            reward_components=dict(train.reward_components),
            reward_std=train.reward_std, kl=train.kl, samples=[dict(sample) for sample in train.samples],
            quality=dict(train.quality), lr=train.plan.lr_at(train.iteration),
            tokens_per_s=(config.batch_size * config.seq_len / per_step) if per_step else None,
            eta_s=(per_step * (config.max_iterations - train.iteration)) if per_step else None,
            memory_mb=memory_mb(device), checkpoint=run.last_checkpoint, message=message,
            warnings=list(run.warnings), history=train.history, pushes=pushes)


def memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocations on a GPU, the peak resident set size otherwise.

    VmHWM is this process's own peak; ``ru_maxrss`` (the fallback off Linux) can include a parent's memory.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as status:
            peak = next(line for line in status if line.startswith("VmHWM:"))
        return int(peak.split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CGROUPS = (  # a container's memory limit, usage and usage statistics, with its inactive page cache's field
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "inactive_file"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
     "/sys/fs/cgroup/memory/memory.stat", "total_inactive_file"),
)


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory a run could use now (None where it cannot be read): a GPU's free memory; else the kernel's
    MemAvailable, or less when the container's limit (a Space's cgroup, which /proc/meminfo does not show) is
    nearer."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            free = next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable:")) * 1024
    except (OSError, StopIteration, ValueError):
        return None
    headroom = container_headroom_bytes()
    return free if headroom is None else min(free, headroom)


def container_headroom_bytes() -> int | None:
    """Bytes between the container's memory limit and what it uses, its inactive page cache (which the kernel
    reclaims first) not counted, as ``docker stats`` counts; None without a cgroup limit (cgroup v2, then v1)."""
    for limit_file, usage_file, stat_file, cache_field in CGROUPS:
        try:
            limit, used, stats = (Path(name).read_text(encoding="ascii") for name in (limit_file, usage_file, stat_file))
            cache = next((int(line.split()[1]) for line in stats.splitlines() if line.startswith(f"{cache_field} ")), 0)
            used_bytes = int(used) - cache
        except (OSError, ValueError):
            continue
        return max(0, int(limit) - used_bytes) if limit.strip().isdigit() else None
    return None
