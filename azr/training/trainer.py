"""AZRTrainer: supervised next-token training with periodic GRPO self-play, as a generator of statuses.

One iteration is one optimizer step on one batch. Every ``self_play_every`` iterations the model samples groups
of continuations of prompts from the corpus, the reward functions score them, and the GRPO gradient (see
:mod:`azr.rl.grpo`) is blended into that step's LM gradient at the share ``rl_weight``. Everything the loop
carries between iterations is saved in checkpoints, so that a stopped run resumed with the same settings continues
bit for bit.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.history import History
from azr.data.hub_datasets import HubDataset
from azr.errors import AZRError, ConfigError
from azr.hub.http import check_repo_id
from azr.hub.pending import PushTarget
from azr.hub.sync import open_checkpoint
from azr.rl.rewards import RewardFn
from azr.rl.selfplay import held_out_reward
from azr.training import distributed
from azr.training.callbacks import HubPush, TrainerCallback, end_messages
from azr.training.checkpointing import RunSaves
from azr.training.determinism import DETERMINISTIC_RUNS
from azr.training.losses import validation_loss
from azr.training.quality import greedy_measures
from azr.training.reporting import report_targets
from azr.training.saving import CheckpointSaver, StepSnapshot
from azr.training.session import (
    Run,
    check_architecture,
    lock_run,
    prepare_run,
    run_hooks,
)
from azr.training.signals import ForcedExit, graceful_stop
from azr.training.status import StatusClock, TrainingStatus
from azr.training.step import Stepper


def _same_path(ref: str | Path, path: Path) -> bool:
    """True when a resume reference names the checkpoint directory ``path`` (a Hub reference never does)."""
    return not str(ref).startswith("hf://") and Path(ref).expanduser().resolve() == path.resolve()


def resolve_device(device: str | torch.device) -> torch.device:
    """Return the torch device for "auto" (CUDA, then MPS, then CPU) or a named device."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class AZRTrainer:
    """Trains a causal LM with the AZR method; ``train()`` yields :class:`TrainingStatus` objects.

    Args:
        model: a transformers causal LM (e.g. from :func:`azr.build_model`).
        tokenizer: its tokenizer (e.g. from :func:`azr.train_tokenizer`).
        device: "auto", "cpu", "cuda", ...
        status_callback: called with every status the run yields.
        reward_fn: optional reward function ``fn(prompts, completions, **kwargs) -> list[float]`` replacing the
            ``rewards`` setting (not recorded in checkpoints: name it by import path there to have it recorded).
        callbacks: extra :class:`~azr.training.callbacks.TrainerCallback` hooks for every run.
    """

    def __init__(self, model, tokenizer, device: str | torch.device = "auto", status_callback=None,
                 reward_fn: RewardFn | None = None, callbacks: list[TrainerCallback] | None = None) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.status_callback = status_callback
        self.reward_fn = reward_fn
        self.callbacks = list(callbacks or [])
        self.history: History = History()
        self.last_status: TrainingStatus | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._stop = threading.Event()
        self._stop_kind = "paused"
        self._loaded: Checkpoint | None = None  # opened by from_checkpoint/load_checkpoint, weights in place
        self._load_optimizer = True
        self._saver = CheckpointSaver(self.model, tokenizer, self.device)
        self._stepper = Stepper(self.model, tokenizer, self.device)

    @classmethod
    def from_checkpoint(cls, ref: str | Path | Checkpoint, device: str | torch.device = "auto",
                        hub_token: str | None = None,
                        **kwargs) -> AZRTrainer:
        """Return a trainer whose model and tokenizer are built from the checkpoint, ready to resume it.

        ``ref`` may be a Hub reference (``hf://user/run[/name]``) or an opened Checkpoint. Raises
        CheckpointError when the checkpoint is missing or invalid, HubError when it cannot be fetched.
        """
        checkpoint = open_checkpoint(ref, token=hub_token)
        model, tokenizer = checkpoint.load_model(trainable=True)  # a LoRA checkpoint: its base model and adapter
        trainer = cls(model, tokenizer, device=device, **kwargs)
        trainer.history = checkpoint.history()
        trainer._loaded = checkpoint
        return trainer

    def load_checkpoint(self, ref: str | Path, load_optimizer: bool = True,
                        hub_token: str | None = None) -> Checkpoint:
        """Make a checkpoint the point the next ``train()`` resumes from, and load its weights now.

        Returns the opened :class:`~azr.checkpoints.checkpoint.Checkpoint`. Raises CheckpointError for a missing or
        invalid checkpoint or one whose architecture differs from the model (nothing is changed then).
        """
        checkpoint = open_checkpoint(ref, token=hub_token)
        check_architecture(checkpoint, self.model)
        checkpoint.load_weights(self.model)
        self.history = checkpoint.history()
        self._loaded, self._load_optimizer = checkpoint, load_optimizer
        return checkpoint

    def stop_training(self) -> None:
        """Ask the run to stop after the current batch and save ``model_paused_<N>``; safe from any thread."""
        self._stop_kind = "paused"
        self._stop.set()

    stop = stop_training

    def interrupt(self) -> None:
        """Like :meth:`stop_training`, but the checkpoint is ``model_interrupted_<N>`` (used for signals)."""
        self._stop_kind = "interrupted"
        self._stop.set()

    def train(self, texts: list[str] | None = None, max_iterations: int | None = None,
              checkpoint_dir: str | Path = "checkpoints", resume_from: str | Path | None = None, *,
              load_optimizer: bool = True, time_budget_s: float | None = None, hub_repo_id: str | None = None,
              hub_token: str | None = None, hub_private: bool = True, hub_push_corpus: bool = True,
              hub_flush_timeout_s: float = 60.0, dataset: str | HubDataset | None = None,
              report_to: str | list[str] = "none", **settings: Any) -> Iterator[TrainingStatus]:
        """Prepare a run and return a generator of statuses that trains while it is iterated.

        ``checkpoint_dir`` is the run's directory: a new run refuses one that holds another run's checkpoints.
        ``settings`` are :class:`TrainConfig` fields; on resume, settings not given are the checkpoint's.
        ``resume_from`` may be a local checkpoint or ``hf://user/run[@rev][/name]``. ``dataset`` (instead of
        ``texts``) trains on a Hub dataset, ``"user/name[:config]"`` or a
        :class:`~azr.data.hub_datasets.HubDataset`; its revision is pinned in the run, and a resume loads the run's
        dataset at that revision. ``report_to``
        ("none", "tensorboard", "trackio" or a list) reports the scalars of every status and checkpoint. The
        generator yields every ``status_every`` iterations and at every state change. With ``hub_repo_id`` every
        checkpoint is pushed to that repo in the background (``status.pushes``), after what the run has pending
        from before; at the end pushes get up to ``hub_flush_timeout_s``, and what is left stays pending in the
        run. Raises ConfigError, DataError, CheckpointError or HubError (a bad repo id) before anything changes.
        """
        targets = report_targets(report_to)
        if time_budget_s is not None and not time_budget_s > 0:
            raise ConfigError(f"time_budget_s must be a positive number of seconds, got {time_budget_s!r}.")
        target = PushTarget(check_repo_id(hub_repo_id), hub_private, hub_push_corpus) if hub_repo_id else None
        self._stop.clear()
        self._stop_kind = "paused"
        checkpoint, loaded = self._loaded, self._loaded is not None
        if checkpoint is not None:
            load_optimizer = load_optimizer and self._load_optimizer
        if resume_from is not None and (checkpoint is None or not _same_path(resume_from, checkpoint.path)):
            checkpoint, loaded = open_checkpoint(resume_from, token=hub_token), False
        if checkpoint is not None and not loaded:
            check_architecture(checkpoint, self.model)
        run = prepare_run(self.model, self.tokenizer, self.device, texts, max_iterations, Path(checkpoint_dir),
                          checkpoint, load_optimizer, settings, weights_loaded=loaded, reward_fn=self.reward_fn,
                          dataset=HubDataset.parse(dataset) if isinstance(dataset, str) else dataset)
        lock_run(run)  # before anything (a report's files) is written in the run
        try:
            callbacks = run_hooks(self.callbacks, run, targets, time_budget_s, target, hub_token, hub_flush_timeout_s)
            self._loaded, self._load_optimizer = None, True
            self.optimizer, self.history = run.optimizer, run.state.history
            if run.config.deterministic:
                DETERMINISTIC_RUNS.hold(run)
            self._stepper.forward = distributed.wrap(self.model, self.device)
            if run.config.compile:
                self._stepper.forward = torch.compile(self._stepper.forward)
        except BaseException:
            DETERMINISTIC_RUNS.release(run)
            if run.lock is not None:
                run.lock.release()
            raise
        return self._loop(run, callbacks)

    def train_continuous(self, texts: list[str] | None = None, max_iterations: int | None = None,
                         checkpoint_dir: str | Path = "checkpoints", resume_from: str | Path | None = None,
                         **kwargs: Any) -> list[dict[str, Any]]:
        """Train to the end (or until stopped) and return the full history as a list of dicts (the seed
        trainer's API; ``trainer.history`` is the same records as a columnar sequence).

        Called from the main thread, Ctrl+C and SIGTERM save ``model_interrupted_<N>`` and stop cleanly.
        """
        with graceful_stop(self):
            for _ in self.train(texts, max_iterations, checkpoint_dir, resume_from, **kwargs):
                pass
        return list(self.history)

    def _loop(self, run: Run, callbacks: list[TrainerCallback]) -> Iterator[TrainingStatus]:
        state, config, clock = run.state, run.config, StatusClock()
        snapshot, saves, finished = StepSnapshot(), RunSaves(self._saver, run, callbacks), False
        try:
            if config.async_save:
                self._saver.open_background()
            opening = f"Resumed at iteration {state.iteration}" if state.iteration else "Started"
            yield self._emit(run, clock, callbacks, "running", f"{opening}; training to {config.max_iterations}.")
            while state.iteration < config.max_iterations:
                yield from self._reports(run, clock, callbacks, saves, wait=False)
                kind = distributed.agree(self._stop_kind if self._stop.is_set() else
                                         "paused" if any(c.should_pause() for c in callbacks) else None)
                if kind is not None:
                    path = saves.save(kind, snapshot)
                    yield from self._reports(run, clock, callbacks, saves, wait=False)
                    finished = True
                    yield self._final(run, clock, callbacks, kind,
                                      f"{kind.capitalize()} at iteration {state.iteration}; saved {path.name}.")
                    return
                self._stepper.step(run, snapshot)
                clock.count()
                for callback in callbacks:
                    callback.on_step(state.iteration)
                yield from self._after_step(run, clock, callbacks, saves, snapshot)
            yield from self._reports(run, clock, callbacks, saves, wait=True)
            finished = True
            done = "Completed" if clock.steps else "Already at the target of"
            yield self._final(run, clock, callbacks, "completed", f"{done} {config.max_iterations} iterations.")
        except GeneratorExit:
            if not finished:  # closed early: a requested interrupt keeps its name
                saves.save(self._stop_kind if self._stop.is_set() else "paused", snapshot, local=True)
                end_messages(callbacks)
            raise
        except ForcedExit:  # a second Ctrl+C: exit at once, write nothing
            raise
        except KeyboardInterrupt:
            saves.save("interrupted", snapshot, local=True)
            raise
        except Exception as exc:
            finished = True
            saved = saves.save_error(snapshot)
            yield self._final(run, clock, callbacks, "error",
                              f"Training failed at iteration {state.iteration}: {str(exc).rstrip('.')}{saved}.")
            if isinstance(exc, AZRError):  # the user's error names the checkpoint that holds the last good state
                raise type(exc)(self.last_status.message) from exc
            raise
        finally:
            self._close(run, callbacks)

    def _after_step(self, run: Run, clock: StatusClock, callbacks, saves: RunSaves,
                    snapshot: StepSnapshot) -> Iterator[TrainingStatus]:
        """What follows a step: validation (and the best checkpoint), the checkpoints it is due, its status."""
        state, config = run.state, run.config
        if config.val_every and state.iteration % config.val_every == 0:
            self._validate(run)
            if config.keep_best and (state.best_val_loss is None or state.val_loss < state.best_val_loss):
                state.best_val_loss = state.val_loss
                saves.save("best", snapshot)
        if state.iteration == state.plan.decay_start():  # where a later extension re-plans the decay
            saves.save("predecay", snapshot)
        if state.iteration % config.save_every == 0 or state.iteration == config.max_iterations:
            saves.save("iter", snapshot)
            yield from self._reports(run, clock, callbacks, saves, wait=False)
        if state.iteration % config.status_every == 0 and state.iteration < config.max_iterations:
            yield self._emit(run, clock, callbacks, "running")

    def _validate(self, run: Run) -> None:
        """Validation loss, greedy text quality and, with self-play on, its held-out reward; kept in the history."""
        state, config = run.state, run.config
        with self._stepper.autocast(config):
            state.val_loss = validation_loss(self.model, run.windows.val[: config.val_windows])
            state.heldout_reward = held_out_reward(self.model, self.tokenizer, run.windows.val, run.rewards, config,
                                                   state.iteration) if config.self_play_every else None
        state.quality = greedy_measures(self.model, run.windows.val, self.tokenizer.eos_token_id)
        measured = {"val_loss": state.val_loss, "heldout_reward": state.heldout_reward, **state.quality}
        for name, value in measured.items():
            state.history.set_last(name, value)

    def _close(self, run: Run, callbacks: list[TrainerCallback]) -> None:
        """A run's end, however it ends: the writer, staged memory, last gradients, hooks and run lock let go."""
        self._saver.close()
        run.optimizer.zero_grad(set_to_none=True)
        DETERMINISTIC_RUNS.release(run)
        for callback in callbacks:
            callback.close()
        if run.lock is not None:
            run.lock.release()

    def _reports(self, run: Run, clock: StatusClock, callbacks, saves: RunSaves,
                 wait: bool) -> Iterator[TrainingStatus]:
        """Report the saves written since the last report, after collecting the one that ended (``wait``: in flight)."""
        saves.collect(wait)
        for path in saves.unreported():
            yield self._emit(run, clock, callbacks, "checkpoint", f"Saved {path.name}.")

    def _final(self, run: Run, clock: StatusClock, callbacks, state: str, message: str) -> TrainingStatus:
        """The run's last status: its message ends with what the hooks report (e.g. pushes)."""
        return self._emit(run, clock, callbacks, state, " ".join(filter(None, [message, end_messages(callbacks)])))

    def _emit(self, run: Run, clock: StatusClock, callbacks, state: str, message: str = "") -> TrainingStatus:
        status = clock.status(run, state, message, self.device, pushes=next(
            (c.uploader.states() for c in callbacks if isinstance(c, HubPush)), {}))
        self.last_status = status
        for callback in callbacks:
            callback.on_status(status)
        if self.status_callback is not None:
            self.status_callback(status)
        return status
