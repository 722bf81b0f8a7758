"""Setting up one call to ``AZRTrainer.train``: settings, corpus, token windows, optimizer, and the state to start
from (fresh, or restored from a checkpoint). Everything here runs before the first step and changes nothing on disk
but the new run directory (its stored corpus and token file); bad input raises before that.
"""
from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers

from azr.checkpoints import containment, runs
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.history import History
from azr.checkpoints.names import checkpoint_name
from azr.config import FIXED_ON_RESUME, TrainConfig, default_seq_len, training_defaults
from azr.config.rewards import parse_rewards
from azr.config.schedule import LRPlan
from azr.data.corpus import (
    ResumableSampler,
    Texts,
    TokenWindows,
    check_texts,
    default_corpus,
    describe,
    fingerprint,
    save_corpus,
    texts_of,
)
from azr.data.encoder_process import encode
from azr.data.files import TextFiles
from azr.data.hub_datasets import SOURCE as DATASET_SOURCE
from azr.data.hub_datasets import HubDataset
from azr.data.tokens import TOKENS_DIR, TokenFile
from azr.errors import CheckpointError, ConfigError, DataError
from azr.hub.pending import PushTarget
from azr.models.causal_lm import architecture_differences, max_length_of, model_config_of
from azr.rl.rewards import RewardFn, RewardSet, build_rewards
from azr.training import distributed, precision, rng
from azr.training.callbacks import HubPush, Rotation, TimeBudget, TrainerCallback
from azr.training.reporting import reporters
from azr.training.state import TrainState

log = logging.getLogger(__name__)

REWARD_CORPUS_TOKENS = 2**22  # the reward functions' corpus: at most this many training tokens (evenly spaced windows)
STORED_RECORD = ("source", "fingerprint", "num_texts")  # what a resume from a stored corpus keeps of its record


@dataclass
class Run:
    """One call to train(): its settings, data, optimizer and the state a checkpoint captures."""

    config: TrainConfig
    run_dir: Path
    windows: TokenWindows
    rewards: RewardSet
    optimizer: torch.optim.Optimizer
    state: TrainState
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
    seq_len = config.seq_len or default_seq_len(model_max)
    if seq_len > model_max:
        raise ConfigError(f"seq_len ({seq_len}) exceeds the model's max_seq_len ({model_max}).")
    distributed.micro_batch_size(config.batch_size, config.grad_accum_steps)  # the global batch must split evenly
    defaults = training_defaults(model_config_of(model), config.max_iterations)
    return config.updated(seq_len=seq_len, **{k: v for k, v in defaults.items() if getattr(config, k) is None})


def resolve_corpus(texts, checkpoint: Checkpoint | None, run_dir: Path,
                   dataset: HubDataset | None = None) -> tuple[Texts, dict[str, Any]]:
    """Return the texts to train on and their description for the checkpoint (the run's own on resume).

    The texts of a run's stored corpus come as a function that reads them: a resume whose token file is there
    never needs them (that file holds the ids of the texts with the recorded fingerprint)."""
    if texts is not None and dataset is not None:
        raise ConfigError("Give training texts or a Hub dataset, not both.")
    if texts is None and dataset is None and checkpoint is not None:
        saved = checkpoint.corpus
        if saved.get("source") == DATASET_SOURCE:
            dataset = HubDataset.from_record(saved)  # at the recorded revision
        elif saved.get("source") == "default":
            texts = default_corpus()
        else:
            return _stored_corpus(checkpoint, run_dir), {key: saved[key] for key in STORED_RECORD if key in saved}
    if dataset is not None:
        return dataset.texts(), dataset.record()
    if texts is None:
        texts = default_corpus()
        return texts, {"source": "default", "fingerprint": fingerprint(texts), "num_texts": 1}
    texts = check_texts(texts)
    digest, count = describe(texts)
    source = "default" if digest == fingerprint(default_corpus()) else "custom"
    return texts, {"source": source, "fingerprint": digest, "num_texts": count}


