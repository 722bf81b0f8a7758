"""The Gradio page: Train (with Stop and Resume), Checkpoints (and runs), Generate and Hub tabs, and the API.

:func:`build_ui` builds the whole page in one function, with each event wired next to its components. The
same actions are API endpoints for ``gradio_client`` (see :class:`azr.appapi.AppAPI`): ``/train``,
``/stop_training``, ``/resume_training``, ``/status``, ``/list_checkpoints``, ``/list_runs`` and ``/generate``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from .appapi import API_NAMES, DEFAULTS, MODEL_FIELDS, AppAPI, as_endpoint, max_upload_bytes, read_uploads, real, \
    whole
from .config import LR_SCHEDULES, PRESETS
from .data import TEXT_SUFFIXES
from .errors import AZRError
from .feed import Feed, charts_stale, follow, status_key
from .jobs import TrainingJob
from .schedule import EXTEND_SCHEDULES
from .render import LOSS_SERIES, LR_PARTS, REWARD_SERIES, chart_frame, checkpoint_label, checkpoint_table, \
    history_frame, line_chart, render_progress, render_status, runs_table
from .status import FINAL_STATES

POLL_S = 1.0


def _warning(exc: Exception) -> str:
    return f"⚠️ {exc}"


def _attempt(action: Callable[[], str]) -> str:
    """Return the message of ``action``, or the error's sentence for bad input."""
    try:
        return action()
    except (AZRError, ValueError) as exc:
        return _warning(exc)


# ---------------------------------------------------------------------------- the page


