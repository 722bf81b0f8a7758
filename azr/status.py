"""The status a training run reports: one small dataclass, rendered by the CLI, the app and scripts."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

STATES = ("running", "checkpoint", "paused", "completed", "interrupted", "error")
FINAL_STATES = ("paused", "completed", "interrupted", "error")


@dataclass
class TrainingStatus:
    """Where a run stands. ``history`` is the run's live per-iteration record list (do not modify it)."""

    state: str
    iteration: int
    max_iterations: int
    loss: float | None = None
    val_loss: float | None = None
    reward: float | None = None
    reward_components: dict[str, float] = field(default_factory=dict)
    lr: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    memory_mb: float | None = None
    checkpoint: str | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    pushes: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def is_training(self) -> bool:
        """True while the run has not reached a final state."""
        return self.state not in FINAL_STATES

    def as_dict(self, with_history: bool = True) -> dict[str, Any]:
        """Return a JSON-able dict with these fields plus the seed trainer's callback keys."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["reward_components"] = dict(self.reward_components)
        values["warnings"] = list(self.warnings)
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
