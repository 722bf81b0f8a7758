"""The Gradio app: Train (with Stop and Resume), Checkpoints, Generate and Hub tabs, and the API endpoints.

:func:`build_ui` builds the whole page in one function, with each event wired next to its components. The
same actions are API endpoints for ``gradio_client`` (see :class:`AppAPI`): ``/train``, ``/stop_training``,
``/resume_training``, ``/status``, ``/list_checkpoints`` and ``/generate``.

Uploads: ``.txt``, ``.md``, ``.jsonl`` and ``.csv`` files of at most ``AZR_MAX_UPLOAD_MB`` megabytes in total
(default 20); larger uploads are refused with a message.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from .config import LR_SCHEDULES, PRESETS, TrainConfig
from .config import preset as model_preset
from .data import TEXT_SUFFIXES, load_texts
from .errors import AZRError, ConfigError, DataError
from .jobs import HubSettings, TrainingJob
from .status import FINAL_STATES

MAX_UPLOAD_ENV = "AZR_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 20
POLL_S = 1.0
CHART_POINTS = 1000  # points per chart series; longer histories are thinned evenly
MODEL_FIELDS = ("d_model", "num_layers", "num_heads", "d_ff", "max_seq_len", "vocab_size")
WHOLE_SETTINGS = ("batch_size", "warmup", "save_every", "self_play_every", "seed")
REAL_SETTINGS = ("lr", "rl_weight")
DEFAULTS = TrainConfig()
CHART_TYPES = {"iteration": "int64", "value": "float64", "series": "string"}
LOSS_SERIES = {"loss": "loss", "val_loss": "val loss"}  # history key -> chart label
REWARD_SERIES = {"reward": "reward"}
LR_PARTS = ("trained", "planned")
TABLE_COLUMNS = ["name", "source", "kind", "iteration", "max_iterations", "loss", "val_loss", "timestamp",
                 "size_mb", "has_optimizer", "valid", "reason"]


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


def _whole(name: str, value: Any) -> int | None:
    """Return ``value`` as an int (None stays None); raises ConfigError for a fraction or a non-number."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise ConfigError(f"{name} must be a whole number, got {value!r}.")
    return int(value)