def build_ui(job: TrainingJob) -> gr.Blocks:
    """Return the app's Blocks for ``job`` (one job per process; every session sees it)."""
    api = AppAPI(job)
    tiny = PRESETS["tiny"]
    idle = api.status(-1)
    with gr.Blocks(title="AZR Trainer", analytics_enabled=False) as demo:
        gr.Markdown("# AZR Trainer\nTrain a small language model, watch it learn, stop it any time and "
                    "resume it later with a bigger target.")
        feed = gr.State(Feed())
        timer = gr.Timer(POLL_S)
        with gr.Tab("Train"):
            with gr.Row():
                with gr.Column(scale=1):
                    corpus = gr.File(label=f"Corpus ({', '.join(TEXT_SUFFIXES)}; at most "
                                           f"{max_upload_bytes() // 2**20} MB; empty: tiny Shakespeare)",
                                     file_count="multiple", file_types=list(TEXT_SUFFIXES), elem_id="corpus")
                    run_name = gr.Textbox(label="Run name (optional)", placeholder="empty: run-<date>-<time>",
                                          info="Each Start trains a new run in its own folder.",
                                          elem_id="train-run-name")
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
                            extend = gr.Radio(list(EXTEND_SCHEDULES), value=EXTEND_SCHEDULES[0],
                                              label="Extending a finished run", elem_id="resume-extend")
                        lr_preview = line_chart(chart_frame([], LR_PARTS), "LR schedule: trained and re-planned",
                                                elem_id="lr-preview", height=200)
                        preview_note = gr.Markdown()
                        resume_button = gr.Button("⏯️ Resume", variant="primary", elem_id="resume")
                        resume_message = gr.Markdown(elem_id="resume-message")

        with gr.Tab("Checkpoints"):
            table = gr.Dataframe(checkpoint_table([]), label="Checkpoints (local and Hub), newest first",
                                 interactive=False, elem_id="checkpoint-table")
            runs_view = gr.Dataframe(runs_table([]), label="Runs, newest first", interactive=False,
                                     elem_id="runs-table")
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
                sample_seed = gr.Number(None, label="Seed (empty: random)", precision=0)
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
            """Updates of the three checkpoint dropdowns (keeping ``current`` choices), the checkpoint and run
            tables and the note."""
            entries, warning = job.list_checkpoints(api.hub_settings(hub_repo_id, hub_token), verify, refresh_hub)
            names = [e["name"] for e in entries]
            choices = [(checkpoint_label(e), e["name"]) for e in entries]
            newest = names[0] if names else None
            values = [value if value in names else newest for value in current]
            if select_newest:
                values[0] = newest
            note = _warning(warning) if warning else ""
            if entries and entries[0]["source"] == "hub":
                note = f"The Hub holds a newer checkpoint than this disk: {newest} (selected; press Resume). " + note
            return (*(gr.update(choices=choices, value=v) for v in values), checkpoint_table(entries),
                    runs_table(job.list_runs()), note)

        listing_inputs = [hub_repo, hub_token, *choosers]
        listing_outputs = [*choosers, table, runs_view, listing_note]

        def poll(page: Feed, hub_repo_id: str, hub_token: str, *current: str | None) -> tuple[Any, ...]:
            """Fetch the records the page lacks, redraw what changed, list checkpoints again when the launch,
            state or checkpoint changed."""
            previous = page.drawn
            status = follow(page, api.status)
            charts = (history_frame(page.records, LOSS_SERIES), history_frame(page.records, REWARD_SERIES)) \
                if charts_stale(page) else (gr.skip(), gr.skip())
            key = status_key(status)
            unchanged = (gr.skip(),) * len(listing_outputs)
            if key == previous:
                return (gr.skip(), gr.skip(), *charts, *unchanged)
            page.drawn = key
            panels = (render_status(status), render_progress(status), *charts)
            if previous is not None and previous[:3] == key[:3]:
                return (*panels, *unchanged)
            finished = previous is not None and key[1] in FINAL_STATES and previous[1] not in FINAL_STATES
            return (*panels, *listing(hub_repo_id, hub_token, *current, refresh_hub=previous is None or finished,
                                      select_newest=finished))

        gr.on([demo.load, timer.tick], poll, inputs=[feed, *listing_inputs],
              outputs=[status_panel, progress, loss_plot, reward_plot, *listing_outputs], show_progress="hidden",
              api_visibility="private", concurrency_limit=None)

        preset_choice.change(lambda name: [getattr(PRESETS[name], f) for f in MODEL_FIELDS], inputs=preset_choice,
                             outputs=list(model_fields.values()), api_visibility="private")

        def on_start(files: list[str] | None, **form: Any) -> str:
            def start() -> str:
                status = api.start(read_uploads(files), **form)
                return f"Started run {status['run']}: training to {status['max_iterations']} iterations."
            return _attempt(start)

        train_form = {"preset": preset_choice, **model_fields, "max_iterations": max_iterations,
                      "batch_size": batch_size, "lr": lr, "lr_schedule": lr_schedule, "warmup": warmup,
                      "save_every": save_every, "self_play_every": self_play_every, "rl_weight": rl_weight,
                      "seed": seed, "time_budget_min": budget, "run_name": run_name, **hub_all}
        start_button.click(on_start, inputs_kwargs={"files": corpus, **train_form}, outputs=train_message,
                           api_visibility="private")
        stop_button.click(lambda: api.stop_training()["message"], outputs=train_message, api_visibility="private")

        def prefill(name: str | None, hub_repo_id: str, hub_token: str) -> Any:
            entries, _ = job.list_checkpoints(api.hub_settings(hub_repo_id, hub_token), refresh_hub=False)
            targets = {e["name"]: e["max_iterations"] for e in entries}
            return targets.get(name, gr.skip())

        def preview(name: str | None, target: int | None, new_lr: float | None, extend_choice: str,
                    hub_repo_id: str, hub_token: str) -> tuple[Any, str]:
            if not name:
                return chart_frame([], LR_PARTS), ""
            try:
                records = job.lr_preview(name, whole("max_iterations", target) or None,
                                         real("lr", new_lr) or None, api.hub_settings(hub_repo_id, hub_token),
                                         extend_choice or None)
            except (AZRError, ValueError) as exc:
                return gr.skip(), _warning(exc)
            return chart_frame([(r["iteration"], r["lr"], r["part"]) for r in records], LR_PARTS), ""

        preview_inputs = [resume_choice, resume_max, resume_lr, extend, hub_repo, hub_token]
        resume_choice.change(prefill, inputs=[resume_choice, hub_repo, hub_token], outputs=resume_max,
                             api_visibility="private")
        for trigger in (resume_choice, resume_max, resume_lr, extend):
            trigger.change(preview, inputs=preview_inputs, outputs=[lr_preview, preview_note],
                           api_visibility="private", show_progress="hidden")

        def on_resume(**form: Any) -> str:
            def resume() -> str:
                status = api.resume_training(**form)
                return f"Resuming {form['checkpoint']}: training to {status['max_iterations'] or 'its target'}."
            return _attempt(resume)

        resume_button.click(on_resume, inputs_kwargs={
            "checkpoint": resume_choice, "max_iterations": resume_max, "batch_size": resume_batch,
            "lr": resume_lr, "load_optimizer": load_optimizer, "extend_schedule": extend, "time_budget_min": budget,
            **hub_all},
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
            inputs=[generate_choice, prompt, temperature, top_k, max_new_tokens, hub_repo, hub_token, sample_seed],
            outputs=generated, api_visibility="private")

        for name in API_NAMES:
            gr.api(as_endpoint(getattr(api, name)), api_name=name,
                   concurrency_limit=None if name in ("status", "stop_training") else "default")
    return demo
