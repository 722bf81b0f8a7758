"""The app's actions as plain functions of plain values: the API endpoints and the page's buttons call them.

:class:`AppAPI` turns form values (numbers from ``gr.Number``, strings) into the job's calls, so that
``gradio_client`` users and the page get the same checks and the same one-sentence errors.

Uploads: ``.txt``, ``.md``, ``.jsonl`` and ``.csv`` files of at most ``AZR_MAX_UPLOAD_MB`` megabytes in total
(default 20); larger uploads are refused with a message.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from .config import TrainConfig
from .config import preset as model_preset
from .data import load_texts
from .errors import AZRError, ConfigError, DataError
from .jobs import HubSettings, TrainingJob

MAX_UPLOAD_ENV = "AZR_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 20
MODEL_FIELDS = ("d_model", "num_layers", "num_heads", "d_ff", "max_seq_len", "vocab_size")
WHOLE_SETTINGS = ("batch_size", "warmup", "save_every", "self_play_every", "seed")
REAL_SETTINGS = ("lr", "rl_weight")
DEFAULTS = TrainConfig()



def max_upload_bytes() -> int:
    """Return the upload limit in bytes (``$AZR_MAX_UPLOAD_MB`` megabytes, default 20)."""
    return int(float(os.environ.get(MAX_UPLOAD_ENV, DEFAULT_MAX_UPLOAD_MB)) * 2**20)


def read_uploads(paths: list[str] | None) -> list[str] | None:
    """Return the texts of uploaded files, or None when there are none (train on the default corpus).

    Raises DataError when the files are larger than the upload limit together or cannot be read.
    """
    if not paths:
        return None
    total = sum(Path(p).stat().st_size for p in paths)
    if total > max_upload_bytes():
        raise DataError(f"The uploaded files hold {total / 2**20:.1f} MB, more than the limit of "
                        f"{max_upload_bytes() / 2**20:.0f} MB ({MAX_UPLOAD_ENV}); upload less text.")
    return load_texts(paths)


def whole(name: str, value: Any) -> int | None:
    """Return ``value`` as an int (None stays None); raises ConfigError for a fraction or a non-number."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise ConfigError(f"{name} must be a whole number, got {value!r}.")
    return int(value)


