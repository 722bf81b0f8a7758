"""The Gradio page: Train (with Stop and Resume), Checkpoints (and runs), Generate and Hub tabs, and the API.

:func:`build_ui` lays out the tabs (:mod:`azr.app.tabs`), wires their events (:mod:`azr.app.events`) and adds
the API endpoints for ``gradio_client`` (see :class:`azr.app.api.AppAPI`): ``/train``, ``/stop_training``,
``/resume_training``, ``/status``, ``/list_checkpoints``, ``/list_runs``, ``/generate``, ``/delete_checkpoint``,
``/push_checkpoint``, ``/compare_runs`` and ``/estimate_memory``. Control actions need an owner (see
:mod:`azr.app.owners`). :data:`THEME` and :data:`CSS` are for ``launch``: system fonts only, so the page never
fetches a web font (offline, it would draw some letters in a fallback font).
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from azr.app import events, tabs
from azr.app.api import API_NAMES, AppAPI, as_endpoint
from azr.app.feed import Feed
from azr.app.jobs import TrainingJob
from azr.app.owners import Access

POLL_S = 1.0
SANS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Noto Sans", "Liberation Sans", "Arial",
        "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "DejaVu Sans Mono", "Liberation Mono", "monospace"]
THEME = gr.themes.Default(font=SANS, font_mono=MONO)
CSS = """
#status table { display: block; overflow-x: auto; width: max-content; max-width: 100%; }
#status th, #status td { white-space: nowrap; }
input[role=combobox] { padding-right: 28px !important; text-overflow: ellipsis; }
"""  # the status table scrolls rather than breaking words; a dropdown's arrow never covers its text


def build_ui(job: TrainingJob, access: Access | None = None) -> gr.Blocks:
    """Return the app's Blocks for ``job`` (one job per process; every session sees it) with ``access``'s owners
    (default: everyone is an owner)."""
    api = AppAPI(job, access or Access())
    with gr.Blocks(title="AZR Trainer", analytics_enabled=False) as demo:
        gr.Markdown("# AZR Trainer\nTrain a small language model, watch it learn, stop it any time and "
                    "resume it later with a bigger target.")
        owner_password = _owner_fields(api.access)
        feed = gr.State(Feed())
        timer = gr.Timer(POLL_S)
        page = events.Page(api, owner_password, feed, tabs.train_tab(api.status(-1), api.estimate_memory()),
                           tabs.checkpoints_tab(), tabs.generate_tab(), tabs.hub_tab(job.hub_repo))
        runs = tabs.runs_tab()
        events.wire_poll(page, [demo.load, timer.tick])
        events.wire_train(page)
        events.wire_resume(page)
        events.wire_checkpoints(page)
        events.wire_generate(page)
        events.wire_runs(api, runs)
        _add_endpoints(api)
    return demo


def _owner_fields(access: Access) -> Any:
    """The sign-in button, the *Owner password* field (a ``gr.State("")`` where there is none) and the note that
    tells visitors how to become an owner, as ``access`` has them."""
    if access.oauth:
        gr.LoginButton()
    if access.password and not access.private:
        password: Any = gr.Textbox(label="Owner password", type="password", elem_id="owner-password",
                                   info="Needed to train, stop, resume, delete and push; visitors watch.")
    else:
        password = gr.State("")
    if not access.open:
        gr.Markdown(f"Visitors can watch; to control the training, {access.how()}.", elem_id="owner-note")
    return password


def _add_endpoints(api: AppAPI) -> None:
    """Add :data:`azr.app.api.API_NAMES` as API endpoints; ``/status`` and ``/stop_training`` never wait in line."""
    for name in API_NAMES:
        gr.api(as_endpoint(getattr(api, name)), api_name=name,
               concurrency_limit=None if name in ("status", "stop_training") else "default")
