"""AZR Trainer: train small causal language models with supervised loss plus self-play, and pause/resume exactly."""
from __future__ import annotations

__version__ = "0.1.0"

from .checkpoint import CheckpointInfo, verify_checkpoint  # noqa: E402
from .runs import list_checkpoints  # noqa: E402
from .config import PRESETS, ModelConfig, TrainConfig, preset  # noqa: E402
from .data import default_corpus, load_texts  # noqa: E402
from .errors import AZRError, CheckpointError, ConfigError, DataError, HubError  # noqa: E402
from .model import build_model, load_pretrained  # noqa: E402
from .rewards import ReferenceStats, score_tokens  # noqa: E402
from .status import TrainingStatus  # noqa: E402
from .tokenizer import train_tokenizer  # noqa: E402
from .trainer import AZRTrainer  # noqa: E402

__all__ = [
    "AZRError", "AZRTrainer", "CheckpointError", "CheckpointInfo", "ConfigError", "DataError", "HubError",
    "ModelConfig", "PRESETS", "ReferenceStats", "TrainConfig", "TrainingStatus", "build_model", "default_corpus",
    "list_checkpoints", "load_pretrained", "load_texts", "preset", "score_tokens", "train_tokenizer",
    "verify_checkpoint",
]