def _real(name: str, value: Any) -> float | None:
    """Return ``value`` as a float (None stays None); raises ConfigError for a non-number."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}.")
    return float(value)


def _budget_s(minutes: Any) -> float | None:
    """Return the time budget in seconds (None for no budget: empty or 0)."""
    value = _real("time_budget_min", minutes)
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
              push_checkpoints: bool = False) -> dict[str, Any]:
        """Start training a new model on ``corpus_text`` (empty: the default corpus); return the status.

        Model size: a preset (tiny/small/base) with optional overrides. ``time_budget_min`` > 0 pauses the run
        after that many minutes. With ``push_checkpoints`` every checkpoint is pushed to ``hub_repo_id``.
        """
        form = dict(locals())
        del form["self"], form["corpus_text"]
        return self.start([corpus_text] if (corpus_text or "").strip() else None, **form)

    def start(self, texts: list[str] | None, **form: Any) -> dict[str, Any]:
        """Start a run on ``texts`` with the fields of :meth:`train` (after ``corpus_text``); return the status."""
        hub_settings = self.hub_settings(form.pop("hub_repo_id"), form.pop("hub_token"), form.pop("hub_private"),
                                         form.pop("push_checkpoints"))
        budget = _budget_s(form.pop("time_budget_min"))
        model = model_preset(form.pop("preset") or "tiny", **{k: _whole(k, form.pop(k)) for k in MODEL_FIELDS})
        max_iterations = _whole("max_iterations", form.pop("max_iterations"))
        settings = {k: _whole(k, form.pop(k)) for k in WHOLE_SETTINGS}
        settings.update({k: _real(k, form.pop(k)) for k in REAL_SETTINGS}, lr_schedule=form.pop("lr_schedule"))
        if max_iterations is None:
            raise ConfigError("max_iterations is required: give the number of iterations to train.")
        if form:
            raise TypeError(f"unknown training fields: {', '.join(form)}")
        return self.job.start(texts, model, max_iterations, time_budget_s=budget, hub_settings=hub_settings,
                              **settings)

    def stop_training(self) -> dict[str, Any]:
        """Ask the running job to pause after the current batch; ``status`` is "stopping" or "not training"."""
        stopping = self.job.stop()
        return {"status": "stopping" if stopping else "not training",
                "message": "Stopping after the current batch; a model_paused checkpoint will be saved."
                if stopping else "No training run is active."}

    def resume_training(self, checkpoint: str, max_iterations: int | None = None, batch_size: int | None = None,
                        lr: float | None = None, load_optimizer: bool = True, time_budget_min: float = 0,
                        hub_repo_id: str = "", hub_token: str = "", hub_private: bool = True,
                        push_checkpoints: bool = False) -> dict[str, Any]:
        """Resume a listed checkpoint (a name from /list_checkpoints) to ``max_iterations``; return the status.

        Empty (or 0) ``max_iterations``, ``batch_size`` and ``lr`` keep the checkpoint's target and settings.
        """
        return self.job.resume(
            checkpoint, _whole("max_iterations", max_iterations) or None, _whole("batch_size", batch_size) or None,
            _real("lr", lr) or None, bool(load_optimizer), _budget_s(time_budget_min),
            self.hub_settings(hub_repo_id, hub_token, hub_private, push_checkpoints))

    def status(self, history_since: int = 0) -> dict[str, Any]:
        """Return the job's status with the history records after iteration ``history_since`` (-1: none)."""
        since = _whole("history_since", history_since)
        return self.job.status(history_since=None if since is not None and since < 0 else since or 0)

    def list_checkpoints(self, hub_repo_id: str = "", hub_token: str = "", verify: bool = False) -> dict[str, Any]:
        """Return ``{"checkpoints": [...], "warning": ...}``: local and Hub checkpoints, newest first.

        With ``verify`` every local file is checked against its checksum.
        """
        entries, warning = self.job.list_checkpoints(self.hub_settings(hub_repo_id, hub_token), bool(verify))
        return {"checkpoints": entries, "warning": warning}

    def generate(self, checkpoint: str, prompt: str = "", temperature: float = 1.0, top_k: int = 50,
                 max_new_tokens: int = 50, hub_repo_id: str = "", hub_token: str = "") -> dict[str, Any]:
        """Sample a continuation of ``prompt`` from a listed checkpoint; return ``{"checkpoint", "text"}``."""
        text = self.job.generate(checkpoint, prompt or "", _real("temperature", temperature),
                                 _whole("top_k", top_k), _whole("max_new_tokens", max_new_tokens),
                                 self.hub_settings(hub_repo_id, hub_token))
        return {"checkpoint": checkpoint, "text": text}


API_NAMES = ("train", "stop_training", "resume_training", "status", "list_checkpoints", "generate")


