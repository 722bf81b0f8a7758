"""The Gradio page: Train (with Stop and Resume), Checkpoints (and runs), Generate and Hub tabs, and the API.

:func:`build_ui` builds the whole page in one function, with each event wired next to its components. The
same actions are API endpoints for ``gradio_client`` (see :class:`azr.app.api.AppAPI`): ``/train``,
``/stop_training``, ``/resume_training``, ``/status``, ``/list_checkpoints``, ``/list_runs``, ``/generate``,
``/delete_checkpoint`` and ``/push_checkpoint``. Control actions need an owner (see :mod:`azr.app.owners`): every
handler gets the caller (the signed-in Hugging Face profile, injected by Gradio, and the *Owner password* field).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from azr.app.api import (
    API_NAMES,
    DEFAULTS,
    MODEL_FIELDS,
    AppAPI,
    as_endpoint,
    max_upload_bytes,
    read_uploads,
    real,
    whole,
)
from azr.app.feed import Feed, charts_stale, follow, status_key
from azr.app.jobs import TrainingJob
from azr.app.owners import Access, Caller
from azr.app.render import (
    LOSS_AXIS,
    LOSS_SERIES,
    LR_AXIS,
    LR_PARTS,
    REWARD_AXIS,
    REWARD_SERIES,
    chart_frame,
    checkpoint_label,
    checkpoint_table,
    history_frame,
    line_chart,
    lr_chart,
    render_progress,
    render_status,
    runs_table,
)
from azr.config import EXTEND_SCHEDULES, LR_SCHEDULES, PRECISIONS, PRESET_TRAINING, PRESETS
from azr.config.rewards import BUILTIN_NAMES
from azr.data.corpus import TEXT_SUFFIXES
from azr.errors import AZRError
from azr.training.status import FINAL_STATES

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


def build_ui(job: TrainingJob, access: Access | None = None) -> gr.Blocks:
    """Return the app's Blocks for ``job`` (one job per process; every session sees it) with ``access``'s owners
    (default: everyone is an owner)."""
    access = access or Access()
    api = AppAPI(job, access)
    tiny = PRESETS["tiny"]
    idle = api.status(-1)
    with gr.Blocks(title="AZR Trainer", analytics_enabled=False) as demo:
        gr.Markdown("# AZR Trainer\nTrain a small language model, watch it learn, stop it any time and "
                    "resume it later with a bigger target.")
        if access.oauth:
            gr.LoginButton()
        with_password = bool(access.password) and not access.private
        owner_password = gr.Textbox(label="Owner password", type="password", elem_id="owner-password",
                                    info="Needed to train, stop, resume, delete and push; visitors watch.") \
            if with_password else gr.State("")
        if not access.open:
            gr.Markdown(f"Visitors can watch; to control the training, {access.how()}.", elem_id="owner-note")
        feed = gr.State(Feed())
        timer = gr.Timer(POLL_S)
        with gr.Tab("Train"):
            with gr.Row():
                with gr.Column(scale=1):
                    corpus = gr.File(label=f"Corpus ({', '.join(TEXT_SUFFIXES)}; at most "
                                           f"{max_upload_bytes() // 2**20} MB; empty: tiny Shakespeare)",
                                     file_count="multiple", file_types=list(TEXT_SUFFIXES), elem_id="corpus")
                    with gr.Accordion("Or a Hub dataset", open=False):
                        dataset = gr.Textbox(label="Dataset", placeholder="user/name[:config]", elem_id="dataset",
                                             info="Its revision is recorded, so a resume loads the same data.")
                        with gr.Row():
                            dataset_split = gr.Textbox("train", label="Split")
                            text_column = gr.Textbox("text", label="Text column")
                    run_name = gr.Textbox(label="Run name (optional)", placeholder="empty: run-<date>-<time>",
                                          info="Each Start trains a new run in its own folder.",
                                          elem_id="train-run-name")
                    preset_choice = gr.Dropdown(list(PRESETS), value="tiny", label="Model preset",
                                                elem_id="train-preset")
                    with gr.Accordion("Model size (advanced)", open=False):
                        model_fields = {name: gr.Number(getattr(tiny, name), label=name, precision=0,
                                                        elem_id=f"train-{name}") for name in MODEL_FIELDS}
                    with gr.Row():
                        max_iterations = gr.Number(DEFAULTS.max_iterations, label="Max iterations", precision=0,
                                                   elem_id="train-max-iterations")
                        batch_size = gr.Number(DEFAULTS.batch_size, label="Batch size", precision=0,
                                               elem_id="train-batch-size")
                    with gr.Row():
                        lr = gr.Number(PRESET_TRAINING["tiny"]["lr"], label="Learning rate", elem_id="train-lr",
                                       info="Each preset fills in the LR and warmup measured best for it.")
                        lr_schedule = gr.Dropdown(list(LR_SCHEDULES), value=DEFAULTS.lr_schedule,
                                                  label="LR schedule")
                    with gr.Accordion("Run settings", open=False):
                        with gr.Row():
                            warmup = gr.Number(PRESET_TRAINING["tiny"]["warmup"], label="Warmup iterations",
                                               precision=0, elem_id="train-warmup")
                            save_every = gr.Number(DEFAULTS.save_every, label="Save every", precision=0,
                                                   elem_id="train-save-every")
                        with gr.Row():
                            self_play_every = gr.Number(DEFAULTS.self_play_every, label="Self-play every",
                                                        precision=0)
                            rl_weight = gr.Number(DEFAULTS.rl_weight, label="RL weight")
                        rewards = gr.Textbox(DEFAULTS.rewards, label="Self-play rewards (name(options)*weight, ...)",
                                             info="Built-ins: " + ", ".join(BUILTIN_NAMES) + "; or package.module:function.",
                                             elem_id="train-rewards")
                        seed = gr.Number(DEFAULTS.seed, label="Seed", precision=0)
                        with gr.Row():
                            precision = gr.Dropdown(list(PRECISIONS), value=DEFAULTS.precision, label="Precision")
                            grad_accum = gr.Number(DEFAULTS.grad_accum_steps, label="Accumulation steps", precision=0)
                            compile_model = gr.Checkbox(DEFAULTS.compile, label="torch.compile")
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
                        loss_plot = line_chart(history_frame([], LOSS_SERIES), "Loss", "loss-plot", LOSS_AXIS)
                        reward_plot = line_chart(history_frame([], REWARD_SERIES), "Reward", "reward-plot",
                                                 REWARD_AXIS)
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
                        resume_run = gr.Textbox(label="Continue as a new run (optional name)", elem_id="resume-run",
                                                info="Empty: in the checkpoint's own run. A name: in a new run of "
                                                     "that name, leaving the checkpoint's run as it is.")
                        lr_preview = line_chart(chart_frame([], LR_PARTS), "LR schedule: trained and re-planned",
                                                "lr-preview", LR_AXIS, height=200)
                        preview_note = gr.Markdown()
                        resume_button = gr.Button("⏯️ Resume", variant="primary", elem_id="resume")
                        resume_message = gr.Markdown(elem_id="resume-message")

        with gr.Tab("Checkpoints"):
            table = gr.Dataframe(checkpoint_table([]), label="Checkpoints (local and Hub), newest first",
                                 interactive=False, elem_id="checkpoint-table")
            runs_view = gr.Dataframe(runs_table([]), label="Runs, newest first", interactive=False,
                                     elem_id="runs-table")
            with gr.Row():
                manage_choice = gr.Dropdown([], label="Checkpoint", scale=2, elem_id="manage-choice")
                refresh_button = gr.Button("🔄 Refresh (verify files)")
                delete_button = gr.Button("🗑️ Delete", variant="stop", elem_id="delete")
                download_button = gr.Button("⬇️ Download as zip")
                push_button = gr.Button("☁️ Push to Hub")
            with gr.Row(visible=False) as confirm_row:
                confirm_text = gr.Markdown()
                confirm_button = gr.Button("Yes, delete it", variant="stop", elem_id="confirm-delete")
                cancel_button = gr.Button("Cancel")
            archive = gr.File(label="Zip", visible=False)
            manage_message = gr.Markdown(elem_id="manage-message")

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

        def settings(profile: gr.OAuthProfile | None, password: str, repo: str, token: str, private: bool = True,
                     push: bool = False) -> Any:
            return api.hub_settings(repo, token, private, push, Caller(profile, password or ""))

        def listing(hub_settings: Any, *current: str | None, verify: bool = False,
                    refresh_hub: bool = True, select_newest: bool = False) -> tuple[Any, ...]:
            """Updates of the three checkpoint dropdowns (keeping ``current`` choices), the checkpoint and run
            tables and the note."""
            entries, warning = job.list_checkpoints(hub_settings, verify, refresh_hub)
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

        listing_inputs = [owner_password, hub_repo, hub_token, *choosers]
        listing_outputs = [*choosers, table, runs_view, listing_note]

        def poll(profile: gr.OAuthProfile | None, page: Feed, password: str, hub_repo_id: str, hub_token: str,
                 *current: str | None) -> tuple[Any, ...]:
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
            return (*panels, *listing(settings(profile, password, hub_repo_id, hub_token), *current,
                                      refresh_hub=previous is None or finished, select_newest=finished))

        gr.on([demo.load, timer.tick], poll, inputs=[feed, *listing_inputs],
              outputs=[status_panel, progress, loss_plot, reward_plot, *listing_outputs], show_progress="hidden",
              api_visibility="private", concurrency_limit=None)

        def on_preset(name: str) -> list[Any]:  # its sizes, LR and warmup
            return [*(getattr(PRESETS[name], f) for f in MODEL_FIELDS),
                    *(PRESET_TRAINING[name][f] for f in ("lr", "warmup"))]

        preset_choice.change(on_preset, inputs=preset_choice, outputs=[*model_fields.values(), lr, warmup],
                             api_visibility="private")

        def on_start(profile: gr.OAuthProfile | None, password: str, files: list[str] | None, **form: Any) -> str:
            def start() -> str:
                caller = Caller(profile, password or "")
                access.check(caller, "start training")  # before reading the uploads
                status = api.start(read_uploads(files), caller, **form)
                return f"Started run {status['run']}: training to {status['max_iterations']} iterations."
            return _attempt(start)

        train_form = {"preset": preset_choice, **model_fields, "max_iterations": max_iterations,
                      "batch_size": batch_size, "lr": lr, "lr_schedule": lr_schedule, "warmup": warmup,
                      "save_every": save_every, "self_play_every": self_play_every, "rl_weight": rl_weight,
                      "seed": seed, "time_budget_min": budget, "run_name": run_name, "precision": precision,
                      "grad_accum_steps": grad_accum, "compile": compile_model, "dataset": dataset,
                      "dataset_split": dataset_split, "text_column": text_column, "rewards": rewards, **hub_all}
        start_button.click(on_start, inputs_kwargs={"password": owner_password, "files": corpus, **train_form},
                           outputs=train_message, api_visibility="private")

        def on_stop(profile: gr.OAuthProfile | None, password: str) -> str:
            return _attempt(lambda: api.stop_training(caller=Caller(profile, password or ""))["message"])

        stop_button.click(on_stop, inputs=owner_password, outputs=train_message, api_visibility="private")

        def prefill(profile: gr.OAuthProfile | None, name: str | None, password: str, hub_repo_id: str,
                    hub_token: str) -> Any:
            entries, _ = job.list_checkpoints(settings(profile, password, hub_repo_id, hub_token), refresh_hub=False)
            targets = {e["name"]: e["max_iterations"] for e in entries}
            return targets.get(name, gr.skip())

        def preview(profile: gr.OAuthProfile | None, name: str | None, target: int | None, new_lr: float | None,
                    extend_choice: str, password: str, hub_repo_id: str, hub_token: str) -> tuple[Any, str]:
            if not name:
                return chart_frame([], LR_PARTS), ""
            try:
                records = job.lr_preview(name, whole("max_iterations", target) or None,
                                         real("lr", new_lr) or None,
                                         settings(profile, password, hub_repo_id, hub_token), extend_choice or None)
            except (AZRError, ValueError) as exc:
                return gr.skip(), _warning(exc)
            return lr_chart(records), ""

        preview_inputs = [resume_choice, resume_max, resume_lr, extend, owner_password, hub_repo, hub_token]
        resume_choice.change(prefill, inputs=[resume_choice, owner_password, hub_repo, hub_token], outputs=resume_max,
                             api_visibility="private")
        for trigger in (resume_choice, resume_max, resume_lr, extend):
            trigger.change(preview, inputs=preview_inputs, outputs=[lr_preview, preview_note],
                           api_visibility="private", show_progress="hidden")

        def on_resume(profile: gr.OAuthProfile | None, password: str, **form: Any) -> str:
            def resume() -> str:
                status = api.resume_training(**form, caller=Caller(profile, password or ""))
                return f"Resuming {form['checkpoint']}: training to {status['max_iterations'] or 'its target'}."
            return _attempt(resume)

        resume_button.click(on_resume, inputs_kwargs={
            "password": owner_password, "checkpoint": resume_choice, "max_iterations": resume_max,
            "batch_size": resume_batch, "lr": resume_lr, "load_optimizer": load_optimizer, "extend_schedule": extend,
            "run_name": resume_run, "time_budget_min": budget, **hub_all},
            outputs=resume_message, api_visibility="private")

        def refresh(profile: gr.OAuthProfile | None, password: str, repo: str, token: str, *current: str | None
                    ) -> tuple[Any, ...]:
            return listing(settings(profile, password, repo, token), *current, verify=True)

        refresh_button.click(refresh, inputs=listing_inputs, outputs=listing_outputs, api_visibility="private")

        def ask_delete(name: str | None) -> tuple[Any, str]:
            if not name:
                return gr.update(visible=False), "Choose a checkpoint first."
            return gr.update(visible=True), f"Delete **{name}** from this disk? This cannot be undone."

        delete_button.click(ask_delete, inputs=manage_choice, outputs=[confirm_row, confirm_text],
                            api_visibility="private")
        cancel_button.click(lambda: gr.update(visible=False), outputs=confirm_row, api_visibility="private")

        def delete(profile: gr.OAuthProfile | None, name: str, password: str, repo: str, token: str,
                   *current: str | None) -> tuple[Any, ...]:
            try:
                api.delete_checkpoint(name or "", caller=Caller(profile, password or ""))
            except (AZRError, ValueError) as exc:
                return (gr.update(visible=False), *(gr.skip(),) * len(listing_outputs), _warning(exc))
            return (gr.update(visible=False), *listing(settings(profile, password, repo, token), *current),
                    f"Deleted {name}.")

        confirm_button.click(delete, inputs=[manage_choice, *listing_inputs],
                             outputs=[confirm_row, *listing_outputs, manage_message], api_visibility="private")

        def download(profile: gr.OAuthProfile | None, name: str | None, password: str, repo: str, token: str
                     ) -> tuple[Any, str]:
            try:
                path = job.archive(name or "", settings(profile, password, repo, token))
            except (AZRError, ValueError) as exc:
                return gr.update(visible=False), _warning(exc)
            return gr.update(value=str(path), visible=True), f"{path.name} is ready."

        download_button.click(download, inputs=[manage_choice, owner_password, hub_repo, hub_token],
                              outputs=[archive, manage_message], api_visibility="private")

        def on_push(profile: gr.OAuthProfile | None, name: str | None, password: str, repo: str, token: str,
                 private: bool) -> str:
            return _attempt(lambda: "Pushed {checkpoint}: commit {commit}.".format(**api.push_checkpoint(
                name or "", repo, token, private, caller=Caller(profile, password or ""))))

        push_button.click(on_push, inputs=[manage_choice, owner_password, hub_repo, hub_token, hub_private],
                          outputs=manage_message, api_visibility="private")

        def on_generate(profile: gr.OAuthProfile | None, password: str, *values: Any) -> str:
            return _attempt(lambda: api.generate(*values, caller=Caller(profile, password or ""))["text"])

        generate_button.click(
            on_generate, inputs=[owner_password, generate_choice, prompt, temperature, top_k, max_new_tokens, hub_repo,
                              hub_token, sample_seed], outputs=generated, api_visibility="private")

        for name in API_NAMES:
            gr.api(as_endpoint(getattr(api, name)), api_name=name,
                   concurrency_limit=None if name in ("status", "stop_training") else "default")
    return demo
