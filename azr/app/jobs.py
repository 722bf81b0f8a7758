"""The app's single training job: its runs and checkpoints; a :class:`azr.app.worker.Worker` thread trains.

One :class:`TrainingJob` per process. Every browser session and API client sees the same job, so a reloaded
page re-attaches to the run, and closing the browser does not stop it. The job works on a *runs root*: each
Start trains a new run in its own directory there, and a resume continues in the checkpoint's run directory.
Checkpoints are chosen by their listed *name* (see :mod:`azr.app.catalog`), never by path.

Environment variables (read when the job is created):

- ``AZR_CHECKPOINT_DIR``: the runs root. Default ``/data/checkpoints`` when ``/data`` exists and is writable
  (Hugging Face Spaces persistent storage), else ``./checkpoints``.
- ``AZR_HUB_REPO``: a Hub repo (``user/run``) whose checkpoints are listed beside the local ones.
- ``HF_TOKEN``: the Hub token used when none is given.
"""
from __future__ import annotations

import functools
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from azr import services
from azr.app import zerogpu
from azr.app.catalog import Catalog, HubSettings
from azr.app.worker import Source, Worker
from azr.checkpoints import containment, runs, storage
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.history import CHUNK_DIR
from azr.checkpoints.runs import RUN_FILE
from azr.config import ModelConfig, TrainConfig
from azr.data.hub_datasets import HubDataset
from azr.errors import CheckpointError, ConfigError, HubError
from azr.hub import publish
from azr.hub import sync as hub
from azr.training.status import TrainingStatus
from azr.training.trainer import AZRTrainer

__all__ = ["HubSettings", "TrainingJob", "default_runs_root"]

CHECKPOINT_DIR_ENV = "AZR_CHECKPOINT_DIR"
HUB_REPO_ENV = "AZR_HUB_REPO"
SPACES_STORAGE = Path("/data")

Prepare = Callable[[float | None], tuple[AZRTrainer, Iterator[TrainingStatus]]]  # time budget -> the run


def default_runs_root() -> Path:
    """Return ``$AZR_CHECKPOINT_DIR``, else ``/data/checkpoints`` on writable Spaces storage, else ``checkpoints``."""
    if os.environ.get(CHECKPOINT_DIR_ENV):
        return Path(os.environ[CHECKPOINT_DIR_ENV])
    if SPACES_STORAGE.is_dir() and os.access(SPACES_STORAGE, os.W_OK):
        return SPACES_STORAGE / "checkpoints"
    return Path("checkpoints")


