"""What the page's buttons, dropdowns and timer do: one function wires each tab's events (see :mod:`azr.app.tabs`).

Every handler gets the caller (the signed-in Hugging Face profile, injected by Gradio, and the *Owner password*
field) and calls :class:`azr.app.api.AppAPI`, so the page and API clients get the same checks; bad input comes
back as the error's sentence next to the form.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from azr.app.api import MODEL_FIELDS, AppAPI, read_uploads, real, whole
from azr.app.catalog import HubSettings
from azr.app.compare import chart_points
from azr.app.feed import Feed, chart, charts_stale, follow, status_key
from azr.app.owners import Caller
from azr.app.render import (
    LOSS_SERIES,
    REWARD_SERIES,
    checkpoint_label,
    checkpoint_table,
    lr_chart,
    render_memory,
    render_progress,
    render_status,
    restyled,
    runs_table,
    verification_text,
)
from azr.app.tabs import CheckpointsTab, GenerateTab, HubTab, RunsTab, TrainTab
from azr.config import PRESET_TRAINING, PRESETS
from azr.errors import AZRError
from azr.training.status import FINAL_STATES

Profile = gr.OAuthProfile | None


def _warning(exc: Exception) -> str:
    return f"⚠️ {exc}"


def _typed(text: str | None) -> Any:
    """An optional number field's text as a number (empty: None); other text stays text, for the check to name.
    (Gradio's Number field cannot be empty: it shows and sends 0.)"""
    text = (text or "").strip()
    try:
        return float(text) if text else None
    except ValueError:
        return text


def _attempt(action: Callable[[], str]) -> str:
    """Return the message of ``action``, or the error's sentence for bad input."""
    try:
        return action()
    except (AZRError, ValueError) as exc:
        return _warning(exc)


@dataclass
class Page:
    """The page's components and the actions behind them; the checkpoint listing that several tabs show."""

    api: AppAPI
    owner_password: Any  # a password field, or a gr.State("") where the app has no password
    feed: gr.State
    train: TrainTab
    checkpoints: CheckpointsTab
    generate: GenerateTab
    hub: HubTab

    def settings(self, profile: Profile, password: str, repo: str, token: str, private: bool = True,
                 push: bool = False) -> HubSettings:
        """The Hub settings of a request (a visitor's are ignored, see :meth:`AppAPI.hub_settings`)."""
        return self.api.hub_settings(repo, token, private, push, Caller(profile, password or ""))

    @property
    def choosers(self) -> list[gr.Dropdown]:
        """The three checkpoint dropdowns: Resume, Generate, Checkpoints."""
        return [self.train.resume.form["checkpoint"], self.generate.choice, self.checkpoints.choice]

    @property
    def listing_inputs(self) -> list[Any]:
        return [self.owner_password, self.hub.fields["hub_repo_id"], self.hub.fields["hub_token"], *self.choosers]

    @property
    def listing_outputs(self) -> list[Any]:
        return [*self.choosers, self.checkpoints.table, self.checkpoints.runs, self.train.resume.listing_note]

    def listing(self, hub_settings: HubSettings, *current: str | None, verify: bool = False, refresh_hub: bool = True,
                select_newest: bool = False) -> tuple[Any, ...]:
        """Updates of the three checkpoint dropdowns (keeping ``current`` choices), the checkpoint and run tables
        and the note."""
        entries, warning = self.api.job.list_checkpoints(hub_settings, verify, refresh_hub)
        return self.listing_of(entries, warning, *current, select_newest=select_newest)

    def listing_of(self, entries: list[dict[str, Any]], warning: str | None, *current: str | None,
                   select_newest: bool = False) -> tuple[Any, ...]:
        """:meth:`listing` of checkpoint ``entries`` already listed (with the listing's ``warning``)."""
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
                runs_table(self.api.job.list_runs()), note)


