"""AZRTrainer: supervised next-token training with periodic self-play and REINFORCE, as a generator of statuses.

One iteration is one optimizer step on one batch. Every ``self_play_every`` iterations the model samples
continuations of prompts from the corpus, the reward scores them, and a REINFORCE loss on the generated tokens
is added to that step's loss with weight ``rl_weight``. Everything the loop carries between iterations is saved
in checkpoints, so that a stopped run resumed with the same settings continues bit for bit.
"""
from __future__ import annotations

import logging
import platform
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from . import __version__
from . import checkpoint as ckpt
from . import hub, rng
from .config import TrainConfig
from .data import ResumableSampler, TokenWindows, check_texts, default_corpus, fingerprint, load_texts, save_corpus
from .errors import CheckpointError, ConfigError, DataError
from .model import architecture_differences, max_length_of, model_config_of
from .reward import RewardFn, ReferenceStats, mean_components, score_tokens
from .schedule import LRPlan
from .selfplay import generate, reinforce_loss
from .signals import graceful_stop
from .status import TrainingStatus
from .uploader import HubUploader

log = logging.getLogger(__name__)

DEFAULT_MAX_WINDOW = 256  # default window length when the model accepts longer sequences
PROMPT_FRACTION = 4  # self-play prompts are a quarter of a window


