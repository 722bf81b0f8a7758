"""TrainState: what the training loop carries from one iteration to the next, apart from weights and optimizer.

Its :meth:`TrainState.state_dict` is small and of constant size (the history is stored in its own columnar
files by :mod:`azr.checkpoints.checkpoint`), so a checkpoint's cost does not grow with the length of the run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from azr.checkpoints.history import History
from azr.config.schedule import LRPlan
from azr.data.corpus import ResumableSampler
from azr.rl.grpo import Reference


@dataclass
class TrainState:
    """Iteration, history, data position, LR plan, corpus reference and the latest metrics of one run."""

    run_id: str
    iteration: int
    history: History
    sampler: ResumableSampler
    plan: LRPlan
    corpus: dict[str, Any]
    loss: float | None = None
    val_loss: float | None = None
    reward: float | None = None
    best_val_loss: float | None = None  # lowest validation loss so far: model_best_<N> holds its weights
    quality: dict[str, float] = field(default_factory=dict)  # greedy seq-rep-4 and distinct-2 (azr.training.quality)
    reward_components: dict[str, float] = field(default_factory=dict)
    reward_std: float | None = None
    kl: float | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    reference: Reference = field(default_factory=Reference)  # its tensors are saved in their own file

    def state_dict(self) -> dict[str, Any]:
        """Return the JSON-able state (without the history, which is stored as columns)."""
        return {"run_id": self.run_id, "iteration": self.iteration, "data_position": self.sampler.state_dict(),
                "plan": self.plan.to_dict(), "corpus": self.corpus, "loss": self.loss, "val_loss": self.val_loss,
                "reward": self.reward, "reward_components": dict(self.reward_components),
                "reward_std": self.reward_std, "kl": self.kl, "samples": list(self.samples),
                "reference_iteration": self.reference.iteration, "best_val_loss": self.best_val_loss,
                "quality": dict(self.quality)}

    def load_state_dict(self, values: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the sampler continues from the saved position)."""
        self.run_id, self.iteration, self.corpus = values["run_id"], values["iteration"], values["corpus"]
        self.sampler.load_state_dict(values["data_position"])
        self.plan = LRPlan.from_dict(values["plan"])
        self.loss, self.val_loss, self.reward = values["loss"], values["val_loss"], values["reward"]
        self.reward_components = dict(values["reward_components"])
        self.reward_std, self.kl = values.get("reward_std"), values.get("kl")
        self.samples = list(values.get("samples") or [])
        self.best_val_loss = values.get("best_val_loss")
        self.quality = dict(values.get("quality") or {})
