"""LoRA adapters for base models (peft): wrap a model, load an adapter checkpoint, merge it into a full model.

A LoRA run trains only the adapter; its checkpoints hold ``adapter_model.safetensors`` and ``adapter_config.json``
(peft's own save, which names the base model) in place of ``model.safetensors`` and ``config.json``. Loading such a
checkpoint loads the base model it names and the adapter on top; :func:`merge` folds the adapter into the base
weights and saves a plain model that ``AutoModelForCausalLM.from_pretrained`` loads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from azr.config import LORA_ALPHA, LORA_R, LORA_TARGET
from azr.errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class LoraSettings:
    """The adapter's rank, scaling (``alpha``, the update is scaled by alpha / r) and target modules."""

    r: int = 8
    alpha: float = 16.0
    target: str = LORA_TARGET  # "all-linear" or comma-separated module names (e.g. "q_proj,v_proj")

    def __post_init__(self) -> None:
        LORA_R.check("lora_r", self.r)
        LORA_ALPHA.check("lora_alpha", self.alpha)
        if not self.target.strip():
            raise ConfigError("lora_target must name modules (e.g. q_proj,v_proj) or be all-linear.")


def apply_lora(model, settings: LoraSettings, seed: int = 0):
    """Return ``model`` wrapped with new LoRA adapters (a peft model training only them).

    The adapters' initial weights come from ``seed`` without touching the global RNG. Raises ConfigError when
    the target modules are not in the model.
    """
    from peft import LoraConfig, get_peft_model  # noqa: PLC0415 - only for LoRA runs

    targets = settings.target if settings.target == LORA_TARGET else \
        [name.strip() for name in settings.target.split(",") if name.strip()]
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, target_modules=targets, lora_dropout=0.0,
                        task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return get_peft_model(model, config)
        except ValueError as exc:
            raise ConfigError(f"LoRA target {settings.target!r} does not fit the model ({exc}); name its linear "
                              "modules (e.g. q_proj,v_proj) or use all-linear.") from exc


def is_peft_model(model) -> bool:
    """True for a model wrapped by peft (one that trains adapters)."""
    return type(model).__module__.startswith("peft.")


def set_adapter_weights(model, tensors: dict[str, torch.Tensor]) -> None:
    """Load an adapter's saved tensors into a peft model; raises CheckpointError when they do not fit it."""
    from peft import set_peft_model_state_dict  # noqa: PLC0415

    try:
        result = set_peft_model_state_dict(model, tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"The checkpoint's adapter does not fit the model: {str(exc)[:300]}") from exc
    missing = [name for name in result.missing_keys if "lora_" in name]
    if result.unexpected_keys or missing:
        raise CheckpointError(f"The checkpoint's adapter does not fit the model: "
                              f"{(result.unexpected_keys or missing)[0]} does not match.")


def is_adapter(path: str | Path) -> bool:
    """True when a checkpoint directory holds a LoRA adapter (peft's adapter config) rather than a full model."""
    from peft.utils import CONFIG_NAME  # noqa: PLC0415 - only for LoRA questions

    return (Path(path) / CONFIG_NAME).is_file()


def load_model(path: str | Path, trainable: bool = False):
    """Return the model a checkpoint directory holds: a full model, or its base model with the adapter on top.

    Raises CheckpointError when it (or the base model an adapter names) cannot be loaded.
    """
    try:
        if not is_adapter(path):
            return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        from peft import PeftConfig, PeftModel  # noqa: PLC0415

        base = PeftConfig.from_pretrained(path).base_model_name_or_path
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        return PeftModel.from_pretrained(model, path, is_trainable=trainable)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Checkpoint {str(path)!r} cannot be loaded as a model ({type(exc).__name__}); for "
                              "a LoRA checkpoint its base model must be reachable.") from exc


def merge(path: str | Path, out_dir: str | Path) -> Path:
    """Fold a LoRA checkpoint's adapter into its base model and save the result (with the tokenizer) in
    ``out_dir``; return ``out_dir``. Raises CheckpointError for a checkpoint without an adapter."""
    if not is_adapter(path):
        raise CheckpointError(f"Checkpoint {str(path)!r} has no LoRA adapter; it already holds a full model.")
    merged = load_model(path).merge_and_unload()
    out = Path(out_dir)
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(path).save_pretrained(out)
    return out
