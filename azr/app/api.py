"""The app's actions as plain functions of plain values: the API endpoints and the page's buttons call them.

:class:`AppAPI` turns form values (numbers from ``gr.Number``, strings) into the job's calls, so that
``gradio_client`` users and the page get the same checks and the same one-sentence errors.

Uploads: ``.txt``, ``.md``, ``.jsonl`` and ``.csv`` files of at most ``AZR_MAX_UPLOAD_MB`` MiB in total
(default 20); larger uploads are refused with a message. Every text that comes in obeys a cap, checked before
any work: ``corpus_text`` the same limit as an upload, a prompt :data:`MAX_PROMPT_CHARS` characters, any other
field :data:`MAX_FIELD_CHARS`; ``max_new_tokens`` is at most :data:`MAX_NEW_TOKENS`.

Control actions (train, stop, resume, delete, push, verifying every file) need an owner (see :mod:`azr.app.owners`):
API clients give ``owner_password=``, or sign in with Hugging Face on a Space; a visitor's call is refused with one
sentence. Generating and downloading are for visitors too unless ``AZR_VISITORS_GENERATE=0``.
"""
from __future__ import annotations

import functools
import inspect
import math
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from azr.app import compare
from azr.app.jobs import HubSettings, TrainingJob
from azr.app.owners import Access, Caller
from azr.config import TrainConfig, default_seq_len, memory
from azr.config import preset as model_preset
from azr.data.files import load_texts
from azr.data.hub_datasets import HubDataset
from azr.errors import AZRError, ConfigError, DataError
from azr.utils.units import mib_text

MAX_UPLOAD_ENV = "AZR_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 20
MODEL_FIELDS = ("d_model", "num_layers", "num_heads", "d_ff", "max_seq_len", "vocab_size")
WHOLE_SETTINGS = ("batch_size", "warmup", "save_every", "self_play_every", "seed", "grad_accum_steps")
REAL_SETTINGS = ("lr", "rl_weight")
DEFAULTS = TrainConfig()
MAX_PROMPT_CHARS = 100_000
MAX_FIELD_CHARS = 1_000
MAX_NEW_TOKENS = 4_096


def max_upload_bytes() -> int:
    """Return the upload limit in bytes (``$AZR_MAX_UPLOAD_MB`` MiB, default 20)."""
    return int(float(os.environ.get(MAX_UPLOAD_ENV, DEFAULT_MAX_UPLOAD_MB)) * 2**20)


def _check_upload_size(what: str, size: int) -> None:
    if size > max_upload_bytes():
        raise DataError(f"{what} {mib_text(size)}, more than the limit of {mib_text(max_upload_bytes())} "
                        f"({MAX_UPLOAD_ENV}); send less text.")


def check_sizes(values: dict[str, Any]) -> None:
    """Raise DataError / ConfigError when a text in ``values`` is over its cap (see the module's doc)."""
    for name, value in values.items():
        if isinstance(value, dict):
            check_sizes(value)
        elif name == "corpus_text" and isinstance(value, str):
            if len(value) > max_upload_bytes():  # at least one byte a character: refused without encoding it
                _check_upload_size("corpus_text holds at least", len(value))
            _check_upload_size("corpus_text holds", len(value.encode("utf-8", "surrogatepass")))
        elif isinstance(value, str) and len(value) > (cap := MAX_PROMPT_CHARS if name == "prompt" else MAX_FIELD_CHARS):
            raise ConfigError(f"{name} holds {len(value):,} characters, more than the limit of {cap:,}; "
                              "send a shorter text.")


