"""What the front-ends share: a new model for a run, sampling text from a checkpoint, the LR a resume will follow.

The CLI, the app, the demo and the selftest call these instead of setting models up their own way, so a
change to how a model, a sample or a schedule preview is made touches this one file.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch

from azr.checkpoints.checkpoint import Checkpoint
from azr.config import SAMPLING_RANGES, ModelConfig
from azr.data.corpus import default_corpus
from azr.data.tokenizer import decode_parts, train_tokenizer
from azr.errors import CheckpointError, ConfigError
from azr.models.causal_lm import build_model, load_pretrained, max_length_of
from azr.models.lora import LoraSettings, apply_lora
from azr.rl.selfplay import generate
from azr.training.session import decay_restart

PREVIEW_POINTS = 200  # about this many points per part of the LR preview


def new_model(texts: list[str] | None, model_config: ModelConfig | None = None, base_model: str | None = None,
              seed: int = 0, lora: LoraSettings | None = None):
    """Return ``(model, tokenizer)`` for a new run.

    Without ``base_model``: a byte-level BPE trained on ``texts`` (None: the default corpus) and a model of
    ``model_config`` (None: the default size) with the tokenizer's vocabulary and initial weights from ``seed``.
    With it: that model directory or Hub id, loaded with :func:`azr.models.causal_lm.load_pretrained`, and with ``lora``
    wrapped with new LoRA adapters (from ``seed``) that are all the run trains. Raises ConfigError for both at
    once, LoRA without a base model, a bad size or an unloadable base model, DataError for no text.
    """
    if base_model is not None:
        if model_config is not None:
            raise ConfigError("Give a model size or a base model, not both: a base model brings its own size.")
        model, tokenizer = load_pretrained(base_model)
        return (apply_lora(model, lora, seed) if lora else model), tokenizer
    if lora is not None:
        raise ConfigError("LoRA adapts a base model; give --base-model with the LoRA options.")
    config = model_config or ModelConfig()
    tokenizer = train_tokenizer(texts if texts is not None else default_corpus(), config.vocab_size)
    return build_model(dataclasses.replace(config, vocab_size=len(tokenizer)), seed=seed), tokenizer


def check_sampling(temperature: Any, top_k: Any, max_new_tokens: Any, seed: Any = None) -> None:
    """Raise ConfigError naming the setting and its range (``azr.config.SAMPLING_RANGES``) when a sampling setting is
    not usable; no ``seed`` (None) is fine."""
    values = {"temperature": temperature, "top_k": top_k, "max_new_tokens": max_new_tokens, "seed": seed}
    for name, value in values.items():
        if not (name == "seed" and value is None):
            SAMPLING_RANGES[name].check(name, value)


def sample_text(checkpoint: Checkpoint, prompt: str, *, temperature: float = 1.0, top_k: int = 50,
                max_new_tokens: int = 50, seed: int | None = None, device: str | torch.device = "cpu") -> str:
    """Return ``prompt`` followed by a continuation sampled from the checkpoint's model.

    The checkpoint's files are verified first. A prompt that leaves no room for ``max_new_tokens`` in the
    model's length keeps its end: at least half the length stays prompt and the continuation gets the rest (the
    returned text still starts with the whole prompt). An empty prompt starts from the end-of-text token. With
    ``seed`` the sample is reproducible, and the global random state is left as it was. Raises ConfigError
    for a bad setting, CheckpointError for a damaged or unloadable checkpoint or one whose weights are not finite.
    """
    check_sampling(temperature, top_k, max_new_tokens, seed)
    checkpoint.verify()
    model, tokenizer = checkpoint.load_model(device)
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise CheckpointError(f"{checkpoint.name}'s weights hold NaN or infinite values (its run diverged), so it "
                              "cannot be sampled; sample an earlier checkpoint of the run.")
    limit = max_length_of(model)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
    ids = ids[-max(limit // 2, limit - max_new_tokens, 1):]
    prompts = torch.tensor([ids], device=model.device)
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        rollout = generate(model, prompts, min(max_new_tokens, limit - len(ids)), float(temperature), top_k,
                           tokenizer.eos_token_id, tokenizer.pad_token_id)
    return prompt + decode_parts(tokenizer, ids, rollout.continuations()[0])[1]  # whole characters only


def lr_preview(checkpoint: Checkpoint, max_iterations: int | None = None, lr: float | None = None,
               extend_schedule: str | None = None) -> list[dict]:
    """Return the LR schedule a resume of ``checkpoint`` follows, as ``{"iteration", "lr", "part"}`` records.

    Part "trained": the run's history (about :data:`PREVIEW_POINTS` of its records); part "planned": the rest
    up to the target, re-planned exactly as the trainer does on resume with ``max_iterations``, ``lr`` and
    ``extend_schedule`` (None: the checkpoint's own). Record ``i`` holds the LR of the step that made iteration ``i``.
    Raises ConfigError for a target below the checkpoint's iteration or a bad LR.
    """
    config = checkpoint.train_config.updated(max_iterations=max_iterations, lr=lr, extend_schedule=extend_schedule)
    if config.max_iterations < checkpoint.iteration:
        raise ConfigError(f"max_iterations ({config.max_iterations}) is below the checkpoint's iteration "
                          f"({checkpoint.iteration}); give a target of at least {checkpoint.iteration}.")
    # a wsd extension re-plans from the decay's start (its files are verified when a resume opens them)
    checkpoint = decay_restart(checkpoint, config, verify=False) or checkpoint
    done = checkpoint.iteration
    plan = checkpoint.plan().replanned(done, config.max_iterations, lr, config.min_lr_ratio, config.lr_schedule,
                                       config.extend_schedule)
    history = checkpoint.history()
    trained = [{"iteration": r["iteration"], "lr": r["lr"], "part": "trained"}
               for r in (history[i] for i in _thinned(len(history)))]
    planned = [{"iteration": done + i + 1, "lr": plan.lr_at(done + i), "part": "planned"}
               for i in _thinned(config.max_iterations - done)]
    return trained + planned


def _thinned(length: int, points: int = PREVIEW_POINTS) -> Sequence[int]:
    """Return about ``points`` evenly spaced indices of ``range(length)``, the last one included."""
    indices = list(range(0, length, max(1, math.ceil(length / points))))
    if length and indices[-1] != length - 1:
        indices.append(length - 1)
    return indices
