"""Turning a run into a checkpoint: which state is consistent at this moment, and the bytes of each file.

A step changes the data position and the RNG before the update and the weights and optimizer during it.
:class:`StepSnapshot` remembers the state from before the step while the update has not started, so an
interrupt there saves the state from before the step; an interrupt during the update saves nothing (the step
was cut half-way, and no consistent state exists until it ends).
"""
from __future__ import annotations

import json
import logging
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import transformers

from . import __version__, rng, tensorfile
from .checkpoint import OPTIMIZER_FILE, REFERENCE_FILE, RNG_FILE, SCHEDULER_FILE, checkpoint_name, save_checkpoint
from .model import model_config_of
from .state import TrainState

log = logging.getLogger(__name__)


class StepSnapshot:
    """Where the current step is: ``idle`` (between steps), ``before_update`` or ``updating``."""

    def __init__(self) -> None:
        self.phase = "idle"
        self.position: dict[str, int] = {}
        self.rng_state: dict[str, Any] = {}

    def begin(self, state: TrainState, device: torch.device) -> None:
        """A step starts: remember the data position and RNG it starts from."""
        self.position, self.rng_state = state.sampler.state_dict(), rng.capture(device)
        self.phase = "before_update"

    def updating(self) -> None:
        """The optimizer starts changing the weights."""
        self.phase = "updating"

    def end(self) -> None:
        """The step and its bookkeeping are done."""
        self.phase = "idle"


class CheckpointSaver:
    """Writes a run's checkpoints for one model and tokenizer (whose files are serialised once)."""

    def __init__(self, model, tokenizer, device: torch.device) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self._tokenizer_files: dict[str, bytes] | None = None

    def save(self, run, kind: str, snapshot: StepSnapshot) -> Path | None:
        """Save ``model_<kind>_<iteration>`` in the run directory; None when a step was cut mid-update."""
        if snapshot.phase == "updating":
            log.warning("not saving %s: the step was interrupted while the weights were being updated", kind)
            return None
        state = run.state
        values = state.state_dict()
        plan = values.pop("plan")
        if snapshot.phase == "before_update":
            values["data_position"], rng_state = snapshot.position, snapshot.rng_state
        else:
            rng_state = rng.capture(self.device)
        values.update(
            kind=kind, max_iterations=run.config.max_iterations, timestamp=datetime.now(timezone.utc).isoformat(),
            train_config=run.config.to_dict(),
            model_config=(mc.to_dict() if (mc := model_config_of(self.model)) else None),
            lr=state.plan.lr_at(state.iteration), device_type=self.device.type,
            versions={"azr": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                      "python": platform.python_version()})
        files = {**self._tokenizer_bytes(), OPTIMIZER_FILE: tensorfile.encode(run.optimizer.state_dict()),
                 RNG_FILE: tensorfile.encode(rng_state), SCHEDULER_FILE: json.dumps(plan, indent=1).encode()}
        if state.reference.tensors is not None:
            files[REFERENCE_FILE] = tensorfile.encode(state.reference.tensors)
        path = save_checkpoint(run.run_dir, checkpoint_name(kind, state.iteration), model=self.model, files=files,
                               state=values, history=state.history)
        log.info("saved checkpoint %s", path)
        return path

    def _tokenizer_bytes(self) -> dict[str, bytes]:
        """The tokenizer's files, serialised on the first save (a run never changes its tokenizer)."""
        if self._tokenizer_files is None:
            with tempfile.TemporaryDirectory(prefix="azr-tokenizer-") as directory:
                self.tokenizer.save_pretrained(directory)
                self._tokenizer_files = {p.name: p.read_bytes() for p in Path(directory).iterdir() if p.is_file()}
        return self._tokenizer_files