def wire_poll(page: Page, triggers: list[Any]) -> None:
    """Redraw the status, charts and listings on ``triggers`` (the page's load and its timer)."""
    train = page.train

    def poll(profile: Profile, feed: Feed, password: str, hub_repo_id: str, hub_token: str,
             *current: str | None) -> tuple[Any, ...]:
        """Fetch the records the page lacks, redraw what changed, list checkpoints again when the launch,
        state or checkpoint changed."""
        previous = feed.drawn
        status = follow(feed, page.api.status)
        charts = (chart(feed, "loss", LOSS_SERIES, status["max_iterations"]),
                  chart(feed, "reward", REWARD_SERIES, status["max_iterations"])) \
            if charts_stale(feed) else (gr.skip(), gr.skip())
        key = status_key(status)
        unchanged, kept = (gr.skip(),) * len(page.listing_outputs), (gr.skip(), gr.skip())
        if key == previous:
            return (gr.skip(), gr.skip(), *charts, *unchanged, *kept)
        feed.drawn = key
        panels = (render_status(status), render_progress(status), *charts)
        if previous is not None and previous[:3] == key[:3]:
            return (*panels, *unchanged, *kept)
        finished = previous is not None and key[1] in FINAL_STATES and key[:2] != previous[:2]  # a launch ended
        return (*panels, *page.listing(page.settings(profile, password, hub_repo_id, hub_token), *current,
                                       refresh_hub=previous is None or finished, select_newest=finished),
                *(("", "") if finished else kept))  # "Stopping…" and "Resuming…" are done once the run is

    def restyle(feed: Feed) -> tuple[Any, Any]:
        return restyled(feed.restyle.pop("loss", None)), restyled(feed.restyle.pop("reward", None))

    gr.on(triggers, poll, inputs=[page.feed, *page.listing_inputs],
          outputs=[train.status, train.progress, train.loss_plot, train.reward_plot, *page.listing_outputs,
                   train.message, train.resume.message],
          show_progress="hidden", api_visibility="private", concurrency_limit=None,
          ).then(restyle, inputs=page.feed, outputs=[train.loss_plot, train.reward_plot], show_progress="hidden",
                 api_visibility="private", concurrency_limit=None)


def wire_train(page: Page) -> None:
    """The Train tab: a preset fills in its sizes, Start trains a new run, Stop pauses it."""
    train, form = page.train, page.train.form

    def on_preset(name: str) -> list[Any]:  # its sizes and LR; an empty warmup: the preset's, fitted to the run
        return [*(getattr(PRESETS[name], f) for f in MODEL_FIELDS), PRESET_TRAINING[name]["lr"], ""]

    form["preset"].change(on_preset, inputs=form["preset"],
                          outputs=[*(form[f] for f in MODEL_FIELDS), form["lr"], form["warmup"]],
                          api_visibility="private")

    def on_start(profile: Profile, password: str, files: list[str] | None, **values: Any) -> str:
        def start() -> str:
            caller = Caller(profile, password or "")
            page.api.access.check(caller, "start training")  # before reading the uploads
            status = page.api.start(read_uploads(files), caller, **{**values, "warmup": _typed(values["warmup"])})
            return f"Started run {status['run']}: training to {status['max_iterations']} iterations."
        return _attempt(start)

    train.start.click(on_start, inputs_kwargs={"password": page.owner_password, "files": train.corpus, **form,
                                               **page.hub.fields},
                      outputs=train.message, api_visibility="private")

    def on_stop(profile: Profile, password: str) -> str:
        return _attempt(lambda: page.api.stop_training(caller=Caller(profile, password or ""))["message"])

    train.stop.click(on_stop, inputs=page.owner_password, outputs=train.message, api_visibility="private")
    wire_memory(page)


def wire_memory(page: Page) -> None:
    """The estimated memory follows the chosen preset (its own sizes), and then the sizes and batch size typed."""
    form, memory = page.train.form, page.train.memory
    sizes = [form[f] for f in MODEL_FIELDS]

    def estimate(preset: str, batch_size: Any, *model: Any) -> str:
        try:
            return render_memory(page.api.estimate_memory(preset, *model, batch_size=batch_size))
        except (AZRError, ValueError) as exc:
            return _warning(exc)

    form["preset"].change(estimate, inputs=[form["preset"], form["batch_size"]], outputs=memory,  # not the sizes:
                          show_progress="hidden", api_visibility="private")  # they change after it, one by one
    gr.on([field.input for field in [*sizes, form["batch_size"]]], estimate,
          inputs=[form["preset"], form["batch_size"], *sizes], outputs=memory, trigger_mode="always_last",
          show_progress="hidden", api_visibility="private")


