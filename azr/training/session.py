"""Setting up one call to ``AZRTrainer.train``: settings, corpus, token windows, optimizer, and the state to
start from (fresh, or restored from a checkpoint). Everything here runs before the first step and changes
nothing on disk except creating the run directory; bad input raises before that.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers

from azr.checkpoints import runs
from azr.checkpoints.checkpoint import Checkpoint, checkpoint_name
from azr.checkpoints.history import History
from azr.config import FIXED_ON_RESUME, TrainConfig, training_defaults
from azr.config.schedule import LRPlan
from azr.data.corpus import (
    ResumableSampler,
    TokenWindows,
    check_texts,
    default_corpus,
    fingerprint,
    load_texts,
    save_corpus,
)
from azr.data.hub_datasets import SOURCE as DATASET_SOURCE
from azr.data.hub_datasets import HubDataset
from azr.errors import CheckpointError, ConfigError, DataError
from azr.models.causal_lm import architecture_differences, max_length_of, model_config_of
from azr.rl.grpo import Reference
from azr.rl.rewards import RewardFn, RewardSet, build_rewards
from azr.training import distributed, precision, rng
from azr.training.state import TrainState

log = logging.getLogger(__name__)

DEFAULT_MAX_WINDOW = 256  # default window length when the model accepts longer sequences


@dataclass
class Run:
    """One call to train(): its settings, data, optimizer and the state a checkpoint captures."""

    config: TrainConfig
    run_dir: Path
    windows: TokenWindows
    rewards: RewardSet
    optimizer: torch.optim.Optimizer
    state: TrainState
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    warnings: list[str] = field(default_factory=list)
    last_checkpoint: str | None = None
    left_ahead: list[str] = field(default_factory=list)  # the run's checkpoints after the one it resumed from
    lock: runs.RunLock | None = None  # rank 0's, while the run trains


def check_architecture(checkpoint: Checkpoint, model) -> None:
    """Raise CheckpointError when the checkpoint's architecture differs from ``model``'s."""
    differences = architecture_differences(checkpoint.model_config, model)
    if differences:
        raise CheckpointError(
            f"Checkpoint {str(checkpoint.path)!r} has a different architecture than the model "
            f"({'; '.join(differences)}); build the model with the checkpoint's settings or use "
            "AZRTrainer.from_checkpoint.")


def resolve_config(checkpoint: Checkpoint | None, max_iterations: int | None, settings: dict[str, Any],
                   model) -> TrainConfig:
    """Return the run's settings: the checkpoint's (or the defaults) updated with those given; a new run without
    an LR or warmup gets the model's (:func:`azr.config.training_defaults`)."""
    if checkpoint is None:
        config = TrainConfig().updated(max_iterations=max_iterations, **settings)
    else:
        saved = checkpoint.train_config
        config = saved.updated(max_iterations=max_iterations, **settings)
        for name in FIXED_ON_RESUME:
            if getattr(config, name) != getattr(saved, name):
                raise ConfigError(f"{name} cannot change on resume; it fixes the data order of the run.")
        if config.max_iterations < checkpoint.iteration:
            raise ConfigError(f"max_iterations ({config.max_iterations}) is below the checkpoint's iteration "
                              f"({checkpoint.iteration}); give a target of at least {checkpoint.iteration}.")
    model_max = max_length_of(model)
    seq_len = config.seq_len or min(model_max, DEFAULT_MAX_WINDOW)
    if seq_len > model_max:
        raise ConfigError(f"seq_len ({seq_len}) exceeds the model's max_seq_len ({model_max}).")
    distributed.micro_batch_size(config.batch_size, config.grad_accum_steps)  # the global batch must split evenly
    defaults = training_defaults(model_config_of(model), config.max_iterations)
    return config.updated(seq_len=seq_len, **{k: v for k, v in defaults.items() if getattr(config, k) is None})


def resolve_corpus(texts, checkpoint: Checkpoint | None, run_dir: Path,
                   dataset: HubDataset | None = None) -> tuple[list[str], dict[str, Any]]:
    """Return the texts to train on and their description for the checkpoint (the run's own on resume)."""
    if texts is not None and dataset is not None:
        raise ConfigError("Give training texts or a Hub dataset, not both.")
    if texts is None and dataset is None and checkpoint is not None:
        saved = checkpoint.corpus
        if saved.get("source") == DATASET_SOURCE:
            dataset = HubDataset.from_record(saved)  # at the recorded revision
        elif saved.get("source") == "default":
            texts = default_corpus()
        else:
            file = saved.get("file", "")  # in the run directory, or at a Hub snapshot's root
            base = checkpoint.path.parent
            found = next((p for p in (base / file, base.parent / file, run_dir / file) if file and p.is_file()), None)
            if found is None:
                raise DataError(f"The corpus of {str(checkpoint.path)!r} is not stored beside it; pass texts=.")
            texts = load_texts(found)
    if dataset is not None:
        return dataset.texts(), dataset.record()
    if texts is None:
        texts = default_corpus()
        return texts, {"source": "default", "fingerprint": fingerprint(texts), "num_texts": 1}
    texts = check_texts(texts)
    digest = fingerprint(texts)
    source = "default" if digest == fingerprint(default_corpus()) else "custom"
    return texts, {"source": source, "fingerprint": digest, "num_texts": len(texts)}


