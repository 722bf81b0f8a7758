"""AZRTrainer: supervised next-token training with periodic self-play and REINFORCE, as a generator of statuses.

One iteration is one optimizer step on one batch. Every ``self_play_every`` iterations the model samples
continuations of prompts from the corpus, the reward scores them, and a REINFORCE loss on the generated tokens
is added to that step's loss with weight ``rl_weight``. Everything the loop carries between iterations is saved
in checkpoints, so that a stopped run resumed with the same settings continues bit for bit.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .callbacks import HubPush, Rotation, TimeBudget, TrainerCallback
from .checkpoint import Checkpoint
from .errors import ConfigError
from .history import History
from .reward import RewardFn
from .saving import CheckpointSaver, StepSnapshot
from .losses import next_token_loss, validation_loss
from .quality import greedy_measures
from .selfplay import reinforce_loss, self_play_round
from .session import Run, check_architecture, prepare_run
from .signals import ForcedExit, graceful_stop
from .status import StatusClock, TrainingStatus
from .uploader import HubUploader

log = logging.getLogger(__name__)



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
        reward_fn: optional ``reward_fn(texts) -> list[float]`` replacing the six-component reward.
        callbacks: extra :class:`~azr.callbacks.TrainerCallback` hooks for every run.
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

    @classmethod
    def from_checkpoint(cls, ref: str | Path | Checkpoint, device: str | torch.device = "auto",
                        hub_token: str | None = None,
                        **kwargs) -> AZRTrainer:
        """Return a trainer whose model and tokenizer are built from the checkpoint, ready to resume it.

        ``ref`` may be a Hub reference (``hf://user/run[/name]``) or an opened Checkpoint. Raises
        CheckpointError when the checkpoint is missing or invalid, HubError when it cannot be fetched.
        """
        checkpoint = Checkpoint.open(ref, token=hub_token)
        model = AutoModelForCausalLM.from_pretrained(checkpoint.path, dtype=torch.float32)
        trainer = cls(model, AutoTokenizer.from_pretrained(checkpoint.path), device=device, **kwargs)
        trainer.history = checkpoint.history()
        trainer._loaded = checkpoint
        return trainer

    def load_checkpoint(self, ref: str | Path, load_optimizer: bool = True,
                        hub_token: str | None = None) -> Checkpoint:
        """Make a checkpoint the point the next ``train()`` resumes from, and load its weights now.

        Returns the opened :class:`~azr.checkpoint.Checkpoint`. Raises CheckpointError for a missing or invalid
        checkpoint or one whose architecture differs from the model (nothing is changed then).
        """
        checkpoint = Checkpoint.open(ref, token=hub_token)
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
              hub_flush_timeout_s: float = 60.0, **settings: Any) -> Iterator[TrainingStatus]:
        """Prepare a run and return a generator of statuses that trains while it is iterated.

        ``checkpoint_dir`` is the run's directory: a new run refuses one that holds another run's checkpoints.
        ``settings`` are :class:`TrainConfig` fields; on resume, settings not given are the checkpoint's.
        ``resume_from`` may be a local checkpoint or ``hf://user/run[@rev][/name]``. The generator yields
        every ``status_every`` iterations and at every state change. With ``hub_repo_id`` every checkpoint is
        pushed to that repo in the background (``status.pushes``); at the end pending pushes get up to
        ``hub_flush_timeout_s``. Raises ConfigError, DataError or CheckpointError before anything is changed.
        """
        if time_budget_s is not None and not time_budget_s > 0:
            raise ConfigError(f"time_budget_s must be a positive number of seconds, got {time_budget_s!r}.")
        self._stop.clear()
        self._stop_kind = "paused"
        checkpoint, loaded = self._loaded, self._loaded is not None
        if checkpoint is not None:
            load_optimizer = load_optimizer and self._load_optimizer
        if resume_from is not None and (checkpoint is None or not _same_path(resume_from, checkpoint.path)):
            checkpoint, loaded = Checkpoint.open(resume_from, token=hub_token), False
        if checkpoint is not None and not loaded:
            check_architecture(checkpoint, self.model)
        run = prepare_run(self.model, self.tokenizer, self.device, texts, max_iterations, Path(checkpoint_dir),
                          checkpoint, load_optimizer, settings, weights_loaded=loaded)
        callbacks = [*self.callbacks, Rotation(run.run_dir, run.config.keep_last)]
        if time_budget_s is not None:
            callbacks.append(TimeBudget(time_budget_s))
        if hub_repo_id:
            uploader = HubUploader(hub_repo_id, hub_token, hub_private, hub_push_corpus)
            callbacks.append(HubPush(uploader, run.run_dir, hub_flush_timeout_s))
        self._loaded, self._load_optimizer = None, True
        self.optimizer, self.history = run.optimizer, run.state.history
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

    # ------------------------------------------------------------------ the loop

    def _loop(self, run: Run, callbacks: list[TrainerCallback]) -> Iterator[TrainingStatus]:
        state, config, clock = run.state, run.config, StatusClock()
        snapshot = StepSnapshot()
        finished = False
        try:
            opening = f"Resumed at iteration {state.iteration}" if state.iteration else "Started"
            yield self._emit(run, clock, callbacks, "running", f"{opening}; training to {config.max_iterations}.")
            while state.iteration < config.max_iterations:
                if self._stop.is_set() or any(c.should_pause() for c in callbacks):
                    kind = self._stop_kind if self._stop.is_set() else "paused"
                    path = self._save(run, kind, callbacks, snapshot)
                    finished = True
                    yield self._final(run, clock, callbacks, kind,
                                      f"{kind.capitalize()} at iteration {state.iteration}; saved {path.name}.")
                    return
                self._step(run, snapshot)
                clock.count()
                if config.val_every and state.iteration % config.val_every == 0:
                    state.val_loss = validation_loss(self.model, run.windows.val[: config.val_windows])
                    state.history.set_last("val_loss", state.val_loss)
                    state.quality = greedy_measures(self.model, run.windows.val, self.tokenizer.eos_token_id)
                    for name, value in state.quality.items():
                        state.history.set_last(name, value)
                    if state.best_val_loss is None or state.val_loss < state.best_val_loss:
                        state.best_val_loss = state.val_loss
                        self._save(run, "best", callbacks, snapshot)
                if state.iteration % config.save_every == 0 or state.iteration == config.max_iterations:
                    path = self._save(run, "iter", callbacks, snapshot)
                    yield self._emit(run, clock, callbacks, "checkpoint", f"Saved {path.name}.")
                if state.iteration % config.status_every == 0 and state.iteration < config.max_iterations:
                    yield self._emit(run, clock, callbacks, "running")
            finished = True
            done = "Completed" if clock.steps else "Already at the target of"
            yield self._final(run, clock, callbacks, "completed", f"{done} {config.max_iterations} iterations.")
        except GeneratorExit:
            if not finished:  # closed early: a requested interrupt keeps its name
                self._save(run, self._stop_kind if self._stop.is_set() else "paused", callbacks, snapshot)
                self._end(callbacks)
            raise
        except ForcedExit:  # a second Ctrl+C: exit at once, write nothing
            raise
        except KeyboardInterrupt:
            self._save(run, "interrupted", callbacks, snapshot)
            raise
        except Exception as exc:
            finished = True
            path = self._save(run, "error", callbacks, snapshot)
            saved = f"; saved {path.name}" if path else "; the step was cut mid-update, so nothing was saved"
            yield self._final(run, clock, callbacks, "error",
                              f"Training failed at iteration {state.iteration}: {exc}{saved}.")
            raise
        finally:
            for callback in callbacks:
                callback.close()

    def _step(self, run: Run, snapshot: StepSnapshot) -> None:
        """One optimizer step on one batch, with self-play on every ``self_play_every``-th iteration."""
        state, config = run.state, run.config
        snapshot.begin(state, self.device)  # until the update starts, a save stores the state from before
        lr = state.plan.lr_at(state.iteration)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        batch = run.windows.draw(state.sampler, config.batch_size, config.sampling).to(self.device)
        self.model.train()
        lm_loss = self._lm_loss(batch)
        loss, reward = lm_loss, None
        if config.self_play_every and (state.iteration + 1) % config.self_play_every == 0:
            rollout, rewards, components = self_play_round(
                self.model, self.tokenizer, run.windows.train, run.stats, config, state.iteration, self.reward_fn)
            reward = float(rewards.mean())
            loss = lm_loss + config.rl_weight * reinforce_loss(self.model, rollout, rewards)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        snapshot.updating()  # from here until the bookkeeping is done, no consistent checkpoint exists
        run.optimizer.step()
        state.iteration += 1
        state.loss = float(lm_loss.detach())
        if reward is not None:
            state.reward, state.reward_components = reward, components
        state.history.append({"iteration": state.iteration, "loss": state.loss, "reward": reward, "lr": lr,
                              "time": time.time()})
        snapshot.end()

    def _lm_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Return the mean next-token cross-entropy over the tokens of ``batch``."""
        return next_token_loss(self.model, batch)

    # ------------------------------------------------------------------ saving and reporting

    def _save(self, run: Run, kind: str, callbacks: list[TrainerCallback], snapshot: StepSnapshot) -> Path | None:
        """Save ``model_<kind>_<iteration>`` and run the hooks; None when a step was cut mid-update."""
        path = self._saver.save(run, kind, snapshot)
        if path is not None:
            run.last_checkpoint = str(path)
            for callback in callbacks:
                callback.on_save(path, kind)
        return path

    def _final(self, run: Run, clock: StatusClock, callbacks, state: str, message: str) -> TrainingStatus:
        """The run's last status: its message ends with what the hooks report (e.g. pushes)."""
        return self._emit(run, clock, callbacks, state, " ".join(filter(None, [message, self._end(callbacks)])))

    @staticmethod
    def _end(callbacks: list[TrainerCallback]) -> str:
        return " ".join(filter(None, (callback.on_end() for callback in callbacks)))

    def _emit(self, run: Run, clock: StatusClock, callbacks, state: str, message: str = "") -> TrainingStatus:
        status = clock.status(run, state, message, self.device, pushes=next(
            (c.uploader.states() for c in callbacks if isinstance(c, HubPush)), {}))
        self.last_status = status
        if self.status_callback is not None:
            self.status_callback(status)
        return status
