"""TrainState: everything a run carries from one iteration to the next apart from weights, optimizer and random
generators, and the one place where it becomes a checkpoint's values and comes back from them.

A field holding a plain value (a number, text, or lists and dicts of them) is saved under its name as it is and
restored as it was: adding such a field to the dataclass is all a new piece of state needs. The few fields with a
stored form of their own say so in :data:`_STORED_AS`. The history is stored as columns and the reference
policy's tensors in a file of their own, so :meth:`TrainState.state_dict` stays small whatever the run's length.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from azr.checkpoints.history import History
from azr.config.schedule import LRPlan
from azr.data.corpus import ResumableSampler
from azr.rl.grpo import Reference
from azr.training import precision

# Fields whose stored form differs from their value: the key they are stored under. The history has files of its
# own; run_id and corpus are the run's identity, saved for reference and set by the run rather than restored.
_STORED_AS = {"sampler": "data_position", "plan": "plan", "scaler": "grad_scaler",
              "reference": "reference_iteration", "history": None}
_IDENTITY = ("run_id", "corpus")


@dataclass
class TrainState:
    """Iteration, history, data position, LR plan, gradient scaler, reference policy, corpus reference and the
    latest metrics of one run."""

    run_id: str
    iteration: int
    history: History
    sampler: ResumableSampler
    plan: LRPlan
    corpus: dict[str, Any]
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    loss: float | None = None
    val_loss: float | None = None
    reward: float | None = None
    heldout_reward: float | None = None  # self-play's reward on held-out prompts at the last validation
    best_val_loss: float | None = None  # lowest validation loss so far: model_best_<N> holds its weights
    quality: dict[str, float] = field(default_factory=dict)  # greedy seq-rep-4 and distinct-2 (azr.training.quality)
    reward_components: dict[str, float] = field(default_factory=dict)
    reward_std: float | None = None
    kl: float | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    reference: Reference = field(default_factory=Reference)  # its tensors are saved in their own file

    def state_dict(self) -> dict[str, Any]:
        """Return the JSON-able state: every field under its name, or its stored form (without the history and
        the reference tensors: see :meth:`tensors`)."""
        values = {name: copy.deepcopy(getattr(self, name)) for name in self._plain_fields()}
        values.update(data_position=self.sampler.state_dict(), plan=self.plan.to_dict(),
                      grad_scaler=precision.scaler_state(self.scaler), reference_iteration=self.reference.iteration)
        return values

    def tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        """The state's tensors, each group saved in a file of its own: the self-play reference policy's."""
        return {} if self.reference.tensors is None else {"reference": self.reference.tensors}

    def load_state_dict(self, values: dict[str, Any], history: History,
                        tensors: dict[str, dict[str, torch.Tensor]], device: torch.device) -> list[str]:
        """Restore what :meth:`state_dict` and :meth:`tensors` returned (the run's own ``run_id`` and ``corpus``
        stay); return notes for the user (a data order that cannot continue, say)."""
        for name in self._plain_fields():
            if name not in _IDENTITY and name in values:
                setattr(self, name, copy.deepcopy(values[name]))
        self.history, self.plan = history, LRPlan.from_dict(values["plan"])
        if self.scaler is not None and values.get("grad_scaler"):
            self.scaler.load_state_dict(values["grad_scaler"])
        if "reference" in tensors:
            self.reference = Reference({k: v.to(device) for k, v in tensors["reference"].items()},
                                       values.get("reference_iteration"))
        return self._load_position(values)

    def _load_position(self, values: dict[str, Any]) -> list[str]:
        """Continue the data order where it stopped, when the texts are the checkpoint's."""
        position = values.get("data_position") or {}
        saved_fingerprint = (values.get("corpus") or {}).get("fingerprint")
        if saved_fingerprint == self.corpus["fingerprint"] and position.get("num_samples") == self.sampler.num_samples:
            self.sampler.load_state_dict(position)
            return []
        return ["The texts differ from the checkpoint's corpus; continuing with a fresh data order."]

    @classmethod
    def _plain_fields(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name not in _STORED_AS]
