"""What the page shows goes with the job's state: ``python app.py`` in its own process, its page events called as
the page's JavaScript calls them (:class:`app_process.PageSession`) and its API with gradio_client."""
from __future__ import annotations


import pytest
from app_process import SMALL_MODEL, PageSession, app, small_corpus, wait_for  # noqa: F401
from gradio_client import Client

FAST = dict(batch_size=4, save_every=500, self_play_every=0)
KEPT = {"__type__": "update"}  # an output the event leaves as it is (gr.skip())


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app.url, verbose=False)


def test_stop_and_resume_messages_clear_when_the_run_gets_there_and_a_pause_has_no_eta(app, client):
    page = PageSession(app.url)
    client.predict(corpus_text=small_corpus(), max_iterations=2000, api_name="/train", **SMALL_MODEL, **FAST)
    wait_for(client, lambda s: s["iteration"] >= 3)
    page.shown("poll")  # the page draws the running job
    stopping, = page.press("on_stop")
    assert stopping.startswith("Stopping after the current batch")
    paused = wait_for(client, lambda s: not s["is_training"])
    assert paused["state"] == "paused" and paused["eta_s"] is None
    shown = page.shown("poll")
    assert shown["train-message"] == shown["resume-message"] == ""
    assert "| — |" in shown["status"]  # the ETA column of a paused run is empty

    resuming, = page.press("on_resume", **{"resume-choice": paused["checkpoint"],
                                           "resume-max": paused["iteration"] + 5})
    assert resuming.startswith(f"Resuming {paused['checkpoint']}: training to {paused['iteration'] + 5}")
    assert wait_for(client, lambda s: not s["is_training"])["state"] == "completed"
    shown = page.shown("poll")
    assert shown["resume-message"] == "" and shown["train-message"] == ""
    assert page.shown("poll")["resume-message"] == KEPT  # nothing new: nothing redrawn


def test_choosing_another_checkpoint_clears_the_previous_zip(app, client):
    names = [e["name"] for e in client.predict(api_name="/list_checkpoints")["checkpoints"]]
    page = PageSession(app.url)
    page.shown("poll")
    ready = page.shown("download", **{"manage-choice": names[0]})
    assert ready["manage-zip"]["visible"] and ready["manage-message"].endswith(".zip is ready.")
    cleared = page.shown("forget_archive")  # another checkpoint chosen
    assert cleared["manage-zip"] == {"__type__": "update", "value": None, "visible": False}
    assert cleared["manage-message"] == ""


def test_refresh_says_how_many_checkpoints_it_verified_and_which_are_damaged(app, client):
    names = [e["name"] for e in client.predict(api_name="/list_checkpoints")["checkpoints"]]
    assert len(names) > 1
    page = PageSession(app.url)
    assert page.shown("refresh")["manage-message"] == f"{len(names)} checkpoints verified, 0 damaged."
    weights = app.checkpoint_dir / names[0] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"x")
    message = page.shown("refresh")["manage-message"]
    assert message.startswith(f"{len(names)} checkpoints verified, 1 damaged: {names[0]} (")


def test_the_lr_preview_of_a_resume_is_the_plan_the_resumed_run_follows(app, client):
    """A finished 40-iteration run (the default warmup, fitted to it) extended to 100: the page's preview, then the
    page's Resume with the same fields; every LR the run records is the one the preview drew."""
    client.predict(corpus_text=small_corpus(), max_iterations=40, run_name="extended", api_name="/train",
                   **SMALL_MODEL, **FAST)
    assert wait_for(client, lambda s: not s["is_training"])["state"] == "completed"
    page = PageSession(app.url)
    page.shown("poll")
    fields = {"resume-choice": "extended/model_iter_40", "resume-max": 100}
    points = page.shown("preview", **fields)["lr-preview"]  # the points; the chart's props follow in a .then step
    columns = points["columns"]
    preview = {row[columns.index("iteration")]: row[columns.index("value")]
               for row in points["data"] if row[columns.index("value")] is not None}
    assert sorted(preview) == list(range(1, 101))

    page.press("on_resume", **fields)
    assert wait_for(client, lambda s: not s["is_training"])["state"] == "completed"
    history = client.predict(api_name="/status")["history"]
    assert [r["iteration"] for r in history] == list(range(1, 101))
    assert [r["lr"] for r in history] == pytest.approx([preview[i] for i in range(1, 101)], rel=1e-6)