def wire_resume(page: Page) -> None:
    """The Resume form: a chosen checkpoint prefills its target, a change previews the LR, Resume resumes."""
    resume, form, hub = page.train.resume, page.train.resume.form, page.hub.fields
    access_fields = [page.owner_password, hub["hub_repo_id"], hub["hub_token"]]

    def prefill(profile: Profile, name: str | None, password: str, hub_repo_id: str, hub_token: str) -> Any:
        entries, _ = page.api.job.list_checkpoints(page.settings(profile, password, hub_repo_id, hub_token),
                                                   refresh_hub=False)
        return {e["name"]: e["max_iterations"] for e in entries}.get(name, gr.skip())

    def preview(profile: Profile, name: str | None, target: int | None, new_lr: float | None, extend_choice: str,
                password: str, hub_repo_id: str, hub_token: str) -> tuple[Any, str, Any]:
        """The LR preview's points, its note and its props (given after the points, see :func:`restyled`)."""
        try:
            records = page.api.job.lr_preview(name, whole("max_iterations", target) or None,
                                              real("lr", new_lr) or None,
                                              page.settings(profile, password, hub_repo_id, hub_token),
                                              extend_choice or None) if name else []
        except (AZRError, ValueError) as exc:
            return gr.skip(), _warning(exc), None
        frame, props = lr_chart(records)
        return frame, "", props

    changes = [form["checkpoint"], form["max_iterations"], form["lr"], form["extend_schedule"]]
    form["checkpoint"].change(prefill, inputs=[form["checkpoint"], *access_fields], outputs=form["max_iterations"],
                              api_visibility="private")
    props = gr.State(None)
    for trigger in changes:
        trigger.change(preview, inputs=[*changes, *access_fields],
                       outputs=[resume.lr_preview, resume.preview_note, props], api_visibility="private",
                       show_progress="hidden",
                       ).then(restyled, inputs=props, outputs=resume.lr_preview, api_visibility="private",
                              show_progress="hidden")

    def on_resume(profile: Profile, password: str, **values: Any) -> str:
        def resume_checkpoint() -> str:
            status = page.api.resume_training(**values, caller=Caller(profile, password or ""))
            return f"Resuming {values['checkpoint']}: training to {status['max_iterations'] or 'its target'}."
        return _attempt(resume_checkpoint)

    resume.button.click(on_resume, inputs_kwargs={"password": page.owner_password, **form,
                                                  "time_budget_min": page.train.form["time_budget_min"], **hub},
                        outputs=resume.message, api_visibility="private")


