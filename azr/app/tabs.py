"""The page's tabs: each function lays out one tab and returns its components; :mod:`azr.app.events` wires them.

A form's fields are kept by the name of the API parameter they fill (``train_form["max_iterations"]``), so the
page's buttons hand them on to :class:`azr.app.api.AppAPI` as keyword arguments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from azr.app import hints
from azr.app.api import DEFAULTS, MODEL_FIELDS, max_upload_bytes
from azr.app.compare import comparison_charts
from azr.app.hints import explain
from azr.app.render import (
    LOSS_AXIS,
    LOSS_SERIES,
    LR_AXIS,
    LR_PARTS,
    REWARD_AXIS,
    REWARD_SERIES,
    chart_frame,
    checkpoint_table,
    history_frame,
    line_chart,
    render_memory,
    render_progress,
    render_status,
    runs_table,
)
from azr.config import EXTEND_SCHEDULES, LR_SCHEDULES, PRECISIONS, PRESET_TRAINING, PRESETS
from azr.data.files import TEXT_SUFFIXES

Fields = dict[str, Any]  # components by the API parameter they fill

WARMUP_INFO = ("Iterations of linear LR warmup. Empty: the preset's ("
               + ", ".join(f"{name} {values['warmup']}" for name, values in PRESET_TRAINING.items())
               + "), at most half the run, so the LR decays before the run ends.")


@dataclass
class ResumeForm:
    """The Train tab's "Resume a checkpoint": the fields of ``/resume_training`` and the LR preview."""

    form: Fields  # checkpoint, max_iterations, batch_size, lr, load_optimizer, extend_schedule, run_name
    listing_note: gr.Markdown
    lr_preview: gr.LinePlot
    preview_note: gr.Markdown
    button: gr.Button
    message: gr.Markdown


@dataclass
class TrainTab:
    """The Train tab: the new run's form with Start and Stop, the status and its charts, and the Resume form."""

    form: Fields  # the fields of /train but the corpus text and the Hub settings
    corpus: gr.File
    start: gr.Button
    stop: gr.Button
    message: gr.Markdown
    status: gr.Markdown
    progress: gr.HTML
    loss_plot: gr.LinePlot
    reward_plot: gr.LinePlot
    resume: ResumeForm
    memory: gr.Markdown  # the estimated memory of the chosen model, before Start


@dataclass
class CheckpointsTab:
    """The Checkpoints tab: the checkpoint and run tables, and what can be done with the chosen checkpoint."""

    table: gr.Dataframe
    runs: gr.Dataframe
    choice: gr.Dropdown
    refresh: gr.Button
    delete: gr.Button
    download: gr.Button
    push: gr.Button
    confirm_row: gr.Row
    confirm_text: gr.Markdown
    confirm: gr.Button
    cancel: gr.Button
    archive: gr.File
    message: gr.Markdown


@dataclass
class GenerateTab:
    """The Generate tab: a checkpoint, the sampling settings (in ``/generate``'s order) and the text."""

    choice: gr.Dropdown
    sampling: list[Any]  # temperature, top_k, max_new_tokens
    seed: gr.Number
    prompt: gr.Textbox
    button: gr.Button
    generated: gr.Textbox


@dataclass
class RunsTab:
    """The Runs tab: the runs to compare and their curves, one chart per measure (loss, val loss, LR)."""

    tab: gr.Tab
    choice: gr.CheckboxGroup
    charts: list[gr.LinePlot]
    message: gr.Markdown


@dataclass
class HubTab:
    """The Hub settings tab: the Hub fields of the API, by name."""

    fields: Fields  # hub_repo_id, hub_token, hub_private, push_checkpoints


def train_tab(idle: dict[str, Any], initial_memory: dict[str, Any]) -> TrainTab:
    """Lay out the Train tab, its status panel showing ``idle`` until the first poll and the estimated memory of
    its default model (``/estimate_memory``'s answer)."""
    with gr.Tab("Train"), gr.Row():
        with gr.Column(scale=1):
            corpus, form = _data_fields()
            form.update(_model_fields())
            memory = gr.Markdown(render_memory(initial_memory), elem_id="memory-estimate")
            form.update(_run_settings())
            form["time_budget_min"] = gr.Number(0, label="Train for at most N minutes, then pause (and push); 0: "
                                                "no limit", elem_id="train-budget")
            with gr.Row():
                start = gr.Button("▶️ Start", variant="primary", elem_id="start")
                stop = gr.Button("⏸️ Stop", variant="stop", elem_id="stop")
            message = gr.Markdown(elem_id="train-message")
            explain(form, hints.TRAIN)
        with gr.Column(scale=2):
            status = gr.Markdown(render_status(idle), elem_id="status")
            progress = gr.HTML(render_progress(idle), elem_id="progress")
            with gr.Row():
                loss_plot = line_chart(history_frame([], LOSS_SERIES), "Loss", "loss-plot", LOSS_AXIS)
                reward_plot = line_chart(history_frame([], REWARD_SERIES), "Reward", "reward-plot", REWARD_AXIS)
            resume = _resume_form()
    return TrainTab(form, corpus, start, stop, message, status, progress, loss_plot, reward_plot, resume, memory)


def _data_fields() -> tuple[gr.File, Fields]:
    """The corpus upload, the Hub dataset (instead of a corpus) and the run's name."""
    corpus = gr.File(label=f"Corpus ({', '.join(TEXT_SUFFIXES)}; at most {max_upload_bytes() // 2**20} MiB; "
                           "empty: tiny Shakespeare)", file_count="multiple", file_types=list(TEXT_SUFFIXES),
                     elem_id="corpus")
    with gr.Accordion("Or a Hub dataset", open=False):
        dataset = gr.Textbox(label="Dataset", placeholder="user/name[:config]", elem_id="dataset",
                             info="Its revision is recorded, so a resume loads the same data.")
        with gr.Row():
            split = gr.Textbox("train", label="Split")
            column = gr.Textbox("text", label="Text column")
    run_name = gr.Textbox(label="Run name (optional)", placeholder="empty: run-<date>-<time>",
                          info="Each Start trains a new run in its own folder.", elem_id="train-run-name")
    return corpus, {"dataset": dataset, "dataset_split": split, "text_column": column, "run_name": run_name}


def _model_fields() -> Fields:
    """The model preset and its sizes, the length of the run, its batch size and LR."""
    tiny = PRESETS["tiny"]
    fields: Fields = {"preset": gr.Dropdown(list(PRESETS), value="tiny", label="Model preset",
                                            elem_id="train-preset")}
    with gr.Accordion("Model size (advanced)", open=False):
        fields.update({name: gr.Number(getattr(tiny, name), label=name, precision=0, elem_id=f"train-{name}")
                       for name in MODEL_FIELDS})
    with gr.Row():
        fields["max_iterations"] = gr.Number(DEFAULTS.max_iterations, label="Max iterations", precision=0,
                                             elem_id="train-max-iterations")
        fields["batch_size"] = gr.Number(DEFAULTS.batch_size, label="Batch size", precision=0,
                                         elem_id="train-batch-size")
    with gr.Row():
        fields["lr"] = gr.Number(PRESET_TRAINING["tiny"]["lr"], label="Learning rate", elem_id="train-lr")
        fields["lr_schedule"] = gr.Dropdown(list(LR_SCHEDULES), value=DEFAULTS.lr_schedule, label="LR schedule")
    return fields


def _run_settings() -> Fields:
    """The "Run settings" accordion: warmup, saving, self-play, seed and precision."""
    fields: Fields = {}
    with gr.Accordion("Run settings", open=False):
        with gr.Row():
            fields["warmup"] = gr.Textbox("", label="Warmup iterations", elem_id="train-warmup",
                                          placeholder="the preset's, at most half the run", info=WARMUP_INFO)
            fields["save_every"] = gr.Number(DEFAULTS.save_every, label="Save every", precision=0,
                                             elem_id="train-save-every")
        with gr.Row():
            fields["self_play_every"] = gr.Number(DEFAULTS.self_play_every, label="Self-play every", precision=0)
            fields["rl_weight"] = gr.Number(DEFAULTS.rl_weight, label="RL weight")
        fields["rewards"] = gr.Textbox(DEFAULTS.rewards, label="Self-play rewards (name(options)*weight, ...)",
                                       elem_id="train-rewards")
        fields["seed"] = gr.Number(DEFAULTS.seed, label="Seed", precision=0)
        with gr.Row():
            fields["precision"] = gr.Dropdown(list(PRECISIONS), value=DEFAULTS.precision, label="Precision")
            fields["grad_accum_steps"] = gr.Number(DEFAULTS.grad_accum_steps, label="Accumulation steps",
                                                   precision=0)
        fields["compile"] = gr.Checkbox(DEFAULTS.compile, label="torch.compile", elem_id="train-compile")
    return fields