def decay_restart(checkpoint: Checkpoint, config: TrainConfig, verify: bool = True) -> Checkpoint | None:
    """The run's ``model_predecay`` checkpoint to continue from instead of ``checkpoint``, when that one ended a
    wsd run's decay and ``config`` extends the run with the default re-warm: the extension then re-plans the decay
    for the new target from where it began, rather than re-warming a decayed model. None otherwise (or when that
    checkpoint is gone or unreadable: the extension re-warms as for the other schedules). ``verify``: check its
    files' checksums (a resume does; a preview reads only its plan and history)."""
    plan = checkpoint.plan()
    start = plan.decay_start()
    if (config.extend_schedule != "rewarm" or config.lr_schedule != "wsd" or start is None
            or not plan.max_iterations <= checkpoint.iteration < config.max_iterations):
        return None
    path = checkpoint.path.parent / checkpoint_name("predecay", start)
    try:
        earlier = Checkpoint.open(path, verify=verify) if path.is_dir() else None
    except CheckpointError:
        log.warning("%s is unreadable; extending with a re-warm instead", path)
        return None
    return earlier if earlier is not None and earlier.run_id == checkpoint.run_id else None


def new_optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    """Return AdamW with weight decay on the matrices only (fused where the model's device has the kernel)."""
    device = next(model.parameters()).device
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), fused=precision.fused_adamw(device) or None)


def checkpoint_bytes(model) -> int:
    """Room a run needs for its checkpoints: weights and two AdamW moments, twice (one being written) plus 1 MiB."""
    return 2 * 3 * sum(p.numel() * p.element_size() for p in model.parameters()) + 2**20


def prepare_run(model, tokenizer, device: torch.device, texts, max_iterations: int | None, run_dir: Path,
                checkpoint: Checkpoint | None, load_optimizer: bool, settings: dict[str, Any], *,
                weights_loaded: bool = False, dataset: HubDataset | None = None,
                reward_fn: RewardFn | None = None) -> Run:
    """Return a run ready for its first step; raises ConfigError, DataError or CheckpointError for bad input.

    On resume the checkpoint's weights are loaded into ``model`` unless ``weights_loaded`` says they already are.
    ``reward_fn`` replaces the reward functions the settings name (it is not recorded in checkpoints).
    """
    config = resolve_config(checkpoint, max_iterations, settings, model)
    earlier = decay_restart(checkpoint, config) if checkpoint is not None else None
    if earlier:
        checkpoint, weights_loaded = earlier, False
    precision.check(config.precision, device)
    texts, corpus = resolve_corpus(texts, checkpoint, run_dir, dataset)
    windows = TokenWindows.from_texts(texts, tokenizer, config.seq_len)
    vocab = model.get_input_embeddings().num_embeddings
    if int(windows.train.max()) >= vocab:
        raise ConfigError(f"The tokenizer produces ids up to {int(windows.train.max())} but the model's "
                          f"vocab_size is {vocab}; build the model with vocab_size >= len(tokenizer).")
    run_id, adopt = (checkpoint.run_id if checkpoint else None), False
    if checkpoint is not None and run_id is None:  # format 1 has no run id: its own directory becomes the run
        adopt = checkpoint.path.parent.resolve() == run_dir.resolve()
        existing = runs.read_run(run_dir) if adopt else None
        run_id = existing.id if existing else uuid.uuid4().hex
    runs.check_room(run_dir, checkpoint_bytes(model))  # before anything is written there
    base_model = getattr(model.config, "_name_or_path", None) or None

    def open_run() -> tuple[runs.RunInfo, str | None]:  # rank 0 writes; every process gets its run id
        info = runs.open_run(run_dir, run_id=run_id, seed=config.seed, corpus=corpus, adopt=adopt,
                             base_model=base_model)  # a dataset is not copied: its record names the revision
        return info, (save_corpus(texts, run_dir) if corpus["source"] == "custom" else None)
    info, corpus_file = distributed.from_main(open_run)
    if corpus_file:
        corpus["file"] = corpus_file
    optimizer = new_optimizer(model, config)
    sampler = ResumableSampler(len(windows.train), config.seed)
    rewards = RewardSet([(getattr(reward_fn, "__name__", "reward_fn"), reward_fn, 1.0)]) if reward_fn else \
        build_rewards(config.rewards, tokenizer, windows.train.reshape(-1))
    run = Run(config, run_dir, windows, rewards, optimizer, TrainState(
        info.id, 0, History(), sampler, LRPlan.fresh(config.lr_schedule, config.lr, config.min_lr_ratio,
                                                     config.warmup, config.max_iterations), corpus),
              scaler=precision.new_scaler(config.precision, device))
    if earlier:
        run.warnings.append(f"Re-planned the wsd decay for the new target from {earlier.path.name}, where the "
                            "decay began: the decayed iterations are trained again at the stable LR.")
    if checkpoint is None:
        rng.seed_all(distributed.rank_seed(config.seed))
    else:
        run.left_ahead = runs.later_checkpoints(run_dir, checkpoint.iteration)
        run.warnings += _later_note(checkpoint.iteration, run.left_ahead)
        if not weights_loaded:
            checkpoint.load_weights(model)
        _restore(run, checkpoint, device, load_optimizer, settings.get("lr"))
    return run