def _stored_corpus(checkpoint: Checkpoint, run_dir: Path) -> Callable[[], TextFiles]:
    """A function reading the texts of the corpus a checkpoint's run stored (in its run directory, or at a Hub
    snapshot's root), read only inside those folders and only when they are the texts the checkpoint recorded;
    raises DataError now when there is no such file."""
    base = checkpoint.path.parent
    found = next(filter(None, (containment.corpus_file(checkpoint, root) for root in (base, base.parent, run_dir))),
                 None)
    if found is None:
        raise DataError(f"The corpus of {str(checkpoint.path)!r} is not stored beside it; pass texts=.")

    @functools.cache
    def read() -> TextFiles:
        texts = TextFiles(found)
        if fingerprint(texts) != checkpoint.corpus.get("fingerprint"):
            raise DataError(f"The corpus stored beside {str(checkpoint.path)!r} is not the one it was trained on "
                            "(its fingerprint differs); pass texts=.")
        return texts
    return read


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


def new_optimizer(model, config: TrainConfig, saved: dict[str, Any] | None = None) -> torch.optim.Optimizer:
    """AdamW, weight decay on matrices only; fused where the device has the kernel, or as the ``saved`` state was."""
    device = next(model.parameters()).device
    fused = (precision.fused_adamw(device) or None) if saved is None else precision.fused_as_saved(saved)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), fused=fused)


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
    cache = TokenFile.of(run_dir / TOKENS_DIR, corpus["fingerprint"], tokenizer)
    windows, fresh = _windows(texts, tokenizer, config, model, cache)
    if reward_fn is None and checkpoint is not None and settings.get("rewards") is None:
        _check_imported_rewards(config.rewards)
    rewards = RewardSet([(getattr(reward_fn, "__name__", "reward_fn"), reward_fn, 1.0)]) if reward_fn else \
        build_rewards(config.rewards, tokenizer, windows.train.flat(REWARD_CORPUS_TOKENS))
    run_id, adopt = _identity(checkpoint, run_dir)
    runs.check_room(run_dir, checkpoint_bytes(model))
    plan = LRPlan.fresh(config.lr_schedule, config.lr, config.min_lr_ratio, config.warmup, config.max_iterations)
    run = Run(config, run_dir, windows, rewards, new_optimizer(model, config), TrainState(
        run_id or "", 0, History(), ResumableSampler(len(windows.train), config.seed), plan, corpus,
        scaler=precision.new_scaler(config.precision, device)))
    if earlier:
        run.warnings.append(f"Re-planned the wsd decay for the new target from {earlier.path.name}, where the "
                            "decay began: the decayed iterations are trained again at the stable LR.")
    if checkpoint is not None:
        run.left_ahead = runs.later_checkpoints(run_dir, checkpoint.iteration)
        run.warnings += _later_note(checkpoint.iteration, run.left_ahead)
        if not weights_loaded:
            checkpoint.load_weights(model)
        _restore(run, model, checkpoint, device, load_optimizer, settings.get("lr"))
    _open(run, texts, adopt, getattr(model.config, "_name_or_path", None) or None,  # nothing refused the start
          lambda: cache.write(windows.tokens) if fresh else None)
    if checkpoint is None:
        rng.seed_all(distributed.rank_seed(config.seed))
    return run


def _check_imported_rewards(text: str) -> None:
    """Raise ConfigError when a checkpoint's reward setting names code to import: a resume imports only the code
    its user names (a checkpoint from elsewhere must not choose what runs)."""
    imported = [spec.target for spec in parse_rewards(text) if ":" in spec.target]
    if imported:
        raise ConfigError(f"The checkpoint's rewards import {', '.join(imported)}; a resume runs code only when you "
                          f"name it: pass rewards={text!r} (--rewards) to allow it, or choose built-in rewards.")


def _windows(texts: Texts, tokenizer, config: TrainConfig, model, cache: TokenFile) -> tuple[TokenWindows, bool]:
    """The run's token windows, read from its token file or tokenised anew (then True: the file is to be written
    once the start is accepted); raises ConfigError when the tokenizer's ids do not fit the model."""
    ids = cache.read()
    fresh = ids is None
    windows = TokenWindows.from_tokens(encode(texts_of(texts), tokenizer) if fresh else ids, config.seq_len)
    vocab = model.get_input_embeddings().num_embeddings
    if windows.max_id() >= vocab:
        raise ConfigError(f"The tokenizer produces ids up to {windows.max_id()} but the model's "
                          f"vocab_size is {vocab}; build the model with vocab_size >= len(tokenizer).")
    return windows, fresh


