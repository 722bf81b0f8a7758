"""The checkpoint format, owned by one object: :class:`Checkpoint` reads it, :func:`save_checkpoint` writes it.

A checkpoint ``<run>/model_<kind>_<N>/`` (format 3) holds the transformers files (``model.safetensors``,
``config.json``, tokenizer files), the sidecars ``optimizer.safetensors``, ``rng_state.safetensors``,
``scheduler.json`` and ``history_tail.safetensors``, and ``trainer_state.json``: the run's O(1) state and the
checksum of every other file. The history's full chunks live once per run in ``<run>/history/`` (see
:mod:`azr.checkpoints.history`). Format 1 (``optimizer.pt``, ``rng_state.pt``, the history inside the JSON) and
format 2 (sha256 checksums) still load. Nothing here unpickles: tensors load with safetensors or
``torch.load(weights_only=True)``. torch is imported only by the methods that read tensors, so listing and verifying
checkpoints (``azr list``) stay light.
"""
from __future__ import annotations

import json
import math
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azr.checkpoints import containment, storage
from azr.checkpoints.history import CHUNK_DIR, History, chunk_path, chunk_problem
from azr.checkpoints.names import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    CONFIG_FILE,
    HISTORY_FILE,
    OPTIMIZER_FILE,
    REFERENCE_FILE,
    REQUIRED_FILES,
    RNG_FILE,
    SCHEDULER_FILE,
    V1_OPTIMIZER_FILE,
    V1_RNG_FILE,
    WEIGHTS_FILE,
    hub_hint,
    is_hub_reference,
)
from azr.checkpoints.statefile import FORMAT_VERSION, checksum_algorithm, read_state
from azr.config import LR_SCHEDULES, TrainConfig
from azr.config.schedule import LRPlan
from azr.errors import CheckpointError, ConfigError
from azr.utils.quiet import progress_bars_off

if TYPE_CHECKING:
    import torch

