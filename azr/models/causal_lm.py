"""Causal LMs: build a Llama-style model from a ModelConfig, or load a pretrained one."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel
from transformers.utils import logging as transformers_logging

from azr.config import ModelConfig
from azr.errors import ConfigError
from azr.utils.quiet import progress_bars_off

log = logging.getLogger(__name__)

# The config.json fields that define a model's shape, and the ModelConfig name a user knows them by.
ARCHITECTURE_FIELDS = {
    "model_type": "model_type",
    "vocab_size": "vocab_size",
    "hidden_size": "d_model",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "num_key_value_heads": "num_kv_heads",
    "intermediate_size": "d_ff",
    "max_position_embeddings": "max_seq_len",
    "n_embd": "d_model",
    "n_layer": "num_layers",
    "n_head": "num_heads",
    "n_positions": "max_seq_len",
}


def build_model(config: ModelConfig, seed: int | None = None) -> LlamaForCausalLM:
    """Return a freshly initialised Llama causal LM of the given size.

    With ``seed`` the initial weights are reproducible without touching the global RNG.
    """
    hf_config = LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        intermediate_size=config.d_ff,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads or config.num_heads,
        max_position_embeddings=config.max_seq_len,
        attention_dropout=config.dropout,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        tie_word_embeddings=config.tie_embeddings,
    )
    if seed is None:
        return LlamaForCausalLM(hf_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(hf_config)


def model_config_of(model: PreTrainedModel) -> ModelConfig | None:
    """Return the ModelConfig a Llama model was built from, or None for other architectures."""
    c = model.config
    if getattr(c, "model_type", None) != "llama":
        return None
    try:
        return ModelConfig(
            vocab_size=c.vocab_size, d_model=c.hidden_size, num_layers=c.num_hidden_layers,
            num_heads=c.num_attention_heads, d_ff=c.intermediate_size,
            max_seq_len=c.max_position_embeddings, dropout=float(c.attention_dropout or 0.0),
            num_kv_heads=None if c.num_key_value_heads in (None, c.num_attention_heads) else c.num_key_value_heads,
            tie_embeddings=bool(getattr(c, "tie_word_embeddings", False)),
        )
    except ConfigError:
        return None


def architecture_differences(saved: dict[str, Any], model: PreTrainedModel) -> list[str]:
    """Return 'field: saved vs current' for each shape field where a saved config.json differs from the model."""
    current = model.config.to_dict()
    differences = []
    for key, label in ARCHITECTURE_FIELDS.items():
        if key in saved or key in current:
            if saved.get(key) != current.get(key):
                differences.append(f"{label}: checkpoint {saved.get(key)!r} vs model {current.get(key)!r}")
    return differences


def max_length_of(model: PreTrainedModel) -> int:
    """Return the longest sequence the model accepts (its position limit)."""
    c = model.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(c, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


@contextlib.contextmanager
def evaluating(model) -> Iterator[None]:
    """Run the block with the model in eval mode (dropout off), then put its mode back."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def load_pretrained(name_or_path: str, device: str | torch.device = "cpu"):
    """Return ``(model, tokenizer)`` of an existing causal LM directory or Hub id (no remote code).

    Raises ConfigError when it cannot be loaded.
    """
    if Path(name_or_path).expanduser().is_dir():  # recorded as an absolute path (run.json, a LoRA adapter's config)
        name_or_path = str(Path(name_or_path).expanduser().resolve())
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        with progress_bars_off(transformers_logging):  # its "Loading weights" bar
            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot load base model {name_or_path!r}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer
