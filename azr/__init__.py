"""AZR Trainer: train small causal language models with supervised loss plus self-play, and pause/resume exactly.

The public names below are imported on first use (PEP 562), so ``import azr.cli`` stays light: torch and
transformers load only when a command needs them.
"""
from __future__ import annotations

from azr.utils import lazy

__version__ = "0.1.0"

_PUBLIC = {  # name -> the module that defines it
    "AZRError": "errors", "CheckpointError": "errors", "ConfigError": "errors", "DataError": "errors",
    "HubError": "errors", "TrainingError": "errors", "AZRTrainer": "training.trainer",
    "CheckpointInfo": "checkpoints.info", "verify_checkpoint": "checkpoints.checkpoint",
    "list_checkpoints": "checkpoints.runs", "PRESETS": "config", "ModelConfig": "config", "TrainConfig": "config",
    "preset": "config", "default_corpus": "data.corpus", "load_texts": "data.files",
    "TextFiles": "data.files",
    "build_model": "models.causal_lm", "load_pretrained": "models.causal_lm", "ReferenceStats": "rl.rewards",
    "score_tokens": "rl.rewards", "TrainingStatus": "training.status", "train_tokenizer": "data.tokenizer",
}
__all__ = sorted(_PUBLIC)


__getattr__ = lazy.attributes(__name__, _PUBLIC, globals())


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