def _resume_form() -> ResumeForm:
    """The "Resume a checkpoint" accordion: which checkpoint, what changes, and the LR it will follow."""
    with gr.Accordion("Resume a checkpoint", open=True):
        with gr.Row():
            form: Fields = {"checkpoint": gr.Dropdown([], label="Checkpoint", scale=2, elem_id="resume-choice"),
                            "max_iterations": gr.Number(0, label="New max iterations", precision=0,
                                                        elem_id="resume-max")}
        listing_note = gr.Markdown()
        with gr.Row():
            form["batch_size"] = gr.Number(0, label="Batch size (0: keep)", precision=0)
            form["lr"] = gr.Number(0, label="Learning rate (0: keep)")
            form["load_optimizer"] = gr.Checkbox(True, label="Load optimizer state")
            form["extend_schedule"] = gr.Radio(list(EXTEND_SCHEDULES), value=EXTEND_SCHEDULES[0],
                                               label="Extending a finished run", elem_id="resume-extend")
        form["run_name"] = gr.Textbox(label="Continue as a new run (optional name)", elem_id="resume-run",
                                      info="Empty: in the checkpoint's own run. A name: in a new run of that name, "
                                           "leaving the checkpoint's run as it is.")
        lr_preview = line_chart(chart_frame([], LR_PARTS), "LR schedule: trained and re-planned", "lr-preview",
                                LR_AXIS, height=240)
        preview_note = gr.Markdown(elem_id="lr-preview-note")
        button = gr.Button("⏯️ Resume", variant="primary", elem_id="resume")
        message = gr.Markdown(elem_id="resume-message")
    explain(form, hints.RESUME)
    return ResumeForm(form, listing_note, lr_preview, preview_note, button, message)


def checkpoints_tab() -> CheckpointsTab:
    """Lay out the Checkpoints tab (Delete asks for a confirmation in a row that is hidden until then)."""
    with gr.Tab("Checkpoints"):
        table = gr.Dataframe(checkpoint_table([]), label="Checkpoints (local and Hub), newest first",
                             interactive=False, elem_id="checkpoint-table")
        runs = gr.Dataframe(runs_table([]), label="Runs, newest first", interactive=False, elem_id="runs-table")
        with gr.Row():
            choice = gr.Dropdown([], label="Checkpoint", scale=2, elem_id="manage-choice")
            refresh = gr.Button("🔄 Refresh (verify files)")
            delete = gr.Button("🗑️ Delete", variant="stop", elem_id="delete")
            download = gr.Button("⬇️ Download as zip")
            push = gr.Button("📤 Push to Hub", elem_id="push")
        with gr.Row(visible=False) as confirm_row:
            confirm_text = gr.Markdown()
            confirm = gr.Button("Yes, delete it", variant="stop", elem_id="confirm-delete")
            cancel = gr.Button("Cancel")
        archive = gr.File(label="Zip", visible=False, elem_id="manage-zip")
        message = gr.Markdown(elem_id="manage-message")
    explain({"checkpoint": choice}, hints.CHECKPOINTS)
    return CheckpointsTab(table, runs, choice, refresh, delete, download, push, confirm_row, confirm_text, confirm,
                          cancel, archive, message)


def generate_tab() -> GenerateTab:
    """Lay out the Generate tab."""
    with gr.Tab("Generate"):
        with gr.Row():
            choice = gr.Dropdown([], label="Checkpoint", scale=2, elem_id="generate-choice")
            sampling = [gr.Number(1.0, label="Temperature"), gr.Number(50, label="Top-k (0: no limit)", precision=0),
                        gr.Number(50, label="Max new tokens", precision=0)]
            seed = gr.Textbox("", label="Seed (empty: random)", placeholder="random", elem_id="generate-seed",
                              info="The same seed and settings give the same text.")
        prompt = gr.Textbox(label="Prompt", lines=2, elem_id="generate-prompt")
        button = gr.Button("✨ Generate", variant="primary", elem_id="generate")
        generated = gr.Textbox(label="Generated text", lines=8, elem_id="generate-text")
    explain(dict(zip(("checkpoint", "temperature", "top_k", "max_new_tokens", "prompt"), (choice, *sampling, prompt))),
            hints.GENERATE)
    return GenerateTab(choice, sampling, seed, prompt, button, generated)


def runs_tab() -> RunsTab:
    """Lay out the Runs tab (its list of runs is filled in when it is opened)."""
    with gr.Tab("Runs", elem_id="runs-tab") as tab:
        choice = gr.CheckboxGroup([], label="Runs to compare", elem_id="compare-choice",
                                  info="Tick runs to draw their curves together: one line per run, from the "
                                       "history each run stored.")
        message = gr.Markdown(elem_id="compare-message")
        with gr.Row():
            charts = comparison_charts()
    return RunsTab(tab, choice, charts, message)


def hub_tab(hub_repo: str) -> HubTab:
    """Lay out the Hub settings tab, its repo id prefilled with ``hub_repo`` (``AZR_HUB_REPO``)."""
    with gr.Tab("Hub settings"):
        repo = gr.Textbox(hub_repo, label="Hub repo id", placeholder="user/my-run",
                          info="Checkpoints of this repo are listed beside the local ones.")
        token = gr.Textbox(label="Hub token", type="password",
                           placeholder="empty: the HF_TOKEN environment variable / Space secret",
                           info="Used for this session's requests only; never shown, logged or stored.")
        private = gr.Checkbox(True, label="Create the repo private")
        push = gr.Checkbox(False, label="Push every checkpoint while training")
    fields = {"hub_repo_id": repo, "hub_token": token, "hub_private": private, "push_checkpoints": push}
    explain(fields, hints.HUB)
    return HubTab(fields)