def _identity(checkpoint: Checkpoint | None, run_dir: Path) -> tuple[str | None, bool]:
    """The run id a start continues (None: a new run's) and whether a format-1 checkpoint's own directory becomes
    its run (format 1 has no run id)."""
    run_id, adopt = (checkpoint.run_id if checkpoint else None), False
    if checkpoint is not None and run_id is None:
        adopt = checkpoint.path.parent.resolve() == run_dir.resolve()
        existing = runs.read_run(run_dir) if adopt else None
        run_id = existing.id if existing else uuid.uuid4().hex
    return run_id, adopt


def _open(run: Run, texts: Texts, adopt: bool, base_model: str | None, store_tokens: Callable[[], None]) -> None:
    """Create (or reopen) the run's directory and store its corpus and token file: the start's first write, made
    once nothing can refuse it. Rank 0 writes; every process gets the run id."""
    corpus = run.state.corpus

    def open_run() -> tuple[runs.RunInfo, str | None]:
        info = runs.open_run(run.run_dir, run_id=run.state.run_id or None, seed=run.config.seed, corpus=corpus,
                             adopt=adopt, base_model=base_model)  # a dataset is not copied: its record names it
        store_tokens()
        return info, (save_corpus(texts, run.run_dir, corpus["fingerprint"]) if corpus["source"] == "custom"
                      else None)
    info, corpus_file = distributed.from_main(open_run)
    run.state.run_id = info.id
    if corpus_file:
        corpus["file"] = corpus_file


def lock_run(run: Run) -> None:
    """Take the run's lock: rank 0 takes it, and its refusal (another training writes the run) is every
    process's."""
    held: list[runs.RunLock] = []
    distributed.from_main(lambda: held.append(runs.RunLock(run.run_dir)))
    run.lock = held[0] if held else None


def run_hooks(user: list[TrainerCallback], run: Run, targets: list[str], time_budget_s: float | None,
              target: PushTarget | None, hub_token: str | None, hub_flush_timeout_s: float) -> list[TrainerCallback]:
    """The run's hooks: the user's, then (rank 0's) reports and rotation, the time budget, the Hub push."""
    callbacks = list(user)
    if distributed.is_main():  # in a process group, rank 0 alone reports, rotates and pushes
        callbacks += [*reporters(targets, run.run_dir, run.state.iteration),
                      Rotation(run.run_dir, run.config.keep_last, run.left_ahead)]
    if time_budget_s is not None:
        callbacks.append(TimeBudget(time_budget_s))
    push = HubPush.for_run(run.run_dir, target, hub_token, hub_flush_timeout_s) if distributed.is_main() else None
    return callbacks + ([push] if push else [])


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


def _restore(run: Run, model, checkpoint: Checkpoint, device: torch.device, load_optimizer: bool,
             new_lr: float | None) -> None:
    """Continue ``run`` from a verified checkpoint whose weights are loaded: optimizer, random generators and the
    train state (through :meth:`TrainState.load_state_dict`), its LR plan re-planned for the run's target."""
    state, config = run.state, run.config
    if load_optimizer and checkpoint.has_optimizer:
        saved = checkpoint.optimizer_state(device)
        run.optimizer = new_optimizer(model, config, saved)  # with the AdamW kernel the run was trained with
        run.optimizer.load_state_dict(saved)
    elif load_optimizer:
        run.warnings.append("The checkpoint has no optimizer state; starting a fresh optimizer.")
    rng_state, notes = distributed.rank_rng(checkpoint.rng_state())
    if rng_state is None:
        rng.seed_all(distributed.rank_seed(config.seed) + checkpoint.iteration)
    else:
        notes += rng.restore(rng_state, device)
    run.warnings += notes + state.load_state_dict(*checkpoint.train_state(), device) + _origin_notes(checkpoint, device)
    state.plan = state.plan.replanned(state.iteration, config.max_iterations, new_lr, config.min_lr_ratio,
                                      config.lr_schedule, config.extend_schedule)
    run.last_checkpoint = str(checkpoint.path)


def _origin_notes(checkpoint: Checkpoint, device: torch.device) -> list[str]:
    """Warnings when the checkpoint comes from other library versions or another kind of device."""
    notes = []
    versions = checkpoint.state.get("versions", {})
    if versions.get("torch") != torch.__version__ or versions.get("transformers") != transformers.__version__:
        notes.append("Resumed with other library versions than the checkpoint's; exact reproduction is not "
                     "guaranteed.")
    saved_device = checkpoint.state.get("device_type", "cpu")
    if saved_device != device.type:
        notes.append(f"Resumed on {device.type} a checkpoint saved on {saved_device}; exact reproduction is not "
                     "guaranteed.")
    return notes