def capped(method: Callable[..., Any]) -> Callable[..., Any]:
    """Check the sizes of a method's text arguments (:func:`check_sizes`) before it runs."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check_sizes(signature.bind(*args, **kwargs).arguments)
        return method(*args, **kwargs)
    return checked


def read_uploads(paths: list[str] | None) -> list[str] | None:
    """Return the texts of uploaded files, or None when there are none (train on the default corpus).

    Raises DataError when the files are larger than the upload limit together or cannot be read.
    """
    if not paths:
        return None
    _check_upload_size("The uploaded files hold", sum(Path(p).stat().st_size for p in paths))
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
    if value is not None and not 0 <= value < math.inf:
        raise ConfigError(f"time_budget_min must be zero (no limit) or a positive number of minutes, got {value}.")
    return value * 60 if value else None


class AppAPI:
    """The app's actions on its :class:`TrainingJob`; the methods of :data:`API_NAMES` are also API endpoints.

    The methods raise AZRError (or ValueError) for bad input; the API turns that into a ``gr.Error`` and the
    page shows it next to the form. ``caller`` says who asks (None: this process); control actions refuse a
    caller that is not an owner (see :mod:`azr.app.owners`), and a visitor's Hub settings are ignored.
    """

    def __init__(self, job: TrainingJob, access: Access | None = None) -> None:
        self.job = job
        self.access = access or Access()

    def hub_settings(self, hub_repo_id: str = "", hub_token: str = "", hub_private: bool = True,
                     push_checkpoints: bool = False, caller: Caller | None = None) -> HubSettings:
        """Return the Hub settings of a request: an empty repo means ``AZR_HUB_REPO``, an empty token ``HF_TOKEN``;
        a visitor gets ``AZR_HUB_REPO`` whatever it asks."""
        if not self.access.is_owner(caller):
            return HubSettings(self.job.hub_repo)
        return HubSettings((hub_repo_id or "").strip() or self.job.hub_repo, (hub_token or "").strip() or None,
                           bool(hub_private), bool(push_checkpoints))

    @capped
    def train(self, corpus_text: str = "", preset: str = "tiny", d_model: int | None = None,
              num_layers: int | None = None, num_heads: int | None = None, d_ff: int | None = None,
              max_seq_len: int | None = None, vocab_size: int | None = None,
              max_iterations: int = DEFAULTS.max_iterations, batch_size: int = DEFAULTS.batch_size,
              lr: float | None = None, lr_schedule: str = DEFAULTS.lr_schedule, warmup: int | None = None,
              save_every: int = DEFAULTS.save_every, self_play_every: int = DEFAULTS.self_play_every,
              rl_weight: float = DEFAULTS.rl_weight, seed: int = DEFAULTS.seed, time_budget_min: float = 0,
              precision: str = DEFAULTS.precision, grad_accum_steps: int = DEFAULTS.grad_accum_steps,
              compile: bool = DEFAULTS.compile, hub_repo_id: str = "", hub_token: str = "", hub_private: bool = True,
              push_checkpoints: bool = False, run_name: str = "", dataset: str = "", dataset_split: str = "train",
              text_column: str = "text", rewards: str = DEFAULTS.rewards, *,
              caller: Caller | None = None) -> dict[str, Any]:
        """Start training a new model on ``corpus_text`` (empty: the default corpus) in a new run; return the status.

        ``dataset`` (``user/name[:config]``, instead of a corpus) trains on that Hub dataset's ``dataset_split``
        and ``text_column``, its revision pinned in the run.
        Model size: a preset (tiny/small/base) with optional overrides; an empty ``lr`` or ``warmup`` is the
        model's default (:func:`azr.config.training_defaults`). ``time_budget_min`` > 0 pauses the run after that
        many minutes. ``precision``, ``grad_accum_steps`` and ``compile`` are the TrainConfig fields. With
        ``push_checkpoints`` every checkpoint is pushed to ``hub_repo_id``.
        ``run_name`` names the run's directory (empty: ``run-<date>-<time>``); a name in use is refused.
        ``rewards`` names the self-play reward functions with weights (see :mod:`azr.config.rewards`).
        """
        form = dict(locals())
        del form["self"], form["corpus_text"], form["caller"]
        return self.start([corpus_text] if (corpus_text or "").strip() else None, caller, **form)

    @capped
    def start(self, texts: list[str] | None, caller: Caller | None = None, **form: Any) -> dict[str, Any]:
        """Start a run on ``texts`` with the fields of :meth:`train` (after ``corpus_text``); return the status."""
        self.access.check(caller, "start training")
        hub_settings = self.hub_settings(form.pop("hub_repo_id"), form.pop("hub_token"), form.pop("hub_private"),
                                         form.pop("push_checkpoints"), caller)
        budget, run_name = _budget_s(form.pop("time_budget_min")), form.pop("run_name")
        name, split, column = form.pop("dataset", ""), form.pop("dataset_split", ""), form.pop("text_column", "")
        dataset = HubDataset.parse(name, split=(split or "").strip() or "train",
                                   text_column=(column or "").strip() or "text") if (name or "").strip() else None
        if dataset is not None and texts is not None:
            raise ConfigError("Give a corpus or a Hub dataset, not both: clear one of them.")
        model = model_preset(form.pop("preset") or "tiny", **{k: whole(k, form.pop(k)) for k in MODEL_FIELDS})
        max_iterations = whole("max_iterations", form.pop("max_iterations"))
        settings = {k: whole(k, form.pop(k)) for k in WHOLE_SETTINGS}
        settings.update({k: real(k, form.pop(k)) for k in REAL_SETTINGS}, lr_schedule=form.pop("lr_schedule"),
                        precision=form.pop("precision"), compile=bool(form.pop("compile")),
                        rewards=(form.pop("rewards") or "").strip() or DEFAULTS.rewards)
        if max_iterations is None:
            raise ConfigError("max_iterations is required: give the number of iterations to train.")
        if form:
            raise TypeError(f"unknown training fields: {', '.join(form)}")
        return self.job.start(texts, model, max_iterations, run_name=run_name, time_budget_s=budget,
                              hub_settings=hub_settings, dataset=dataset, **settings)

    def stop_training(self, *, caller: Caller | None = None) -> dict[str, Any]:
        """Ask the running job to pause after the current batch; ``status`` is "stopping" or "not training"."""
        self.access.check(caller, "stop training")
        stopping = self.job.stop()
        return {"status": "stopping" if stopping else "not training",
                "message": "Stopping after the current batch; a model_paused checkpoint will be saved."
                if stopping else "No training run is active."}

    @capped
    def resume_training(self, checkpoint: str, max_iterations: int | None = None, batch_size: int | None = None,
                        lr: float | None = None, load_optimizer: bool = True, time_budget_min: float = 0,
                        hub_repo_id: str = "", hub_token: str = "", hub_private: bool = True,
                        push_checkpoints: bool = False, extend_schedule: str = "", run_name: str = "", *,
                        caller: Caller | None = None) -> dict[str, Any]:
        """Resume a listed checkpoint (a name from /list_checkpoints) to ``max_iterations``; return the status.

        Empty (or 0) ``max_iterations``, ``batch_size`` and ``lr`` keep the checkpoint's target and settings;
        ``extend_schedule`` ("rewarm" or "final_lr", empty: the checkpoint's) shapes the LR of an extension;
        a ``run_name`` continues in a new run of that name instead of the checkpoint's own run.
        """
        self.access.check(caller, "resume training")
        return self.job.resume(
            checkpoint, whole("max_iterations", max_iterations) or None, whole("batch_size", batch_size) or None,
            real("lr", lr) or None, bool(load_optimizer), _budget_s(time_budget_min),
            self.hub_settings(hub_repo_id, hub_token, hub_private, push_checkpoints, caller), extend_schedule or None,
            run_name)

    def status(self, history_since: int = 0) -> dict[str, Any]:
        """Return the job's status with the history records after iteration ``history_since`` (-1: none)."""
        since = whole("history_since", history_since)
        return self.job.status(history_since=None if since is not None and since < 0 else since or 0)

    @capped
    def list_checkpoints(self, hub_repo_id: str = "", hub_token: str = "", verify: bool = False, *,
                         caller: Caller | None = None) -> dict[str, Any]:
        """Return ``{"checkpoints": [...], "warning": ...}``: local and Hub checkpoints, newest first.

        With ``verify`` (owners only: it reads every file) every local file is checked against its checksum.
        """
        if verify:
            self.access.check(caller, "verify checkpoint files")
        entries, warning = self.job.list_checkpoints(self.hub_settings(hub_repo_id, hub_token, caller=caller),
                                                     bool(verify))
        return {"checkpoints": entries, "warning": warning}

    def list_runs(self) -> dict[str, Any]:
        """Return ``{"runs": [...]}``: the run directories, newest first, with their checkpoint counts."""
        return {"runs": self.job.list_runs()}

    def compare_runs(self, runs: list[str]) -> dict[str, Any]:
        """Return ``{"runs": [{"run", "loss", "val_loss", "lr"}, ...]}``: the curves of the named runs (names from
        /list_runs) from their stored histories, each a list of ``[iteration, value]`` points."""
        return {"runs": compare.run_series(self.job.catalog, runs)}

    def estimate_memory(self, preset: str = "tiny", d_model: int | None = None, num_layers: int | None = None,
                        num_heads: int | None = None, d_ff: int | None = None, max_seq_len: int | None = None,
                        vocab_size: int | None = None, batch_size: int = DEFAULTS.batch_size) -> dict[str, Any]:
        """Return the estimated memory (fp32, :func:`azr.config.memory.estimate`) of training ``preset`` (sizes as in
        /train) at ``batch_size`` windows of the ``seq_len`` a run trains on, with ``available_bytes`` free on the
        device runs train on and the ``largest_batch_that_fits`` it (None where unreadable); docs/app.md lists the
        fields."""
        from azr.checkpoints.writerprocess import stages_a_copy  # noqa: PLC0415 - torch, loaded by the app anyway
        from azr.training.status import available_memory_bytes  # noqa: PLC0415
        from azr.training.trainer import resolve_device  # noqa: PLC0415

        sizes = dict(d_model=d_model, num_layers=num_layers, num_heads=num_heads, d_ff=d_ff, max_seq_len=max_seq_len,
                     vocab_size=vocab_size)
        model = model_preset(preset or "tiny", **{k: whole(k, v) for k, v in sizes.items()})
        batch = whole("batch_size", batch_size) or DEFAULTS.batch_size
        device, seq_len = resolve_device("auto"), default_seq_len(model.max_seq_len)  # as the app's runs train
        staged, available = stages_a_copy(device), available_memory_bytes(device)
        fits = None if available is None else memory.largest_batch(model, available, staged, seq_len)
        return {**memory.estimate(model, batch, staged, seq_len).as_dict(), "batch_size": batch, "seq_len": seq_len,
                "max_seq_len": model.max_seq_len, "available_bytes": available, "largest_batch_that_fits": fits}

    @capped
    def generate(self, checkpoint: str, prompt: str = "", temperature: float = 1.0, top_k: int = 50,
                 max_new_tokens: int = 50, hub_repo_id: str = "", hub_token: str = "",
                 seed: int | None = None, *, caller: Caller | None = None) -> dict[str, Any]:
        """Sample a continuation of ``prompt`` from a listed checkpoint; return ``{"checkpoint", "text"}``.

        With ``seed`` the same request gives the same text.
        """
        self.access.check_use(caller, "generate text here")
        new_tokens = whole("max_new_tokens", max_new_tokens)
        if new_tokens is not None and new_tokens > MAX_NEW_TOKENS:
            raise ConfigError(f"max_new_tokens must be at most {MAX_NEW_TOKENS:,}, got {new_tokens:,}.")
        text = self.job.generate(checkpoint, prompt or "", real("temperature", temperature), whole("top_k", top_k),
                                 new_tokens, self.hub_settings(hub_repo_id, hub_token, caller=caller),
                                 whole("seed", seed))
        return {"checkpoint": checkpoint, "text": text}

    @capped
    def archive(self, checkpoint: str, hub_repo_id: str = "", hub_token: str = "", *,
                caller: Caller | None = None) -> Path:
        """Zip a listed checkpoint for the page's Download (see :meth:`TrainingJob.archive`); return the zip's path.

        Visitors download where they may generate (not with ``AZR_VISITORS_GENERATE=0``), and their zip never
        holds the run's corpus: the texts the owner trained on stay the owner's.
        """
        self.access.check_use(caller, "download checkpoints")
        return self.job.archive(checkpoint, self.hub_settings(hub_repo_id, hub_token, caller=caller),
                                with_corpus=self.access.is_owner(caller))

    @capped
    def delete_checkpoint(self, checkpoint: str, *, caller: Caller | None = None) -> dict[str, Any]:
        """Delete a listed local checkpoint; return ``{"deleted": name}``."""
        self.access.check(caller, "delete checkpoints")
        self.job.delete(checkpoint)
        return {"deleted": checkpoint.strip()}

    @capped
    def push_checkpoint(self, checkpoint: str, hub_repo_id: str = "", hub_token: str = "", hub_private: bool = True,
                        *, caller: Caller | None = None) -> dict[str, Any]:
        """Push a listed checkpoint to ``hub_repo_id`` (empty: ``AZR_HUB_REPO``); return ``{"checkpoint",
        "commit"}``."""
        self.access.check(caller, "push checkpoints")
        commit = self.job.push(checkpoint, self.hub_settings(hub_repo_id, hub_token, hub_private, caller=caller))
        return {"checkpoint": checkpoint.strip(), "commit": commit}


API_NAMES = ("train", "stop_training", "resume_training", "status", "list_checkpoints", "list_runs", "generate",
             "delete_checkpoint", "push_checkpoint", "compare_runs", "estimate_memory")


def as_endpoint(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an AppAPI method as an API endpoint: bad input reaches the client as a one-sentence ``gr.Error``.

    A method that takes a ``caller`` gets it from the request: Gradio injects the signed-in Hugging Face profile
    (on a Space) into the last parameter, ``profile``, and the client may give ``owner_password``.
    """
    signature = inspect.signature(method)
    takes_caller = "caller" in signature.parameters

    @functools.wraps(method)
    def endpoint(*args: Any, **kwargs: Any) -> Any:
        try:
            if not takes_caller:
                return method(*args, **kwargs)
            values = endpoint.__signature__.bind(*args, **kwargs).arguments
            caller = Caller(values.pop("profile", None), values.pop("owner_password", "") or "")
            return method(**values, caller=caller)
        except (AZRError, ValueError) as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    if takes_caller:
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        parameters = [p for p in signature.parameters.values() if p.name != "caller"]
        endpoint.__signature__ = signature.replace(parameters=[  # profile last: positional callers are unchanged
            *parameters, inspect.Parameter("owner_password", kind, default="", annotation=str),
            inspect.Parameter("profile", kind, default=None, annotation=gr.OAuthProfile | None)])
        hints = {k: v for k, v in typing.get_type_hints(method).items() if k != "caller"}
        endpoint.__annotations__ = {**hints, "profile": gr.OAuthProfile | None, "owner_password": str}
    return endpoint
