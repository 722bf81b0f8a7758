"""The app's single training job: a worker thread drives the trainer's generator; the UI reads snapshots.

One :class:`TrainingJob` per process. Every browser session and API client sees the same job, so a reloaded
page re-attaches to the run, and closing the browser does not stop it. Checkpoints are chosen by *name*
(``model_paused_120``, or ``hf://user/run/model_paused_120`` for the configured Hub repo), never by path.

Environment variables (read when the job is created):

- ``AZR_CHECKPOINT_DIR``: where checkpoints go. Default ``/data/checkpoints`` when ``/data`` exists and is
  writable (Hugging Face Spaces persistent storage), else ``./checkpoints``.
- ``AZR_HUB_REPO``: a Hub repo (``user/run``) whose checkpoints are listed beside the local ones.
- ``HF_TOKEN``: the Hub token used when none is given.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import checkpoint as ckpt
from . import hub
from .config import ModelConfig, TrainConfig
from .data import default_corpus
from .errors import AZRError, CheckpointError, ConfigError, HubError
from .model import build_model, load_pretrained, max_length_of
from .schedule import LRPlan
from .selfplay import generate
from .status import TrainingStatus
from .tokenizer import train_tokenizer
from .trainer import AZRTrainer

log = logging.getLogger(__name__)

CHECKPOINT_DIR_ENV = "AZR_CHECKPOINT_DIR"
HUB_REPO_ENV = "AZR_HUB_REPO"
SPACES_STORAGE = Path("/data")
PREVIEW_POINTS = 200  # points per part of the LR preview
BUSY = "A training run is already active; press Stop (or call /stop_training) and wait until it is paused."


def default_checkpoint_dir() -> Path:
    """Return ``$AZR_CHECKPOINT_DIR``, else ``/data/checkpoints`` on writable Spaces storage, else ``checkpoints``."""
    if os.environ.get(CHECKPOINT_DIR_ENV):
        return Path(os.environ[CHECKPOINT_DIR_ENV])
    if SPACES_STORAGE.is_dir() and os.access(SPACES_STORAGE, os.W_OK):
        return SPACES_STORAGE / "checkpoints"
    return Path("checkpoints")


@dataclass(frozen=True)
class HubSettings:
    """Where checkpoints are pushed and listed. The token is never shown (``repr``) nor stored on disk."""

    repo_id: str = ""
    token: str | None = field(default=None, repr=False)
    private: bool = True
    push_checkpoints: bool = False

    def train_kwargs(self) -> dict[str, Any]:
        """Return the Hub keyword arguments of ``AZRTrainer.train``."""
        return {"hub_repo_id": self.repo_id if self.push_checkpoints and self.repo_id else None,
                "hub_token": self.token, "hub_private": self.private}


class TrainingJob:
    """The process's one training run: start, stop, interrupt, resume, and thread-safe status snapshots."""

    def __init__(self, checkpoint_dir: str | Path | None = None, hub_repo: str | None = None) -> None:
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint_dir()
        self.hub_repo = hub_repo if hub_repo is not None else os.environ.get(HUB_REPO_ENV, "").strip()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._trainer: AZRTrainer | None = None
        self._status: TrainingStatus | None = None
        self._source: Path | None = None
        self._closing = False
        self._stop_requested = False
        self._hub_listings: dict[str, list[dict[str, Any]]] = {}
        self._archive_dir: Path | None = None

    # ------------------------------------------------------------------ runs

    def _active(self) -> bool:
        """True while a run is being prepared or trains (call with the lock held)."""
        alive = self._thread is not None and self._thread.is_alive()
        return alive and (self._status is None or self._status.is_training)

    def start(self, texts: list[str] | None, model: ModelConfig, max_iterations: int, *,
              time_budget_s: float | None = None, hub_settings: HubSettings | None = None,
              **settings: Any) -> dict[str, Any]:
        """Train a new model on ``texts`` (None: the default corpus) in the background; return the status.

        ``settings`` are TrainConfig fields. Raises AZRError when a run is active or a setting is invalid.
        """
        config = TrainConfig().updated(max_iterations=max_iterations, **settings)  # fail before the tokenizer
        hub_settings = hub_settings or HubSettings()

        def prepare() -> tuple[AZRTrainer, Iterator[TrainingStatus]]:
            corpus = texts if texts is not None else default_corpus()
            tokenizer = train_tokenizer(corpus, model.vocab_size)
            network = build_model(dataclasses.replace(model, vocab_size=len(tokenizer)), seed=config.seed)
            trainer = AZRTrainer(network, tokenizer)
            statuses = trainer.train(corpus, max_iterations, self.checkpoint_dir, time_budget_s=time_budget_s,
                                     **hub_settings.train_kwargs(), **settings)
            return trainer, statuses

        return self._launch(prepare, max_iterations, None)

    def resume(self, name: str, max_iterations: int | None = None, batch_size: int | None = None,
               lr: float | None = None, load_optimizer: bool = True, time_budget_s: float | None = None,
               hub_settings: HubSettings | None = None) -> dict[str, Any]:
        """Continue the listed checkpoint ``name`` to ``max_iterations`` (None: its own target); return the status.

        Raises AZRError when a run is active, the name is not a listed checkpoint, or a setting is invalid.
        """
        hub_settings = hub_settings or HubSettings()
        path = self.checkpoint_path(name, hub_settings)

        def prepare() -> tuple[AZRTrainer, Iterator[TrainingStatus]]:
            trainer = AZRTrainer.from_checkpoint(path)
            statuses = trainer.train(None, max_iterations, self.checkpoint_dir, resume_from=path,
                                     load_optimizer=load_optimizer, time_budget_s=time_budget_s,
                                     batch_size=batch_size, lr=lr, **hub_settings.train_kwargs())
            return trainer, statuses

        return self._launch(prepare, max_iterations or 0, path)

    def _launch(self, prepare: Callable[[], tuple[AZRTrainer, Iterator[TrainingStatus]]], target: int,
                source: Path | None) -> dict[str, Any]:
        """Run ``prepare`` and then the training loop in a worker thread; raise what ``prepare`` raised."""
        ready: queue.Queue[BaseException | None] = queue.Queue(maxsize=1)
        with self._lock:
            if self._closing:
                raise AZRError("The app is shutting down; start training again after it restarts.")
            if self._active():
                raise AZRError(BUSY)
            previous, previous_source = self._status, self._source
            self._status = TrainingStatus("starting", 0, target, message="Preparing the run…")
            self._source = source
            self._stop_requested = False
            self._thread = threading.Thread(target=self._work, args=(prepare, ready), name="azr-training-job",
                                            daemon=True)
            self._thread.start()
        error = ready.get()
        if error is not None:
            with self._lock:
                self._status, self._source = previous, previous_source
            raise error
        return self.status(history_since=None)

    def _work(self, prepare: Callable[[], tuple[AZRTrainer, Iterator[TrainingStatus]]],
              ready: queue.Queue[BaseException | None]) -> None:
        try:
            trainer, statuses = prepare()
        except Exception as exc:  # handed to the caller of start()/resume()
            ready.put(exc)
            return
        with self._lock:
            self._trainer = trainer
            if self._closing:
                trainer.interrupt()
            elif self._stop_requested:
                trainer.stop_training()
        ready.put(None)
        try:
            for status in statuses:
                with self._lock:
                    self._status = status
        except Exception as exc:  # the trainer saved a checkpoint and yielded an "error" status first
            log.exception("training failed")
            with self._lock:
                if self._status is not None and self._status.is_training:
                    self._status = dataclasses.replace(self._status, state="error",
                                                       message=f"Training failed: {exc}")
        finally:
            with self._lock:
                if self._trainer is trainer:  # a new run may already have started
                    self._trainer = None

    def stop(self) -> bool:
        """Ask the run to pause after the current batch (saving ``model_paused_<N>``); False when none runs."""
        with self._lock:
            if not self._active():
                return False
            self._stop_requested = True  # applied after preparation when the run is still being prepared
            trainer = self._trainer
        if trainer is not None:
            trainer.stop_training()
        return True

    def interrupt(self) -> None:
        """Refuse new runs and ask the current one to save ``model_interrupted_<N>`` (for SIGTERM/SIGINT)."""
        with self._lock:
            self._closing = True
            trainer = self._trainer
        if trainer is not None:
            trainer.interrupt()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the worker (training and its final pushes) to finish; return True when it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def status(self, history_since: int | None = 0) -> dict[str, Any]:
        """Return the current status as a JSON-able dict.

        ``history`` holds the records with ``iteration > history_since`` (none when it is None);
        ``checkpoint`` is the last checkpoint's name; ``is_training`` tells whether a run is active.
        """
        with self._lock:
            status = self._status or TrainingStatus("idle", 0, 0, message="No training run yet; press Start.")
            active = self._active()
        values = status.as_dict(with_history=False)
        name = Path(status.checkpoint).name if status.checkpoint else None
        values.update(checkpoint=name, checkpoint_path=name, is_training=active)
        if history_since is not None:
            values["history"] = [dict(r) for r in list(status.history) if r["iteration"] > history_since]
        return values

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_path(self, name: str, hub_settings: HubSettings | None = None) -> Path:
        """Return the local directory of a listed checkpoint name (a Hub one is downloaded to the HF cache).

        Only names are accepted: a local ``model_<kind>_<N>`` in the checkpoint directory, or
        ``hf://<repo>/model_<kind>_<N>`` of the configured Hub repo. Raises CheckpointError otherwise.
        """
        name = (name or "").strip()
        if not name:
            raise CheckpointError("Choose a checkpoint from the list first.")
        if ckpt.NAME_PATTERN.match(name):
            path = self.checkpoint_dir / name
            if not path.is_dir():
                raise CheckpointError(f"There is no checkpoint {name!r}; refresh the list and pick a listed one.")
            return path
        settings = hub_settings or HubSettings()
        if name.startswith(hub.SCHEME):
            reference = hub.parse_reference(name)
            if reference.name and reference.revision is None and reference.repo_id in self._hub_repos(settings):
                return hub.resolve_checkpoint(name, settings.token)
        raise CheckpointError(f"{name!r} is not a listed checkpoint; pick a name from the list "
                              "(like model_paused_120), not a path.")

    def _hub_repos(self, settings: HubSettings) -> set[str]:
        return {repo for repo in (self.hub_repo, settings.repo_id) if repo}

    def list_checkpoints(self, hub_settings: HubSettings | None = None, verify: bool = False,
                         refresh_hub: bool = True) -> tuple[list[dict[str, Any]], str | None]:
        """Return ``(checkpoints, warning)``: local and Hub checkpoints, newest first, as JSON-able dicts.

        Each dict is a CheckpointInfo without its path, plus ``source`` ("local" or "hub"); a Hub checkpoint's
        name is its ``hf://`` reference, and it is left out when the same checkpoint is on local disk. With
        ``refresh_hub`` False the last Hub listing is reused. ``warning`` says why the Hub could not be listed.
        """
        local = []
        if self.checkpoint_dir.is_dir():
            local = [_entry(info, "local", info.name) for info in ckpt.list_checkpoints(self.checkpoint_dir, verify)]
        settings = hub_settings or HubSettings()
        warning = None
        for repo in sorted(self._hub_repos(settings)):
            if refresh_hub or repo not in self._hub_listings:
                try:
                    infos = hub.list_checkpoints(f"{hub.SCHEME}{repo}", settings.token)
                except HubError as exc:
                    warning = str(exc)
                    continue
                self._hub_listings[repo] = [_entry(info, "hub", info.path) for info in infos]
        local_names = {entry["name"] for entry in local}
        remote = [e for repo in self._hub_repos(settings) for e in self._hub_listings.get(repo, [])
                  if e["name"].rsplit("/", 1)[-1] not in local_names]
        entries = sorted(local + remote, key=lambda e: (e["timestamp"] or "", e["iteration"] or 0,
                                                         e["source"] == "local"), reverse=True)
        return entries, warning

    def delete(self, name: str) -> None:
        """Delete a local checkpoint. Raises CheckpointError for a Hub or unknown name or one the run uses."""
        if not ckpt.NAME_PATTERN.match((name or "").strip()):
            raise CheckpointError(f"{name!r} is not a local checkpoint name; only those (like model_paused_120) "
                                  "can be deleted here.")
        path = self.checkpoint_path(name)
        with self._lock:
            in_use = {self._source.name if self._source else None,
                      Path(self._status.checkpoint).name if self._status and self._status.checkpoint else None}
            if self._active() and path.name in in_use:
                raise CheckpointError(f"{path.name} is used by the running job; stop it before deleting.")
        trash = ckpt.hidden_sibling(self.checkpoint_dir, ckpt.TRASH_PREFIX, path.name)
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def archive(self, name: str, hub_settings: HubSettings | None = None) -> Path:
        """Zip a listed checkpoint into this job's temporary directory and return the zip's path."""
        path = self.checkpoint_path(name, hub_settings)
        if self._archive_dir is None:
            self._archive_dir = Path(tempfile.mkdtemp(prefix="azr-zip-"))
        target = self._archive_dir / path.name  # one zip per checkpoint name, replaced when made again
        return Path(shutil.make_archive(str(target), "zip", root_dir=path.parent, base_dir=path.name))

    def push(self, name: str, hub_settings: HubSettings) -> str:
        """Push a local checkpoint to ``hub_settings.repo_id``; return the commit id. Raises AZRError."""
        if not hub_settings.repo_id:
            raise HubError("Set a Hub repo id (like user/my-run) in the Hub settings first.")
        path = self.checkpoint_path(name, hub_settings)
        return hub.push(path, hub_settings.repo_id, hub_settings.token, hub_settings.private,
                        corpus_root=self.checkpoint_dir)

    def lr_preview(self, name: str, max_iterations: int | None, lr: float | None = None,
                   hub_settings: HubSettings | None = None) -> list[dict[str, Any]]:
        """Return the LR schedule a resume would follow: ``{"iteration", "lr", "part"}`` records where part is
        "trained" (from the history) or "planned" (the re-planned rest, as the trainer will compute it).

        Raises AZRError for an unknown checkpoint or an invalid target / LR.
        """
        path = self.checkpoint_path(name, hub_settings)
        state = ckpt.read_state(path)
        done = state["iteration"]
        config = TrainConfig.from_dict(state["train_config"]).updated(max_iterations=max_iterations, lr=lr)
        if config.max_iterations < done:
            raise ConfigError(f"max_iterations ({config.max_iterations}) is below the checkpoint's iteration "
                              f"({done}); give a target of at least {done}.")
        plan = LRPlan.from_dict(ckpt.load_scheduler(path)).replanned(
            done, config.max_iterations, lr, config.min_lr_ratio, config.lr_schedule)
        history = state.get("history", [])
        trained = [{"iteration": r["iteration"], "lr": r["lr"], "part": "trained"}
                   for r in history[:: max(1, len(history) // PREVIEW_POINTS)]]
        steps = range(done, config.max_iterations, max(1, (config.max_iterations - done) // PREVIEW_POINTS))
        planned = [{"iteration": i + 1, "lr": plan.lr_at(i), "part": "planned"} for i in steps]
        return trained + planned

    def generate(self, name: str, prompt: str, temperature: float, top_k: int, max_new_tokens: int,
                 hub_settings: HubSettings | None = None) -> str:
        """Sample a continuation of ``prompt`` from a listed checkpoint and return prompt plus continuation.

        Raises AZRError for an unknown checkpoint or invalid sampling settings.
        """
        if not temperature or temperature <= 0:
            raise ConfigError(f"temperature must be a positive number, got {temperature!r}.")
        if top_k is None or top_k < 0:
            raise ConfigError(f"top_k must be zero (no limit) or a positive integer, got {top_k!r}.")
        if not max_new_tokens or max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
        path = self.checkpoint_path(name, hub_settings)
        model, tokenizer = load_pretrained(str(path))
        limit = max_length_of(model)
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
        ids = ids[-max(1, limit - 1):]
        new_tokens = min(max_new_tokens, limit - len(ids))
        rollout = generate(model, torch.tensor([ids]), new_tokens, temperature, top_k,
                           tokenizer.eos_token_id, tokenizer.pad_token_id)
        return prompt + tokenizer.decode(rollout.continuations()[0], skip_special_tokens=True)


def _entry(info: ckpt.CheckpointInfo, source: str, name: str) -> dict[str, Any]:
    values = info.as_dict()
    del values["path"]
    values.update(name=name, source=source)
    return values