def resolve_device(device: str | torch.device) -> torch.device:
    """Return the torch device for "auto" (CUDA, then MPS, then CPU) or a named device."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class _Run:
    """The state of one call to train(): everything a checkpoint must capture, plus bookkeeping."""

    config: TrainConfig
    checkpoint_dir: Path
    windows: TokenWindows
    sampler: ResumableSampler
    stats: ReferenceStats
    plan: LRPlan
    optimizer: torch.optim.Optimizer
    iteration: int
    history: list[dict[str, Any]]
    corpus: dict[str, Any]
    time_budget_s: float | None
    warnings: list[str] = field(default_factory=list)
    uploader: HubUploader | None = None
    flush_timeout_s: float = 60.0
    loss: float | None = None
    val_loss: float | None = None
    reward: float | None = None
    reward_components: dict[str, float] = field(default_factory=dict)
    last_checkpoint: str | None = None
    saved_iteration: int | None = None
    started: float = field(default_factory=time.monotonic)
    window_start: float = field(default_factory=time.monotonic)
    window_iterations: int = 0
    seconds_per_iteration: float | None = None
    before_step: tuple[dict[str, int], dict[str, Any]] | None = None
    finished: bool = False


class AZRTrainer:
    """Trains a causal LM with the AZR method; ``train()`` yields :class:`TrainingStatus` objects.

    Args:
        model: a transformers causal LM (e.g. from :func:`azr.build_model`).
        tokenizer: its tokenizer (e.g. from :func:`azr.train_tokenizer`).
        device: "auto", "cpu", "cuda", ...
        status_callback: called with every status the run yields.
        reward_fn: optional ``reward_fn(texts) -> list[float]`` replacing the six-component reward.
    """

    def __init__(self, model, tokenizer, device: str | torch.device = "auto", status_callback=None,
                 reward_fn: RewardFn | None = None) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.status_callback = status_callback
        self.reward_fn = reward_fn
        self.history: list[dict[str, Any]] = []
        self.last_status: TrainingStatus | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._stop = threading.Event()
        self._stop_kind = "paused"
        self._loaded: tuple[Path, bool] | None = None

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto", hub_token: str | None = None,
                        **kwargs) -> AZRTrainer:
        """Return a trainer whose model and tokenizer are built from the checkpoint itself.

        ``path`` may be a Hub reference (``hf://user/run[/name]``). Raises CheckpointError when the checkpoint
        is missing or invalid, HubError when it cannot be fetched.
        """
        path = hub.resolve_checkpoint(path, hub_token)
        state = ckpt.verify_checkpoint(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
        trainer = cls(model, tokenizer, device=device, **kwargs)
        trainer.history = list(state.get("history", []))  # the weights are in place: no second load
        trainer._loaded = (path, True)
        return trainer

    def load_checkpoint(self, path: str | Path, load_optimizer: bool = True) -> dict[str, Any]:
        """Load a checkpoint's weights into the model and make it the point the next ``train()`` resumes from.

        Returns the checkpoint's trainer state. Raises CheckpointError for a missing or invalid checkpoint or
        one whose architecture differs from the model (nothing is changed then).
        """
        path = Path(path)
        state = self._verified_state(path)
        ckpt.load_weights(path, self.model, self.device)
        self.history = list(state.get("history", []))
        self._loaded = (path, load_optimizer)
        return state

    def _verified_state(self, path: Path) -> dict[str, Any]:
        state = ckpt.verify_checkpoint(path)
        differences = architecture_differences(ckpt.read_model_config(path), self.model)
        if differences:
            raise CheckpointError(
                f"Checkpoint {str(path)!r} has a different architecture than the model ({'; '.join(differences)}); "
                "build the model with the checkpoint's settings or use AZRTrainer.from_checkpoint."
            )
        return state

    # ------------------------------------------------------------------ control

    def stop_training(self) -> None:
        """Ask the run to stop after the current batch and save ``model_paused_<N>``; safe from any thread."""
        self._stop_kind = "paused"
        self._stop.set()

    stop = stop_training

    def interrupt(self) -> None:
        """Like :meth:`stop_training`, but the checkpoint is ``model_interrupted_<N>`` (used for signals)."""
        self._stop_kind = "interrupted"
        self._stop.set()

    # ------------------------------------------------------------------ training

    def train(
        self,
        texts: list[str] | None = None,
        max_iterations: int | None = None,
        checkpoint_dir: str | Path = "checkpoints",
        resume_from: str | Path | None = None,
        *,
        load_optimizer: bool = True,
        time_budget_s: float | None = None,
        hub_repo_id: str | None = None,
        hub_token: str | None = None,
        hub_private: bool = True,
        hub_push_corpus: bool = True,
        hub_flush_timeout_s: float = 60.0,
        **settings: Any,
    ) -> Iterator[TrainingStatus]:
        """Prepare a run and return a generator of statuses that trains while it is iterated.

        ``settings`` are :class:`TrainConfig` fields (batch_size, lr, lr_schedule, warmup, save_every,
        status_every, keep_last, seed, self_play_every, rl_weight, ...). On resume, settings not given are the
        checkpoint's. The generator yields every ``status_every`` iterations and at every state change.
        ``resume_from`` may be a local checkpoint or a Hub reference (``hf://user/run[@rev][/name]``).
        With ``hub_repo_id`` every checkpoint is pushed to that repo in the background (``status.pushes``);
        at the end of the run pending pushes get up to ``hub_flush_timeout_s`` to finish.

        Raises ConfigError, DataError or CheckpointError (before anything is changed) for bad input.
        """
        self._stop.clear()
        self._stop_kind = "paused"
        if resume_from is None and self._loaded is not None:
            resume_from, load_optimizer = self._loaded[0], load_optimizer and self._loaded[1]
        if resume_from is not None:
            resume_from = hub.resolve_checkpoint(resume_from, hub_token)
        run = self._prepare(texts, max_iterations, Path(checkpoint_dir), resume_from, load_optimizer,
                            time_budget_s, settings)
        if hub_repo_id:
            run.uploader = HubUploader(hub_repo_id, hub_token, hub_private, hub_push_corpus)
            run.flush_timeout_s = hub_flush_timeout_s
        self._loaded = None
        return self._loop(run)

    def train_continuous(self, texts: list[str] | None = None, max_iterations: int | None = None,
                         checkpoint_dir: str | Path = "checkpoints", resume_from: str | Path | None = None,
                         **kwargs: Any) -> list[dict[str, Any]]:
        """Train to the end (or until stopped) and return the full history (the seed trainer's API).

        Called from the main thread, Ctrl+C and SIGTERM save ``model_interrupted_<N>`` and stop cleanly.
        """
        with graceful_stop(self):
            for _ in self.train(texts, max_iterations, checkpoint_dir, resume_from, **kwargs):
                pass
        return self.history

    def _prepare(self, texts, max_iterations, checkpoint_dir: Path, resume_from, load_optimizer: bool,
                 time_budget_s: float | None, settings: dict[str, Any]) -> _Run:
        if time_budget_s is not None and not time_budget_s > 0:
            raise ConfigError(f"time_budget_s must be a positive number of seconds, got {time_budget_s!r}.")
        state = None
        if resume_from is not None:
            resume_from = Path(resume_from)
            state = self._verified_state(resume_from)
            config = TrainConfig.from_dict(state["train_config"]).updated(max_iterations=max_iterations, **settings)
            if config.max_iterations < state["iteration"]:
                raise ConfigError(
                    f"max_iterations ({config.max_iterations}) is below the checkpoint's iteration "
                    f"({state['iteration']}); give a target of at least {state['iteration']}."
                )
            if config.seed != state["train_config"]["seed"]:
                raise ConfigError("seed cannot change on resume; it fixes the data order of the run.")
        else:
            config = TrainConfig().updated(max_iterations=max_iterations, **settings)
        model_max = max_length_of(self.model)
        seq_len = config.seq_len or min(model_max, DEFAULT_MAX_WINDOW)
        if seq_len > model_max:
            raise ConfigError(f"seq_len ({seq_len}) exceeds the model's max_seq_len ({model_max}).")
        config = config.updated(seq_len=seq_len)

        texts, corpus = self._corpus(texts, state, resume_from, checkpoint_dir)
        windows = TokenWindows.from_texts(texts, self.tokenizer, seq_len)
        vocab = self.model.get_input_embeddings().num_embeddings
        if int(windows.train.max()) >= vocab:
            raise ConfigError(f"The tokenizer produces ids up to {int(windows.train.max())} but the model's "
                              f"vocab_size is {vocab}; build the model with vocab_size >= len(tokenizer).")
        optimizer = self._new_optimizer(config)
        warnings: list[str] = []
        if state is None:
            rng.seed_all(config.seed)
            run = _Run(config, checkpoint_dir, windows, ResumableSampler(len(windows.train), config.seed),
                       ReferenceStats.from_windows(windows.train, vocab),
                       LRPlan.fresh(config.lr_schedule, config.lr, config.min_lr_ratio, config.warmup,
                                    config.max_iterations),
                       optimizer, 0, [], corpus, time_budget_s, warnings)
        else:
            run = self._restore(resume_from, state, config, checkpoint_dir, windows, optimizer, load_optimizer,
                                corpus, time_budget_s, settings.get("lr"))
        if corpus["source"] != "default":
            corpus["file"] = save_corpus(texts, checkpoint_dir)
        self.optimizer = optimizer
        self.history = run.history
        return run

    def _corpus(self, texts, state, resume_from: Path | None, checkpoint_dir: Path) -> tuple[list[str], dict]:
        """Return the texts to train on and their description for the checkpoint."""
        if texts is None and state is not None:
            saved = state.get("corpus", {})
            if saved.get("source") == "default":
                texts = default_corpus()
            else:
                file = saved.get("file", "")  # beside the checkpoint dir, or at a Hub snapshot's root
                candidates = [resume_from.parent / file, resume_from.parent.parent / file, checkpoint_dir / file]
                found = next((p for p in candidates if file and p.is_file()), None)
                if found is None:
                    raise DataError(f"The corpus of {str(resume_from)!r} is not stored beside it; pass texts=.")
                texts = load_texts(found)
        if texts is None:
            texts = default_corpus()
            return texts, {"source": "default", "fingerprint": fingerprint(texts), "num_texts": 1}
        texts = check_texts(texts)
        digest = fingerprint(texts)
        source = "default" if digest == fingerprint(default_corpus()) else "custom"
        return texts, {"source": source, "fingerprint": digest, "num_texts": len(texts)}

    def _new_optimizer(self, config: TrainConfig) -> torch.optim.Optimizer:
        decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() < 2]
        groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))

    def _restore(self, path: Path, state: dict[str, Any], config: TrainConfig, checkpoint_dir: Path,
                 windows: TokenWindows, optimizer: torch.optim.Optimizer, load_optimizer: bool, corpus: dict, time_budget_s,
                 new_lr: float | None) -> _Run:
        """Rebuild a run from a verified checkpoint: weights, optimizer, schedule, RNG, data position, history."""
        ckpt.load_weights(path, self.model, self.device)
        warnings = []
        if load_optimizer and ckpt.OPTIMIZER_FILE in state["files"]:
            optimizer.load_state_dict(ckpt.load_tensor_file(path, ckpt.OPTIMIZER_FILE, self.device))
        elif load_optimizer:
            warnings.append("The checkpoint has no optimizer state; starting a fresh optimizer.")
        warnings += rng.restore(ckpt.load_tensor_file(path, ckpt.RNG_FILE), self.device)
        saved_corpus = state.get("corpus", {})
        position = state.get("data_position", {})
        same_corpus = saved_corpus.get("fingerprint") == corpus["fingerprint"]
        same_windows = position.get("num_samples") == len(windows.train)
        if same_corpus and same_windows:
            sampler = ResumableSampler(len(windows.train), config.seed, position["epoch"], position["offset"])
            stats = ReferenceStats.from_tensors(ckpt.load_self_play(path))
        else:
            warnings.append("The texts differ from the checkpoint's corpus; continuing with a fresh data order.")
            sampler = ResumableSampler(len(windows.train), config.seed)
            stats = ReferenceStats.from_windows(windows.train, self.model.get_input_embeddings().num_embeddings)
        versions = state.get("versions", {})
        if versions.get("torch") != torch.__version__ or versions.get("transformers") != transformers.__version__:
            warnings.append("Resumed with other library versions than the checkpoint's; exact reproduction "
                            "is not guaranteed.")
        if state.get("device_type", "cpu") != self.device.type:
            warnings.append(f"Resumed on {self.device.type} a checkpoint saved on {state.get('device_type')}; "
                            "exact reproduction is not guaranteed.")
        plan = LRPlan.from_dict(ckpt.load_scheduler(path)).replanned(
            state["iteration"], config.max_iterations, new_lr, config.min_lr_ratio, config.lr_schedule)
        run = _Run(config, checkpoint_dir, windows, sampler, stats, plan, optimizer,
                   state["iteration"], list(state.get("history", [])), corpus, time_budget_s, warnings)
        run.loss, run.val_loss, run.reward = state.get("loss"), state.get("val_loss"), state.get("reward")
        run.last_checkpoint, run.saved_iteration = str(path), state["iteration"]
        return run

    # ------------------------------------------------------------------ the loop

    def _loop(self, run: _Run) -> Iterator[TrainingStatus]:
        config = run.config
        opening = (f"Resumed at iteration {run.iteration}" if run.iteration else "Started") + \
            f"; training to {config.max_iterations}."
        try:
            yield self._emit(run, "running", opening)
            if run.iteration >= config.max_iterations:
                run.finished = True
                yield self._emit(run, "completed", f"Already at the target of {config.max_iterations} iterations.")
                return
            while run.iteration < config.max_iterations:
                if self._stop.is_set() or self._out_of_time(run):
                    kind = self._stop_kind
                    path = self._save(run, kind)
                    run.finished = True
                    message = f"{kind.capitalize()} at iteration {run.iteration}; saved {path.name}."
                    yield self._emit(run, kind, message + self._flush_pushes(run))
                    return
                self._step(run)
                if config.val_every and run.iteration % config.val_every == 0:
                    run.val_loss = self._validation_loss(run)
                    run.history[-1]["val_loss"] = run.val_loss
                if run.iteration % config.save_every == 0 or run.iteration == config.max_iterations:
                    path = self._save(run, "iter")
                    yield self._emit(run, "checkpoint", f"Saved {path.name}.")
                if run.iteration % config.status_every == 0 and run.iteration < config.max_iterations:
                    yield self._emit(run, "running")
            run.finished = True
            message = f"Completed {config.max_iterations} iterations." + self._flush_pushes(run)
            yield self._emit(run, "completed", message)
        except GeneratorExit:
            if not run.finished:  # closed early: a requested interrupt keeps its name
                self._save(run, self._stop_kind if self._stop.is_set() else "paused")
                self._flush_pushes(run)
            raise
        except KeyboardInterrupt:
            self._save(run, "interrupted")
            raise
        except Exception as exc:
            run.finished = True
            path = self._save(run, "error")
            message = f"Training failed at iteration {run.iteration}: {exc}; saved {path.name}."
            yield self._emit(run, "error", message + self._flush_pushes(run))
            raise
        finally:
            if run.uploader is not None:
                run.uploader.close()

    @staticmethod
    def _flush_pushes(run: _Run) -> str:
        """Give pending pushes a bounded time to finish; return a sentence on those not pushed."""
        if run.uploader is None:
            return ""
        states = run.uploader.flush(run.flush_timeout_s)
        missing = [f"{name} ({state})" for name, state in states.items() if not state.startswith("pushed")]
        if not missing:
            return f" All {len(states)} checkpoints pushed to {run.uploader.repo_id}."
        return f" Not pushed to {run.uploader.repo_id}: {'; '.join(missing)}."


    def _out_of_time(self, run: _Run) -> bool:
        if run.time_budget_s is not None and time.monotonic() - run.started >= run.time_budget_s:
            self._stop_kind = "paused"
            return True
        return False

    def _step(self, run: _Run) -> None:
        """One optimizer step on one batch, with self-play on every ``self_play_every``-th iteration."""
        config = run.config
        run.before_step = (run.sampler.state_dict(), rng.capture(self.device))
        lr = run.plan.lr_at(run.iteration)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        batch = run.windows.train[run.sampler.next_indices(config.batch_size)].to(self.device)
        self.model.train()
        lm_loss = self._lm_loss(batch)
        loss = lm_loss
        reward = None
        if config.self_play_every and (run.iteration + 1) % config.self_play_every == 0:
            rollout, rewards = self._self_play(run)
            reward = float(rewards.mean())
            loss = lm_loss + config.rl_weight * reinforce_loss(self.model, rollout, rewards)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        run.optimizer.step()
        run.before_step = None
        run.iteration += 1
        run.loss = float(lm_loss.detach())
        if reward is not None:
            run.reward = reward
        run.history.append({"iteration": run.iteration, "loss": run.loss, "val_loss": None, "reward": reward,
                            "lr": lr, "time": time.time()})
        run.window_iterations += 1

    def _lm_loss(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=batch[:, :-1]).logits
        return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))

    def _self_play(self, run: _Run) -> tuple[Any, torch.Tensor]:
        """Generate continuations of corpus prompts and score them; deterministic in (seed, iteration)."""
        config = run.config
        prompt_len = max(1, config.seq_len // PROMPT_FRACTION)
        new_tokens = max(1, min(config.gen_max_new_tokens, max_length_of(self.model) - prompt_len))
        picker = torch.Generator().manual_seed(config.seed * 7_919 + run.iteration)
        rows = torch.randint(len(run.windows.train), (config.self_play_batch,), generator=picker)
        prompts = run.windows.train[rows, :prompt_len].to(self.device)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(config.seed * 104_729 + run.iteration)
            rollout = generate(self.model, prompts, new_tokens, config.temperature, config.top_k,
                               self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)
        continuations = rollout.continuations()
        if self.reward_fn is not None:
            values = [float(v) for v in self.reward_fn(self.tokenizer.batch_decode(continuations))]
            run.reward_components = {}
        else:
            scores = [score_tokens(c, run.stats, new_tokens) for c in continuations]
            values = [s["total"] for s in scores]
            run.reward_components = mean_components(scores)
        return rollout, torch.tensor(values, dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def _validation_loss(self, run: _Run) -> float | None:
        val = run.windows.val[: run.config.val_windows * run.config.batch_size]
        if not len(val):
            return None
        self.model.eval()
        try:
            losses = [float(self._lm_loss(chunk.to(self.device)))
                      for chunk in val.split(run.config.batch_size)]
        finally:
            self.model.train()
        return sum(losses) / len(losses)

    def _save(self, run: _Run, kind: str) -> Path:
        """Save the run as ``model_<kind>_<iteration>``; a step cut short saves the state from before it."""
        if run.before_step is not None:
            position, rng_state = run.before_step
        else:
            position, rng_state = run.sampler.state_dict(), rng.capture(self.device)
        name = ckpt.checkpoint_name(kind, run.iteration)
        state = {
            "kind": kind,
            "iteration": run.iteration,
            "max_iterations": run.config.max_iterations,
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "loss": run.loss,
            "val_loss": run.val_loss,
            "reward": run.reward,
            "reward_components": run.reward_components,
            "history": run.history,
            "train_config": run.config.to_dict(),
            "model_config": (mc.to_dict() if (mc := model_config_of(self.model)) else None),
            "data_position": position,
            "corpus": run.corpus,
            "self_play": {"reference_stats": ckpt.SELF_PLAY_FILE, "vocab_size": run.stats.vocab_size},
            "lr": run.plan.lr_at(run.iteration),
            "device_type": self.device.type,
            "versions": {"azr": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                         "python": platform.python_version()},
        }
        path = ckpt.save_checkpoint(
            run.checkpoint_dir, name, model=self.model, tokenizer=self.tokenizer, state=state,
            optimizer_state=run.optimizer.state_dict(), scheduler=run.plan.to_dict(), rng=rng_state,
            self_play=run.stats.tensors(),
        )
        run.last_checkpoint, run.saved_iteration = str(path), run.iteration
        if run.uploader is not None:
            run.uploader.submit(path, run.checkpoint_dir)
        if kind == "iter":
            ckpt.rotate_checkpoints(run.checkpoint_dir, run.config.keep_last)
        log.info("saved checkpoint %s", path)
        return path

    def _emit(self, run: _Run, state: str, message: str = "") -> TrainingStatus:
        now = time.monotonic()
        if run.window_iterations:
            run.seconds_per_iteration = (now - run.window_start) / run.window_iterations
        run.window_start, run.window_iterations = now, 0
        per_iteration = run.seconds_per_iteration
        status = TrainingStatus(
            state=state, iteration=run.iteration, max_iterations=run.config.max_iterations, loss=run.loss,
            val_loss=run.val_loss, reward=run.reward, reward_components=dict(run.reward_components),
            lr=run.plan.lr_at(run.iteration),
            tokens_per_s=(run.config.batch_size * run.config.seq_len / per_iteration) if per_iteration else None,
            eta_s=(per_iteration * (run.config.max_iterations - run.iteration)) if per_iteration else None,
            memory_mb=_memory_mb(self.device), checkpoint=run.last_checkpoint, message=message,
            warnings=list(run.warnings), history=run.history,
            pushes=run.uploader.states() if run.uploader is not None else {},
        )
        self.last_status = status
        if self.status_callback is not None:
            self.status_callback(status)
        return status


def _memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocations on a GPU, the peak resident set size otherwise.

    VmHWM is this process's own peak; ``ru_maxrss`` (the fallback off Linux) can include a parent's memory.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as status:
            peak = next(line for line in status if line.startswith("VmHWM:"))
        return int(peak.split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