def _later_note(iteration: int, later: list[str]) -> list[str]:
    """A warning when the run already went past ``iteration`` (to the ``later`` checkpoints): what resuming there
    does to them."""
    if not later:
        return []
    shown = ", ".join(later[:3]) + (f" and {len(later) - 3} more" if len(later) > 3 else "")
    return [f"This run already has checkpoints after iteration {iteration}: {shown}. Continuing from iteration "
            f"{iteration} replaces any of them it saves again under the same name and deletes none of the others; "
            "to keep them all, copy them elsewhere first, or continue as a new run (the CLI's --run NAME, "
            "the app's new run name)."]


def _restore(run: Run, checkpoint: Checkpoint, device: torch.device, load_optimizer: bool,
             new_lr: float | None) -> None:
    """Continue ``run`` from a verified checkpoint whose weights are loaded: optimizer, plan, RNG, data position,
    history."""
    state, config = run.state, run.config
    if load_optimizer and checkpoint.has_optimizer:
        run.optimizer.load_state_dict(checkpoint.optimizer_state(device))
    elif load_optimizer:
        run.warnings.append("The checkpoint has no optimizer state; starting a fresh optimizer.")
    rng_state, notes = distributed.rank_rng(checkpoint.rng_state())
    if rng_state is None:
        rng.seed_all(distributed.rank_seed(config.seed) + checkpoint.iteration)
    else:
        notes += rng.restore(rng_state, device)
    run.warnings += notes
    if run.scaler is not None and checkpoint.state.get("grad_scaler"):
        run.scaler.load_state_dict(checkpoint.state["grad_scaler"])
    position = checkpoint.data_position
    if checkpoint.corpus.get("fingerprint") == state.corpus["fingerprint"] and \
            position.get("num_samples") == len(run.windows.train):
        state.sampler.load_state_dict(position)
    else:
        run.warnings.append("The texts differ from the checkpoint's corpus; continuing with a fresh data order.")
    versions = checkpoint.state.get("versions", {})
    if versions.get("torch") != torch.__version__ or versions.get("transformers") != transformers.__version__:
        run.warnings.append("Resumed with other library versions than the checkpoint's; exact reproduction "
                            "is not guaranteed.")
    saved_device = checkpoint.state.get("device_type", "cpu")
    if saved_device != device.type:
        run.warnings.append(f"Resumed on {device.type} a checkpoint saved on {saved_device}; exact reproduction "
                            "is not guaranteed.")
    state.plan = checkpoint.plan().replanned(checkpoint.iteration, config.max_iterations, new_lr,
                                             config.min_lr_ratio, config.lr_schedule,
                                             config.extend_schedule)
    state.iteration, state.history = checkpoint.iteration, checkpoint.history()
    for name in ("loss", "val_loss", "reward", "best_val_loss"):
        setattr(state, name, checkpoint.state.get(name))
    state.reward_components = dict(checkpoint.state.get("reward_components") or {})
    state.reward_std, state.kl = checkpoint.state.get("reward_std"), checkpoint.state.get("kl")
    state.samples = list(checkpoint.state.get("samples") or [])
    state.quality = dict(checkpoint.state.get("quality") or {})
    tensors = checkpoint.reference_tensors()
    if tensors is not None:
        state.reference = Reference({k: v.to(device) for k, v in tensors.items()},
                                    checkpoint.state.get("reference_iteration"))
    run.last_checkpoint = str(checkpoint.path)