def real(name: str, value: Any) -> float | None:
    """Return ``value`` as a float (None stays None); raises ConfigError for a non-number."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}.")
    return float(value)


def _budget_s(minutes: Any) -> float | None:
    """Return the time budget in seconds (None for no budget: empty or 0)."""
    value = real("time_budget_min", minutes)
    if value is not None and value < 0:
        raise ConfigError(f"time_budget_min must be zero (no limit) or a positive number of minutes, got {value}.")
    return value * 60 if value else None


class AppAPI:
    """The app's actions on its :class:`TrainingJob`; each public method is also an API endpoint.

    The methods raise AZRError (or ValueError) for bad input; the API turns that into a ``gr.Error`` and the
    page shows it next to the form.
    """

    def __init__(self, job: TrainingJob) -> None:
        self.job = job

    def hub_settings(self, hub_repo_id: str = "", hub_token: str = "", hub_private: bool = True,
                     push_checkpoints: bool = False) -> HubSettings:
        """Return the Hub settings of a request: an empty repo means ``AZR_HUB_REPO``, an empty token ``HF_TOKEN``."""
        return HubSettings((hub_repo_id or "").strip() or self.job.hub_repo, (hub_token or "").strip() or None,
                           bool(hub_private), bool(push_checkpoints))

    def train(self, corpus_text: str = "", preset: str = "tiny", d_model: int | None = None,
              num_layers: int | None = None, num_heads: int | None = None, d_ff: int | None = None,
              max_seq_len: int | None = None, vocab_size: int | None = None,
              max_iterations: int = DEFAULTS.max_iterations, batch_size: int = DEFAULTS.batch_size,
              lr: float = DEFAULTS.lr, lr_schedule: str = DEFAULTS.lr_schedule, warmup: int = DEFAULTS.warmup,
              save_every: int = DEFAULTS.save_every, self_play_every: int = DEFAULTS.self_play_every,
              rl_weight: float = DEFAULTS.rl_weight, seed: int = DEFAULTS.seed, time_budget_min: float = 0,
              hub_repo_id: str = "", hub_token: str = "", hub_private: bool = True,
              push_checkpoints: bool = False, run_name: str = "") -> dict[str, Any]:
        """Start training a new model on ``corpus_text`` (empty: the default corpus) in a new run; return the status.

        Model size: a preset (tiny/small/base) with optional overrides. ``time_budget_min`` > 0 pauses the run
        after that many minutes. With ``push_checkpoints`` every checkpoint is pushed to ``hub_repo_id``.
        ``run_name`` names the run's directory (empty: ``run-<date>-<time>``); a name in use is refused.
        """
        form = dict(locals())
        del form["self"], form["corpus_text"]
        return self.start([corpus_text] if (corpus_text or "").strip() else None, **form)

    def start(self, texts: list[str] | None, **form: Any) -> dict[str, Any]:
        """Start a run on ``texts`` with the fields of :meth:`train` (after ``corpus_text``); return the status."""
        hub_settings = self.hub_settings(form.pop("hub_repo_id"), form.pop("hub_token"), form.pop("hub_private"),
                                         form.pop("push_checkpoints"))
        budget, run_name = _budget_s(form.pop("time_budget_min")), form.pop("run_name")
        model = model_preset(form.pop("preset") or "tiny", **{k: whole(k, form.pop(k)) for k in MODEL_FIELDS})
        max_iterations = whole("max_iterations", form.pop("max_iterations"))
        settings = {k: whole(k, form.pop(k)) for k in WHOLE_SETTINGS}
        settings.update({k: real(k, form.pop(k)) for k in REAL_SETTINGS}, lr_schedule=form.pop("lr_schedule"))
        if max_iterations is None:
            raise ConfigError("max_iterations is required: give the number of iterations to train.")
        if form:
            raise TypeError(f"unknown training fields: {', '.join(form)}")
        return self.job.start(texts, model, max_iterations, run_name=run_name, time_budget_s=budget,
                              hub_settings=hub_settings, **settings)

    def stop_training(self) -> dict[str, Any]:
        """Ask the running job to pause after the current batch; ``status`` is "stopping" or "not training"."""
        stopping = self.job.stop()
        return {"status": "stopping" if stopping else "not training",
                "message": "Stopping after the current batch; a model_paused checkpoint will be saved."
                if stopping else "No training run is active."}

    def resume_training(self, checkpoint: str, max_iterations: int | None = None, batch_size: int | None = None,
                        lr: float | None = None, load_optimizer: bool = True, time_budget_min: float = 0,
                        hub_repo_id: str = "", hub_token: str = "", hub_private: bool = True,
                        push_checkpoints: bool = False, extend_schedule: str = "") -> dict[str, Any]:
        """Resume a listed checkpoint (a name from /list_checkpoints) to ``max_iterations``; return the status.

        Empty (or 0) ``max_iterations``, ``batch_size`` and ``lr`` keep the checkpoint's target and settings;
        ``extend_schedule`` ("rewarm" or "final_lr", empty: the checkpoint's) shapes the LR of an extension.
        """
        return self.job.resume(
            checkpoint, whole("max_iterations", max_iterations) or None, whole("batch_size", batch_size) or None,
            real("lr", lr) or None, bool(load_optimizer), _budget_s(time_budget_min),
            self.hub_settings(hub_repo_id, hub_token, hub_private, push_checkpoints), extend_schedule or None)

    def status(self, history_since: int = 0) -> dict[str, Any]:
        """Return the job's status with the history records after iteration ``history_since`` (-1: none)."""
        since = whole("history_since", history_since)
        return self.job.status(history_since=None if since is not None and since < 0 else since or 0)

    def list_checkpoints(self, hub_repo_id: str = "", hub_token: str = "", verify: bool = False) -> dict[str, Any]:
        """Return ``{"checkpoints": [...], "warning": ...}``: local and Hub checkpoints, newest first.

        With ``verify`` every local file is checked against its checksum.
        """
        entries, warning = self.job.list_checkpoints(self.hub_settings(hub_repo_id, hub_token), bool(verify))
        return {"checkpoints": entries, "warning": warning}

    def list_runs(self) -> dict[str, Any]:
        """Return ``{"runs": [...]}``: the run directories, newest first, with their checkpoint counts."""
        return {"runs": self.job.list_runs()}

    def generate(self, checkpoint: str, prompt: str = "", temperature: float = 1.0, top_k: int = 50,
                 max_new_tokens: int = 50, hub_repo_id: str = "", hub_token: str = "",
                 seed: int | None = None) -> dict[str, Any]:
        """Sample a continuation of ``prompt`` from a listed checkpoint; return ``{"checkpoint", "text"}``.

        With ``seed`` the same request gives the same text.
        """
        text = self.job.generate(checkpoint, prompt or "", real("temperature", temperature),
                                 whole("top_k", top_k), whole("max_new_tokens", max_new_tokens),
                                 self.hub_settings(hub_repo_id, hub_token), whole("seed", seed))
        return {"checkpoint": checkpoint, "text": text}


API_NAMES = ("train", "stop_training", "resume_training", "status", "list_checkpoints", "list_runs", "generate")


def as_endpoint(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an AppAPI method so that bad input reaches the client as a one-sentence ``gr.Error``."""
    @functools.wraps(method)
    def endpoint(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (AZRError, ValueError) as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
    return endpoint