class TrainingJob:
    """The process's one training run (start, stop, interrupt, resume, its status) and the actions on the
    checkpoints of its runs root (list, delete, zip, push, preview, generate)."""

    def __init__(self, runs_root: str | Path | None = None, hub_repo: str | None = None) -> None:
        self.runs_root = Path(runs_root) if runs_root else default_runs_root()
        runs.remove_leftovers(self.runs_root)
        repo = hub_repo if hub_repo is not None else os.environ.get(HUB_REPO_ENV, "").strip()
        self.catalog = Catalog(self.runs_root, repo)
        self.worker = Worker()
        self._archive_dir: Path | None = None

    @property
    def hub_repo(self) -> str:
        """The Hub repo listed beside the local checkpoints (``AZR_HUB_REPO``), or ""."""
        return self.catalog.hub_repo

    # ------------------------------------------------------------------ runs

    def start(self, texts: list[str] | None, model: ModelConfig, max_iterations: int, *, run_name: str | None = None,
              time_budget_s: float | None = None, hub_settings: HubSettings | None = None,
              dataset: HubDataset | None = None, **settings: Any) -> dict[str, Any]:
        """Train a new model on ``texts`` (None: the default corpus, or ``dataset``) in a new run directory; return
        the status.

        ``run_name`` names the run directory (empty: a generated ``run-<date>-<time>``); ``settings`` are
        TrainConfig fields. Raises AZRError when a run is active, the name is taken or a setting is invalid.
        """
        config = TrainConfig().updated(max_iterations=max_iterations, **settings)  # fail before the tokenizer
        run_dir = self.runs_root / self._new_run_name(run_name)
        hub_settings = hub_settings or HubSettings()

        def prepare(budget: float | None) -> tuple[AZRTrainer, Iterator[TrainingStatus]]:
            network, tokenizer = services.new_model(dataset.texts() if dataset else texts, model, seed=config.seed)
            trainer = AZRTrainer(network, tokenizer)
            statuses = trainer.train(texts, max_iterations, run_dir, time_budget_s=budget, dataset=dataset,
                                     **hub_settings.train_kwargs(), **settings)
            return trainer, statuses

        return self._start_worker(prepare, max_iterations, run_dir, None, time_budget_s, hub_settings)

    def _new_run_name(self, name: str | None) -> str:
        """Return the run name to use: ``name`` checked and not taken, or a generated one."""
        name = (name or "").strip()
        if not name:
            return runs.new_run_name(self.runs_root)
        runs.check_run_name(name)
        if (self.runs_root / name).exists():
            raise ConfigError(f"A run named {name!r} already exists; choose another name, or leave the run name "
                              "empty for a generated one.")
        return name

    def resume(self, name: str, max_iterations: int | None = None, batch_size: int | None = None,
               lr: float | None = None, load_optimizer: bool = True, time_budget_s: float | None = None,
               hub_settings: HubSettings | None = None, extend_schedule: str | None = None,
               run_name: str | None = None) -> dict[str, Any]:
        """Continue the listed checkpoint ``name`` to ``max_iterations`` (None: its own target) in its run
        directory (a Hub checkpoint: in the local run of the same id, or a new one), or with ``run_name`` in a new
        run directory of that name (a branch: the checkpoint's run stays as it is); return the status.

        Raises AZRError when a run is active, the name is not a listed checkpoint, the run name is taken or
        invalid, or a setting is invalid.
        """
        hub_settings = hub_settings or HubSettings()
        checkpoint = self.catalog.open(name, hub_settings, verify=False)  # verified when the trainer loads it
        run_dir = self.runs_root / self._new_run_name(run_name) if (run_name or "").strip() else \
            self.catalog.run_directory(name.strip(), checkpoint)

        prepare = functools.partial(_resumed, checkpoint.path, run_dir=run_dir, hub_settings=hub_settings,
                                    max_iterations=max_iterations, load_optimizer=load_optimizer,
                                    batch_size=batch_size, lr=lr, extend_schedule=extend_schedule)
        target = max_iterations or checkpoint.state.get("max_iterations") or 0
        return self._start_worker(prepare, target, run_dir, (checkpoint.path, name.strip()), time_budget_s,
                                  hub_settings)

    def _start_worker(self, prepare: Prepare, target: int, run_dir: Path, source: Source | None,
                      budget: float | None, hub_settings: HubSettings) -> dict[str, Any]:
        """Run ``prepare`` and then the training loop in a worker thread; raise what ``prepare`` raised.

        On a ZeroGPU Space the run goes on in GPU slices (see :mod:`azr.app.zerogpu`), each prepared in its slice.
        """
        if zerogpu.detected():
            run = zerogpu.SlicedRun(prepare, functools.partial(_resumed, run_dir=run_dir, hub_settings=hub_settings),
                                    budget)

            def start() -> tuple:
                return run, run.statuses()
        else:
            start = functools.partial(prepare, budget)
        self.worker.launch(start, target, run_dir, source)
        return self.status(history_since=None)

    def stop(self) -> bool:
        """Ask the run to pause after the current batch (saving ``model_paused_<N>``); False when none runs."""
        return self.worker.stop()

    def interrupt(self) -> None:
        """Refuse new runs and ask the current one to save ``model_interrupted_<N>`` (for SIGTERM/SIGINT)."""
        self.worker.interrupt()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the worker (training and its final pushes) to finish; return True when it has."""
        return self.worker.wait(timeout)

    def status(self, history_since: int | None = 0) -> dict[str, Any]:
        """Return the current status as a JSON-able dict.

        ``history`` holds the records with ``history_since < iteration <= status iteration`` (none when
        ``history_since`` is None); ``checkpoint`` is the last checkpoint's listed name; ``run`` the run
        directory's name; ``launch`` counts the starts and resumes; ``is_training`` tells whether a run is active.
        """
        now = self.worker.snapshot()
        values = now.status.as_dict(with_history=False)
        name = self._listed_name(now.status.checkpoint, now.source)
        values.update(checkpoint=name, checkpoint_path=name, is_training=now.active, launch=now.launch,
                      run=now.run_dir.name if now.run_dir else None)
        if history_since is not None:
            values["history"] = now.records(history_since)
        return values

    def _listed_name(self, path: str | None, source: Source | None) -> str | None:
        """Return the listed name of a checkpoint the job saved or resumed (``source``: path and name)."""
        if not path:
            return None
        if source is not None and Path(path) == source[0]:
            return source[1]
        return self.catalog.name_of(path)

    # ------------------------------------------------------------------ checkpoints

    def list_checkpoints(self, hub_settings: HubSettings | None = None, verify: bool = False,
                         refresh_hub: bool = True) -> tuple[list[dict[str, Any]], str | None]:
        """Return ``(checkpoints, warning)`` as :meth:`azr.app.catalog.Catalog.checkpoints`."""
        return self.catalog.checkpoints(hub_settings, verify, refresh_hub)

    def list_runs(self) -> list[dict[str, Any]]:
        """Return the runs under the runs root as :meth:`azr.app.catalog.Catalog.runs`."""
        return self.catalog.runs()

    def delete(self, name: str) -> None:
        """Delete a local checkpoint. Raises CheckpointError for a Hub or unknown name or one the run uses."""
        if (name or "").strip().startswith(hub.SCHEME):
            raise CheckpointError(f"{name!r} is on the Hub; only local checkpoints can be deleted here.")
        path = self.catalog.local_path(name)
        containment.check_contained(path)  # a link is refused, never followed to what it points to
        if self.worker.uses(path):
            raise CheckpointError(f"{name.strip()} is used by the running job; stop it before deleting.")
        storage.discard(path)

    def archive(self, name: str, hub_settings: HubSettings | None = None, with_corpus: bool = True) -> Path:
        """Zip a listed checkpoint as a run directory (the checkpoint, its history chunks, ``run.json`` and, with
        ``with_corpus``, the corpus) into this job's temporary directory; return the zip's path. Unzipped into a
        runs root, it is a run that can be resumed (without its corpus: given the same texts again)."""
        checkpoint = self.catalog.open(name, hub_settings)
        run = name.strip().split("/")[-2]
        if self._archive_dir is None:
            self._archive_dir = Path(tempfile.mkdtemp(prefix="azr-zip-"))
        kind = "" if with_corpus else "-no-corpus"  # never the same file as a zip with the corpus
        target = self._archive_dir / f"{run}-{checkpoint.path.name}{kind}.zip"  # replaced when made again
        files = {f"{checkpoint.path.name}/{p.name}": p for p in checkpoint.path.iterdir() if p.is_file()}
        files.update({f"{CHUNK_DIR}/{p.name}": p for p in containment.history_files(checkpoint)})
        corpus = containment.corpus_file(checkpoint, _corpus_root(checkpoint))  # refused when it leads out
        run_file = checkpoint.path.parent / RUN_FILE
        if corpus is not None and with_corpus:
            files[checkpoint.corpus["file"]] = corpus
        if run_file.is_file() and not run_file.is_symlink():
            files[RUN_FILE] = run_file
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for arcname, path in sorted(files.items()):
                if path.is_file():
                    archive.write(path, f"{run}/{arcname}")
        return target

    def push(self, name: str, hub_settings: HubSettings) -> str:
        """Push a listed checkpoint to ``hub_settings.repo_id``; return the commit id. Raises AZRError."""
        if not hub_settings.repo_id:
            raise HubError("Set a Hub repo id (like user/my-run) in the Hub settings first.")
        checkpoint = self.catalog.open(name, hub_settings, verify=False)  # publish.push verifies it
        return publish.push(checkpoint.path, hub_settings.repo_id, hub_settings.token, hub_settings.private,
                        corpus_root=_corpus_root(checkpoint))

    def lr_preview(self, name: str, max_iterations: int | None, lr: float | None = None,
                   hub_settings: HubSettings | None = None,
                   extend_schedule: str | None = None) -> list[dict[str, Any]]:
        """Return the LR schedule a resume of a listed checkpoint would follow (see :func:`services.lr_preview`).

        Raises AZRError for an unknown checkpoint or an invalid target / LR.
        """
        return services.lr_preview(self.catalog.open(name, hub_settings, verify=False), max_iterations, lr,
                                   extend_schedule)

    def generate(self, name: str, prompt: str, temperature: float, top_k: int, max_new_tokens: int,
                 hub_settings: HubSettings | None = None, seed: int | None = None) -> str:
        """Sample a continuation of ``prompt`` from a listed checkpoint and return prompt plus continuation.

        Raises AZRError for an unknown or damaged checkpoint or invalid sampling settings.
        """
        services.check_sampling(temperature, top_k, max_new_tokens)  # before a Hub download
        checkpoint = self.catalog.open(name, hub_settings, verify=False)  # sample_text verifies it
        return services.sample_text(checkpoint, prompt, temperature=temperature, top_k=top_k,
                                    max_new_tokens=max_new_tokens, seed=seed)


def _resumed(path: Path | str, budget: float | None, *, run_dir: Path, hub_settings: HubSettings,
             max_iterations: int | None = None, **settings: Any) -> tuple[AZRTrainer, Iterator[TrainingStatus]]:
    """Return a trainer resuming the checkpoint at ``path`` in ``run_dir`` for ``budget`` seconds, and its run."""
    trainer = AZRTrainer.from_checkpoint(path)
    return trainer, trainer.train(None, max_iterations, run_dir, time_budget_s=budget, **settings,
                                  **hub_settings.train_kwargs())


def _corpus_root(checkpoint: Checkpoint) -> Path:
    """Return the folder that the checkpoint's corpus file is relative to: its run directory, or a Hub
    snapshot's root."""
    corpus = checkpoint.corpus.get("file")
    run_dir = checkpoint.path.parent
    return run_dir if not corpus or (run_dir / corpus).is_file() else run_dir.parent