def wire_checkpoints(page: Page) -> None:
    """The Checkpoints tab: refresh with verification, delete after a confirmation, download, push."""
    tab, hub = page.checkpoints, page.hub.fields
    access_fields = [page.owner_password, hub["hub_repo_id"], hub["hub_token"]]

    def refresh(profile: Profile, password: str, repo: str, token: str, *current: str | None) -> tuple[Any, ...]:
        """List again, verifying every file for an owner; a visitor gets the list unverified and why."""
        settings = page.settings(profile, password, repo, token)
        try:
            page.api.access.check(Caller(profile, password or ""), "verify checkpoint files")
        except AZRError as exc:
            return (*page.listing(settings, *current), _warning(exc))
        entries, warning = page.api.job.list_checkpoints(settings, verify=True)
        return (*page.listing_of(entries, warning, *current), verification_text(entries))

    tab.refresh.click(refresh, inputs=page.listing_inputs, outputs=[*page.listing_outputs, tab.message],
                      api_visibility="private")

    def forget_archive() -> tuple[Any, str]:
        """Another checkpoint chosen: the previous one's zip and message go."""
        return gr.update(value=None, visible=False), ""

    tab.choice.input(forget_archive, outputs=[tab.archive, tab.message], api_visibility="private")

    def ask_delete(name: str | None) -> tuple[Any, str]:
        if not name:
            return gr.update(visible=False), "Choose a checkpoint first."
        return gr.update(visible=True), f"Delete **{name}** from this disk? This cannot be undone."

    tab.delete.click(ask_delete, inputs=tab.choice, outputs=[tab.confirm_row, tab.confirm_text],
                     api_visibility="private")
    tab.cancel.click(lambda: gr.update(visible=False), outputs=tab.confirm_row, api_visibility="private")

    def delete(profile: Profile, name: str, password: str, repo: str, token: str,
               *current: str | None) -> tuple[Any, ...]:
        try:
            page.api.delete_checkpoint(name or "", caller=Caller(profile, password or ""))
        except (AZRError, ValueError) as exc:
            return (gr.update(visible=False), *(gr.skip(),) * len(page.listing_outputs), _warning(exc))
        return (gr.update(visible=False), *page.listing(page.settings(profile, password, repo, token), *current),
                f"Deleted {name}.")

    tab.confirm.click(delete, inputs=[tab.choice, *page.listing_inputs],
                      outputs=[tab.confirm_row, *page.listing_outputs, tab.message], api_visibility="private")

    def download(profile: Profile, name: str | None, password: str, repo: str, token: str) -> tuple[Any, str]:
        try:
            path = page.api.archive(name or "", repo, token, caller=Caller(profile, password or ""))
        except (AZRError, ValueError) as exc:
            return gr.update(visible=False), _warning(exc)
        return gr.update(value=str(path), visible=True), f"{path.name} is ready."

    tab.download.click(download, inputs=[tab.choice, *access_fields], outputs=[tab.archive, tab.message],
                       api_visibility="private")

    def on_push(profile: Profile, name: str | None, password: str, repo: str, token: str, private: bool) -> str:
        return _attempt(lambda: "Pushed {checkpoint}: commit {commit}.".format(**page.api.push_checkpoint(
            name or "", repo, token, private, caller=Caller(profile, password or ""))))

    tab.push.click(on_push, inputs=[tab.choice, *access_fields, hub["hub_private"]], outputs=tab.message,
                   api_visibility="private")


def wire_runs(api: AppAPI, tab: RunsTab) -> None:
    """The Runs tab: opening it lists the runs; ticking runs draws their curves."""
    tab.tab.select(lambda: gr.update(choices=[run["run"] for run in api.list_runs()["runs"]]), outputs=tab.choice,
                   api_visibility="private")

    def on_choice(runs: list[str] | None) -> list[Any]:
        """The charts' points and the message (the charts' props follow, see :func:`restyled`)."""
        try:
            return [*(frame for frame, _ in chart_points(api.compare_runs(runs or [])["runs"])), ""]
        except (AZRError, ValueError) as exc:
            return [*(gr.skip() for _ in tab.charts), _warning(exc)]

    def restyle(runs: list[str] | None) -> list[Any]:
        """The charts' props for the runs ticked now: a restyle that follows an earlier tick names every line."""
        try:
            return [restyled(props) for _, props in chart_points(api.compare_runs(runs or [])["runs"])]
        except (AZRError, ValueError):
            return [gr.skip() for _ in tab.charts]  # on_choice shows the message

    tab.choice.change(on_choice, inputs=tab.choice, outputs=[*tab.charts, tab.message], api_visibility="private",
                      show_progress="hidden").then(restyle, inputs=tab.choice, outputs=tab.charts,
                                                   api_visibility="private", show_progress="hidden")


def wire_generate(page: Page) -> None:
    """The Generate tab: sample from the chosen checkpoint."""
    tab, hub = page.generate, page.hub.fields

    def on_generate(profile: Profile, password: str, *values: Any) -> str:
        *settings, seed = values
        return _attempt(lambda: page.api.generate(*settings, seed=_typed(seed),
                                                  caller=Caller(profile, password or ""))["text"])

    tab.button.click(on_generate, inputs=[page.owner_password, tab.choice, tab.prompt, *tab.sampling,
                                          hub["hub_repo_id"], hub["hub_token"], tab.seed],
                     outputs=tab.generated, api_visibility="private")