def _as_endpoint(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an AppAPI method so that bad input reaches the client as a one-sentence ``gr.Error``."""
    @functools.wraps(method)
    def endpoint(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (AZRError, ValueError) as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
    return endpoint


def _warning(exc: Exception) -> str:
    return f"⚠️ {exc}"


def _attempt(action: Callable[[], str]) -> str:
    """Return the message of ``action``, or the error's sentence for bad input."""
    try:
        return action()
    except (AZRError, ValueError) as exc:
        return _warning(exc)


# ---------------------------------------------------------------------------- rendering


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def render_status(status: dict[str, Any]) -> str:
    """Return the status panel as Markdown."""
    total = status["max_iterations"]
    percent = f" ({100 * status['iteration'] / total:.1f}%)" if total else ""
    lines = [
        f"**State:** `{status['state']}` · **Iteration:** {status['iteration']} / {total}{percent}",
        "",
        "| loss | val loss | reward | LR | tokens/s | ETA | memory |",
        "|---|---|---|---|---|---|---|",
        f"| {_fmt(status['loss'])} | {_fmt(status['val_loss'])} | {_fmt(status['reward'])} | "
        f"{_fmt(status['lr'], '.3g')} | {_fmt(status['tokens_per_s'], ',.0f')} | {_duration(status['eta_s'])} | "
        f"{_fmt(status['memory_mb'], ',.0f')} MB |",
    ]
    if status["reward_components"]:
        parts = " · ".join(f"{k} {v:.3f}" for k, v in status["reward_components"].items())
        lines += ["", f"**Reward components:** {parts}"]
    lines += ["", f"**Last checkpoint:** {status['checkpoint'] or '—'}"]
    if status["pushes"]:
        lines.append("**Hub pushes:** " + " · ".join(f"{k}: {v}" for k, v in status["pushes"].items()))
    if status["message"]:
        lines += ["", status["message"]]
    lines += [f"⚠️ {warning}" for warning in status["warnings"]]
    return "\n".join(lines)


def render_progress(status: dict[str, Any]) -> str:
    """Return an HTML progress bar of iteration / max_iterations."""
    total = max(status["max_iterations"], 1)
    return f'<progress value="{status["iteration"]}" max="{total}" style="width:100%;height:1.2em"></progress>'


def history_frame(history: list[dict[str, Any]], series: dict[str, str]) -> pd.DataFrame:
    """Return a long DataFrame (iteration, value, series) of the history keys in ``series`` (key -> label)."""
    rows = []
    for key, label in series.items():
        points = [(r["iteration"], r[key]) for r in history if r.get(key) is not None]
        rows += [(i, v, label) for i, v in points[:: max(1, len(points) // CHART_POINTS)]]
    return chart_frame(rows, series.values())


def chart_frame(rows: list[tuple[int, float, str]], labels: Iterable[str]) -> pd.DataFrame:
    """Return (iteration, value, series) rows as a DataFrame typed for a line chart.

    Each label also gets a row without a value: the page fixes a chart's series (and their colours) when it
    first draws it, so even an empty chart must name them.
    """
    placeholders = [(0, float("nan"), label) for label in labels]
    return pd.DataFrame(placeholders + rows, columns=["iteration", "value", "series"]).astype(CHART_TYPES)


def line_chart(frame: pd.DataFrame, title: str, elem_id: str, height: int = 260) -> gr.LinePlot:
    """Return a line chart of a :func:`chart_frame`, one coloured line per series."""
    return gr.LinePlot(frame, x="iteration", y="value", color="series", title=title, height=height, elem_id=elem_id)


def _label(entry: dict[str, Any]) -> str:
    where = "Hub" if entry["source"] == "hub" else "local"
    target = f"/{entry['max_iterations']}" if entry["max_iterations"] else ""
    return f"{entry['name']} · iteration {entry['iteration']}{target} · {where}"


def _table(entries: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [{**e, "size_mb": round(e["size_bytes"] / 2**20, 2), "loss": _fmt(e["loss"]),
             "val_loss": _fmt(e["val_loss"]), "timestamp": (e["timestamp"] or "")[:19].replace("T", " ")}
            for e in entries]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


# ---------------------------------------------------------------------------- the page


def build_ui(job: TrainingJob) -> gr.Blocks:
    """Return the app's Blocks for ``job`` (one job per process; every session sees it)."""
    api = AppAPI(job)
    tiny = PRESETS["tiny"]
    idle = api.status(-1)
    with gr.Blocks(title="AZR Trainer", analytics_enabled=False) as demo:
        gr.Markdown("# AZR Trainer\nTrain a small language model, watch it learn, stop it any time and "
                    "resume it later with a bigger target.")
        seen = gr.State(None)
        timer = gr.Timer(POLL_S)
        with gr.Tab("Train"):
            with gr.Row():
                with gr.Column(scale=1):
                    corpus = gr.File(label=f"Corpus ({', '.join(TEXT_SUFFIXES)}; at most "
                                           f"{max_upload_bytes() // 2**20} MB; empty: tiny Shakespeare)",
                                     file_count="multiple", file_types=list(TEXT_SUFFIXES), elem_id="corpus")
                    preset_choice = gr.Dropdown(list(PRESETS), value="tiny", label="Model preset")
                    with gr.Accordion("Model size (advanced)", open=False):
                        model_fields = {name: gr.Number(getattr(tiny, name), label=name, precision=0,
                                                        elem_id=f"train-{name}") for name in MODEL_FIELDS}
                    with gr.Row():
                        max_iterations = gr.Number(DEFAULTS.max_iterations, label="Max iterations", precision=0,
                                                   elem_id="train-max-iterations")
                        batch_size = gr.Number(DEFAULTS.batch_size, label="Batch size", precision=0,
                                               elem_id="train-batch-size")
                    with gr.Row():
                        lr = gr.Number(DEFAULTS.lr, label="Learning rate", elem_id="train-lr")
                        lr_schedule = gr.Dropdown(list(LR_SCHEDULES), value=DEFAULTS.lr_schedule,
                                                  label="LR schedule")
                    with gr.Accordion("Run settings", open=False):
                        with gr.Row():
                            warmup = gr.Number(DEFAULTS.warmup, label="Warmup iterations", precision=0)
                            save_every = gr.Number(DEFAULTS.save_every, label="Save every", precision=0,
                                                   elem_id="train-save-every")
                        with gr.Row():
                            self_play_every = gr.Number(DEFAULTS.self_play_every, label="Self-play every",
                                                        precision=0)
                            rl_weight = gr.Number(DEFAULTS.rl_weight, label="RL weight")
                        seed = gr.Number(DEFAULTS.seed, label="Seed", precision=0)
                    budget = gr.Number(0, label="Train for at most N minutes, then pause (and push); 0: no limit",
                                       elem_id="train-budget")
                    with gr.Row():
                        start_button = gr.Button("▶️ Start", variant="primary", elem_id="start")
                        stop_button = gr.Button("⏸️ Stop", variant="stop", elem_id="stop")
                    train_message = gr.Markdown(elem_id="train-message")
                with gr.Column(scale=2):
                    status_panel = gr.Markdown(render_status(idle), elem_id="status")
                    progress = gr.HTML(render_progress(idle), elem_id="progress")
                    with gr.Row():
                        loss_plot = line_chart(history_frame([], LOSS_SERIES), "Loss", elem_id="loss-plot")
                        reward_plot = line_chart(history_frame([], REWARD_SERIES), "Reward", elem_id="reward-plot")
                    with gr.Accordion("Resume a checkpoint", open=True):
                        with gr.Row():
                            resume_choice = gr.Dropdown([], label="Checkpoint", scale=2, elem_id="resume-choice")
                            resume_max = gr.Number(0, label="New max iterations", precision=0,
                                                   elem_id="resume-max")
                        listing_note = gr.Markdown()
                        with gr.Row():
                            resume_batch = gr.Number(0, label="Batch size (0: keep)", precision=0)
                            resume_lr = gr.Number(0, label="Learning rate (0: keep)")
                            load_optimizer = gr.Checkbox(True, label="Load optimizer state")
                        lr_preview = line_chart(chart_frame([], LR_PARTS), "LR schedule: trained and re-planned",
                                                elem_id="lr-preview", height=200)
                        preview_note = gr.Markdown()
                        resume_button = gr.Button("⏯️ Resume", variant="primary", elem_id="resume")
                        resume_message = gr.Markdown(elem_id="resume-message")

        with gr.Tab("Checkpoints"):
            table = gr.Dataframe(_table([]), label="Checkpoints (local and Hub), newest first",
                                 interactive=False, elem_id="checkpoint-table")
            with gr.Row():
                manage_choice = gr.Dropdown([], label="Checkpoint", scale=2)
                refresh_button = gr.Button("🔄 Refresh (verify files)")
                delete_button = gr.Button("🗑️ Delete", variant="stop")
                download_button = gr.Button("⬇️ Download as zip")
                push_button = gr.Button("☁️ Push to Hub")
            with gr.Row(visible=False) as confirm_row:
                confirm_text = gr.Markdown()
                confirm_button = gr.Button("Yes, delete it", variant="stop")
                cancel_button = gr.Button("Cancel")
            archive = gr.File(label="Zip", visible=False)
            manage_message = gr.Markdown()

        with gr.Tab("Generate"):
            with gr.Row():
                generate_choice = gr.Dropdown([], label="Checkpoint", scale=2)
                temperature = gr.Number(1.0, label="Temperature")
                top_k = gr.Number(50, label="Top-k (0: no limit)", precision=0)
                max_new_tokens = gr.Number(50, label="Max new tokens", precision=0)
            prompt = gr.Textbox(label="Prompt", lines=2)
            generate_button = gr.Button("✨ Generate", variant="primary")
            generated = gr.Textbox(label="Generated text", lines=8)
        with gr.Tab("Hub settings"):
            hub_repo = gr.Textbox(job.hub_repo, label="Hub repo id", placeholder="user/my-run",
                                  info="Checkpoints of this repo are listed beside the local ones.")
            hub_token = gr.Textbox(label="Hub token", type="password",
                                   placeholder="empty: the HF_TOKEN environment variable / Space secret",
                                   info="Used for this session's requests only; never shown, logged or stored.")
            hub_private = gr.Checkbox(True, label="Create the repo private")
            hub_push = gr.Checkbox(False, label="Push every checkpoint while training")
        hub_all = {"hub_repo_id": hub_repo, "hub_token": hub_token, "hub_private": hub_private,
                   "push_checkpoints": hub_push}

        # ------------------------------------------------------------------ events
        choosers = [resume_choice, generate_choice, manage_choice]

        def listing(hub_repo_id: str, hub_token: str, *current: str | None, verify: bool = False,
                    refresh_hub: bool = True, select_newest: bool = False) -> tuple[Any, ...]:
            """Updates of the three checkpoint dropdowns (keeping ``current`` choices), the table and the note."""
            entries, warning = job.list_checkpoints(api.hub_settings(hub_repo_id, hub_token), verify, refresh_hub)
            names = [e["name"] for e in entries]
            choices = [(_label(e), e["name"]) for e in entries]
            newest = names[0] if names else None
            values = [value if value in names else newest for value in current]
            if select_newest:
                values[0] = newest
            note = _warning(warning) if warning else ""
            if entries and entries[0]["source"] == "hub":
                note = f"The Hub holds a newer checkpoint than this disk: {newest} (selected; press Resume). " + note
            return (*(gr.update(choices=choices, value=v) for v in values), _table(entries), note)

        listing_inputs = [hub_repo, hub_token, *choosers]
        listing_outputs = [*choosers, table, listing_note]

        def poll(previous: tuple | None, hub_repo_id: str, hub_token: str, *current: str | None) -> tuple[Any, ...]:
            """Redraw what changed since ``previous``; list checkpoints again when the state or checkpoint did."""
            status = api.status()
            key = (status["state"], status["checkpoint"], status["iteration"], status["message"],
                   tuple(status["pushes"].items()), len(status["history"]))
            if key == previous:
                return (gr.skip(),) * (5 + len(listing_outputs))
            history = status["history"]
            panels = (render_status(status), render_progress(status),
                      history_frame(history, LOSS_SERIES),
                      history_frame(history, REWARD_SERIES), key)
            if previous is not None and previous[:2] == key[:2]:
                return (*panels, *(gr.skip(),) * len(listing_outputs))
            finished = previous is not None and key[0] in FINAL_STATES and previous[0] not in FINAL_STATES
            return (*panels, *listing(hub_repo_id, hub_token, *current, refresh_hub=previous is None or finished,
                                      select_newest=finished))

        poll_outputs = [status_panel, progress, loss_plot, reward_plot, seen, *listing_outputs]
        for trigger in (timer.tick, demo.load):
            trigger(poll, inputs=[seen, *listing_inputs], outputs=poll_outputs, show_progress="hidden",
                    api_visibility="private", concurrency_limit=None)

        preset_choice.change(lambda name: [getattr(PRESETS[name], f) for f in MODEL_FIELDS], inputs=preset_choice,
                             outputs=list(model_fields.values()), api_visibility="private")

        def on_start(files: list[str] | None, **form: Any) -> str:
            def start() -> str:
                status = api.start(read_uploads(files), **form)
                return f"Started: training to {status['max_iterations']} iterations."
            return _attempt(start)

        train_form = {"preset": preset_choice, **model_fields, "max_iterations": max_iterations,
                      "batch_size": batch_size, "lr": lr, "lr_schedule": lr_schedule, "warmup": warmup,
                      "save_every": save_every, "self_play_every": self_play_every, "rl_weight": rl_weight,
                      "seed": seed, "time_budget_min": budget, **hub_all}
        start_button.click(on_start, inputs_kwargs={"files": corpus, **train_form}, outputs=train_message,
                           api_visibility="private")
        stop_button.click(lambda: api.stop_training()["message"], outputs=train_message, api_visibility="private")

        def prefill(name: str | None, hub_repo_id: str, hub_token: str) -> Any:
            entries, _ = job.list_checkpoints(api.hub_settings(hub_repo_id, hub_token), refresh_hub=False)
            targets = {e["name"]: e["max_iterations"] for e in entries}
            return targets.get(name, gr.skip())

        def preview(name: str | None, target: int | None, new_lr: float | None, hub_repo_id: str,
                    hub_token: str) -> tuple[Any, str]:
            if not name:
                return chart_frame([], LR_PARTS), ""
            try:
                records = job.lr_preview(name, _whole("max_iterations", target) or None,
                                         _real("lr", new_lr) or None, api.hub_settings(hub_repo_id, hub_token))
            except (AZRError, ValueError) as exc:
                return gr.skip(), _warning(exc)
            return chart_frame([(r["iteration"], r["lr"], r["part"]) for r in records], LR_PARTS), ""

        preview_inputs = [resume_choice, resume_max, resume_lr, hub_repo, hub_token]
        resume_choice.change(prefill, inputs=[resume_choice, hub_repo, hub_token], outputs=resume_max,
                             api_visibility="private")
        for trigger in (resume_choice, resume_max, resume_lr):
            trigger.change(preview, inputs=preview_inputs, outputs=[lr_preview, preview_note],
                           api_visibility="private", show_progress="hidden")

        def on_resume(**form: Any) -> str:
            def resume() -> str:
                status = api.resume_training(**form)
                return f"Resuming {form['checkpoint']}: training to {status['max_iterations'] or 'its target'}."
            return _attempt(resume)

        resume_button.click(on_resume, inputs_kwargs={
            "checkpoint": resume_choice, "max_iterations": resume_max, "batch_size": resume_batch,
            "lr": resume_lr, "load_optimizer": load_optimizer, "time_budget_min": budget, **hub_all},
            outputs=resume_message, api_visibility="private")

        refresh_button.click(lambda *values: listing(*values, verify=True), inputs=listing_inputs,
                             outputs=listing_outputs, api_visibility="private")

        def ask_delete(name: str | None) -> tuple[Any, str]:
            if not name:
                return gr.update(visible=False), "Choose a checkpoint first."
            return gr.update(visible=True), f"Delete **{name}** from this disk? This cannot be undone."

        delete_button.click(ask_delete, inputs=manage_choice, outputs=[confirm_row, confirm_text],
                            api_visibility="private")
        cancel_button.click(lambda: gr.update(visible=False), outputs=confirm_row, api_visibility="private")

        def delete(name: str, *values: Any) -> tuple[Any, ...]:
            try:
                job.delete(name)
            except (AZRError, ValueError) as exc:
                return (gr.update(visible=False), *(gr.skip(),) * len(listing_outputs), _warning(exc))
            return (gr.update(visible=False), *listing(*values), f"Deleted {name}.")

        confirm_button.click(delete, inputs=[manage_choice, *listing_inputs],
                             outputs=[confirm_row, *listing_outputs, manage_message], api_visibility="private")

        def download(name: str | None, repo: str, token: str) -> tuple[Any, str]:
            try:
                path = job.archive(name or "", api.hub_settings(repo, token))
            except (AZRError, ValueError) as exc:
                return gr.update(visible=False), _warning(exc)
            return gr.update(value=str(path), visible=True), f"{path.name} is ready."

        download_button.click(download, inputs=[manage_choice, hub_repo, hub_token],
                              outputs=[archive, manage_message], api_visibility="private")
        push_button.click(
            lambda name, repo, token, private: _attempt(
                lambda: f"Pushed {name}: commit {job.push(name or '', api.hub_settings(repo, token, private))}."),
            inputs=[manage_choice, hub_repo, hub_token, hub_private], outputs=manage_message,
            api_visibility="private")

        generate_button.click(
            lambda *values: _attempt(lambda: api.generate(*values)["text"]),
            inputs=[generate_choice, prompt, temperature, top_k, max_new_tokens, hub_repo, hub_token],
            outputs=generated, api_visibility="private")

        for name in API_NAMES:
            gr.api(_as_endpoint(getattr(api, name)), api_name=name,
                   concurrency_limit=None if name in ("status", "stop_training") else "default")
    return demo