class Checkpoint:
    """One checkpoint: opened (and verified) once, then asked for its parts.

    Use :meth:`open`; the parts are read lazily and at most once each.
    """

    def __init__(self, path: Path, state: dict[str, Any]) -> None:
        self.path = path
        self.state = state
        self._verified: dict[str, storage.Buffer] = {}  # the small files as hashed: their parts decode these bytes

    @classmethod
    def open(cls, ref: str | os.PathLike | Checkpoint, *, verify: bool = True) -> Checkpoint:
        """Return the checkpoint at a local path (an ``hf://`` reference is resolved by
        :func:`azr.hub.sync.open_checkpoint`).

        Raises CheckpointError for a missing, unreadable, newer-format or (with ``verify``) damaged checkpoint, or
        a Hub reference.
        """
        if isinstance(ref, Checkpoint):
            return ref
        text = str(ref)
        if is_hub_reference(text):
            raise CheckpointError(f"Checkpoint {text!r} is on the Hub: download it first (azr pull).")
        path = Path(text).expanduser()
        if not path.exists() and not path.is_symlink():
            hint = hub_hint(text) or "; check the path or run `azr list`"
            raise CheckpointError(f"Checkpoint {text!r} does not exist{hint}.")
        containment.check_contained(path)
        checkpoint = cls(path, read_state(path))
        containment.check_corpus(checkpoint)
        if verify:
            checkpoint.verify()
        return checkpoint

    # ------------------------------------------------------------------ what it is

    @property
    def name(self) -> str:
        return self.state.get("name") or self.path.name

    @property
    def format_version(self) -> int:
        return self.state["format_version"]

    @property
    def iteration(self) -> int:
        return self.state["iteration"]

    @property
    def kind(self) -> str:
        return self.state.get("kind", "iter")

    @property
    def run_id(self) -> str | None:
        return self.state.get("run_id")

    @property
    def files(self) -> dict[str, str]:
        return self.state.get("files") or {}

    @property
    def has_optimizer(self) -> bool:
        return self._optimizer_file in self.files

    @property
    def data_position(self) -> dict[str, int]:
        return self.state.get("data_position") or {}

    @property
    def corpus(self) -> dict[str, Any]:
        return self.state.get("corpus") or {}

    @cached_property
    def train_config(self) -> TrainConfig:
        """The run's settings as saved."""
        try:
            return TrainConfig.from_dict(self.state["train_config"])
        except (ConfigError, TypeError) as exc:
            self._invalid(f"its train_config does not hold valid settings ({str(exc).rstrip('.')})")

    @cached_property
    def model_config(self) -> dict[str, Any]:
        """The transformers ``config.json`` as a dict."""
        return self._json(CONFIG_FILE)

    def _json(self, filename: str) -> dict[str, Any]:
        """A JSON file of the checkpoint holding an object; raises CheckpointError naming the file."""
        try:
            value = json.loads(bytes(self._read(filename)))
        except (OSError, ValueError):
            value = None
        if not isinstance(value, dict):
            self._invalid(f"{filename} is not a readable JSON object")
        return value

    @property
    def history_length(self) -> int:
        """How many iterations the history holds."""
        history = self.state.get("history")
        return history.get("length", 0) if isinstance(history, dict) else len(history or [])

    @property
    def history_chunks(self) -> list[str]:
        return list((self.state.get("history") or {}).get("chunks", [])) if self.format_version >= 2 else []

    @property
    def chunk_dir(self) -> Path:
        """Where the run's history chunks are: ``history/`` beside the checkpoint."""
        return self.path.parent / CHUNK_DIR

    # ------------------------------------------------------------------ verification

    def verify(self, parts: bool = True) -> None:
        """Check every file and history chunk against its checksum and (with ``parts``, before loading) that every
        part decodes; raises CheckpointError naming the problem."""
        files = self.files
        adapter = ADAPTER_CONFIG in files  # a LoRA checkpoint: the adapter's weights instead of the model's
        for required in REQUIRED_FILES[min(self.format_version, FORMAT_VERSION)]:
            required = ADAPTER_WEIGHTS if adapter and required == WEIGHTS_FILE else required
            if required not in files:
                self._invalid(f"{required} is not recorded")
        paths = [self.path / name for name in files]
        for path in paths:
            if not path.is_file():
                self._invalid(f"{path.name} is missing")
        small = {path.name: path.read_bytes() for path in paths if path.stat().st_size < storage.MAP_THRESHOLD}
        algorithm = checksum_algorithm(self.format_version)
        actual = storage.in_parallel(lambda path: storage.checksum(small[path.name], algorithm) if path.name in small
                                     else storage.file_checksum(path, algorithm), paths)
        for name, digest in files.items():
            if actual[name] != digest:
                self._invalid(f"checksum mismatch in {name}")
        self._verified = small
        containment.check_history(self)
        problem = chunk_problem(self.chunk_dir, self.history_chunks)
        if problem:
            self._invalid(problem)
        if parts:
            self._check_parts()

    def _check_parts(self) -> None:
        """Check that every part decodes (files with matching checksums can still be damaged or hand-made)."""
        from safetensors import SafetensorError, safe_open  # noqa: PLC0415 - reads headers only
        self.plan(), self.train_config, self.model_config  # noqa: B018 - each raises CheckpointError if unusable
        for name in self.files:
            if name.endswith(".safetensors"):
                try:
                    with safe_open(self.path / name, framework="pt") as reader:
                        reader.keys()
                except (OSError, SafetensorError) as exc:
                    raise CheckpointError(f"Checkpoint {str(self.path)!r} is invalid: {name} is not a complete "
                                          f"safetensors file.") from exc

    def _invalid(self, reason: str) -> None:
        raise CheckpointError(f"Checkpoint {str(self.path)!r} is invalid: {reason}.")

    # ------------------------------------------------------------------ parts

    @property
    def _optimizer_file(self) -> str:
        return OPTIMIZER_FILE if self.format_version >= 2 else V1_OPTIMIZER_FILE

    def plan(self) -> LRPlan:
        """The LR plan the run followed."""
        try:
            plan = LRPlan.from_dict(self._json(SCHEDULER_FILE))
            usable = plan.kind in LR_SCHEDULES and math.isfinite(plan.lr_at(self.iteration))
        except (TypeError, ValueError, ArithmeticError):
            usable = False
        if not usable:
            self._invalid(f"{SCHEDULER_FILE} does not hold a learning-rate plan")
        return plan

    def train_state(self) -> tuple[dict[str, Any], History, dict[str, dict[str, Any]]]:
        """What ``TrainState.load_state_dict`` takes: the saved values with the LR plan, the history, and the
        state's tensors (the self-play reference policy, when the run has one)."""
        reference = self.reference_tensors()
        tensors = {} if reference is None else {"reference": reference}
        return {**self.state, "plan": self.plan().to_dict()}, self.history(), tensors

    def history(self) -> History:
        """The run's history up to this checkpoint."""
        if self.format_version < 2:
            history = History()
            for record in self.state.get("history") or []:
                history.append(record)
            return history
        try:
            chunks = [chunk_path(self.chunk_dir, digest).read_bytes() for digest in self.history_chunks]
            return History.from_chunks(chunks, self.history_chunks, bytes(self._read(HISTORY_FILE)))
        except (OSError, ValueError):
            self._invalid("its history is unreadable")

    def optimizer_state(self, device: torch.device | str = "cpu") -> dict[str, Any] | None:
        """The optimizer's ``state_dict()``, or None when the checkpoint has none."""
        if not self.has_optimizer:
            return None
        return self._tensors(self._optimizer_file, device)

    def rng_state(self) -> dict[str, Any]:
        """The random generators' states (see :mod:`azr.training.rng`)."""
        return self._tensors(RNG_FILE if self.format_version >= 2 else V1_RNG_FILE, "cpu")

    def reference_tensors(self) -> dict[str, torch.Tensor] | None:
        """The self-play reference policy's parameters, or None when the checkpoint has none."""
        return self._tensors(REFERENCE_FILE, "cpu") if REFERENCE_FILE in self.files else None

    def _read(self, filename: str) -> storage.Buffer:
        """A file's bytes: those verified, or (unverified checkpoints) read now."""
        if filename in self._verified:
            return self._verified[filename]
        return storage.read_buffer(self.path / filename)

    def _tensors(self, filename: str, device: torch.device | str) -> Any:
        import torch  # noqa: PLC0415 - heavy, and only reading tensors needs it

        from azr.checkpoints import tensorfile  # noqa: PLC0415

        try:
            if filename.endswith(".pt"):
                return torch.load(self.path / filename, map_location=device, weights_only=True)
            return tensorfile.decode(self.path / filename, device)
        except Exception as exc:  # any failure to read the file is the same problem for the user
            raise CheckpointError(f"Checkpoint {str(self.path)!r} is invalid: {filename} is unreadable "
                                  f"({type(exc).__name__}).") from exc

    def load_weights(self, model) -> None:
        """Load ``model.safetensors`` (a LoRA checkpoint: the adapter) into ``model`` on its device with
        ``safetensors.torch.load_model`` (tied weights
        may be stored once).

        Raises CheckpointError when the file is unreadable or its tensors are missing, unexpected or have other
        shapes (callers check the architecture first, so this means a damaged or foreign file).
        """
        from safetensors import SafetensorError  # noqa: PLC0415 - torch only when weights are loaded
        from safetensors.torch import load_file, load_model  # noqa: PLC0415

        from azr.models.lora import is_peft_model, set_adapter_weights  # noqa: PLC0415

        adapter = ADAPTER_CONFIG in self.files
        filename = ADAPTER_WEIGHTS if adapter else WEIGHTS_FILE
        if adapter != is_peft_model(model):
            raise CheckpointError(f"Checkpoint {str(self.path)!r} {'holds' if adapter else 'has no'} a LoRA adapter "
                                  f"but the model {'has none' if adapter else 'does'}; use AZRTrainer.from_checkpoint.")
        device = str(next(model.parameters()).device)
        try:
            if adapter:
                set_adapter_weights(model, load_file(self.path / filename, device=device))
            else:
                load_model(model, self.path / filename, device=device)
        except (OSError, SafetensorError) as exc:
            raise CheckpointError(f"Checkpoint {str(self.path)!r} is invalid: {filename} is unreadable "
                                  f"({type(exc).__name__}).") from exc
        except RuntimeError as exc:  # missing, unexpected or misshapen tensors
            problems = "; ".join(line.strip().rstrip(".") for line in str(exc).splitlines()[1:])
            raise CheckpointError(f"Checkpoint weights do not fit the model: {problems[:300]}.") from exc

    def load_model(self, device: torch.device | str = "cpu", trainable: bool = False):
        """Return ``(model, tokenizer)`` built from this checkpoint's files, in float32 on ``device`` (a LoRA
        checkpoint: its base model with the adapter, trainable if asked).

        Raises CheckpointError when the files do not make a model (e.g. weights that do not fit config.json).
        """
        from transformers import AutoTokenizer  # noqa: PLC0415 - heavy: only when a model is built
        from transformers.utils import logging as transformers_logging  # noqa: PLC0415

        from azr.models.lora import load_model  # noqa: PLC0415

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path)
            with progress_bars_off(transformers_logging):  # its "Loading weights" bar
                model = load_model(self.path, trainable)
        except CheckpointError:
            raise
        except Exception as exc:  # any failure to build from verified files is the files' problem for the user
            raise CheckpointError(f"Checkpoint {str(self.path)!r} cannot be loaded as a model: its config, weights "
                                  f"or tokenizer files do not fit together ({type(exc).__name__}).") from exc
        return model.to(device), tokenizer


def verify_checkpoint(path: str | Path) -> Checkpoint:
    """Open a local checkpoint and check every file against its checksum; raises CheckpointError naming the problem."""
    return Checkpoint.open(Path(path))
