"""The app as users' scripts see it: ``python app.py`` in its own process, driven with gradio_client.

Also the job's Hub wiring (in process, against the local Hub-compatible server) and the upload limit.
"""
from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest
from app_process import SMALL_MODEL, AppProcess, app, small_corpus  # noqa: F401
from conftest_hub import hub_env, hub_server  # noqa: F401
from gradio_client import Client
from gradio_client.exceptions import AppError

from azr import ModelConfig
from azr.errors import CheckpointError, ConfigError, DataError
from azr.jobs import HubSettings, TrainingJob, default_checkpoint_dir
from azr.ui import read_uploads

TARGET = 600  # long enough to be stopped early, short enough to finish a resume quickly
FAST = dict(batch_size=4, save_every=500)


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app.url, verbose=False)


def wait_for(client: Client, condition, timeout: float = 120) -> dict:
    """Poll /status until ``condition(status)`` holds; return that status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.predict(history_since=-1, api_name="/status")
        if condition(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"status did not get there in {timeout} s: {status}")


def test_train_stop_resume_continues_the_history(app, client):
    started = client.predict(corpus_text=small_corpus(), max_iterations=TARGET, api_name="/train",
                             **SMALL_MODEL, **FAST)
    assert started["is_training"] and started["max_iterations"] == TARGET

    running = wait_for(client, lambda s: s["iteration"] >= 10)
    assert running["state"] in ("running", "checkpoint") and running["loss"] is not None
    with pytest.raises(AppError, match="already active"):
        client.predict(max_iterations=50, api_name="/train", **SMALL_MODEL)

    assert client.predict(api_name="/stop_training")["status"] == "stopping"
    paused = wait_for(client, lambda s: not s["is_training"])
    stopped_at = paused["iteration"]
    assert paused["state"] == "paused" and 10 <= stopped_at < TARGET
    assert paused["checkpoint"] == f"model_paused_{stopped_at}"
    assert paused["checkpoint"] in paused["message"]
    listed = client.predict(api_name="/list_checkpoints")["checkpoints"]
    assert listed[0]["name"] == paused["checkpoint"] and listed[0]["source"] == "local"
    assert listed[0]["max_iterations"] == TARGET and listed[0]["valid"]
    before = client.predict(api_name="/status")["history"]
    assert client.predict(api_name="/stop_training")["status"] == "not training"

    resumed = client.predict(checkpoint=paused["checkpoint"], max_iterations=TARGET + 100,
                             api_name="/resume_training")
    assert resumed["max_iterations"] == TARGET + 100
    done = wait_for(client, lambda s: not s["is_training"])
    assert (done["state"], done["iteration"]) == ("completed", TARGET + 100)
    history = client.predict(api_name="/status")["history"]
    assert [r["iteration"] for r in history] == list(range(1, TARGET + 101))
    assert history[:stopped_at] == before
    later = client.predict(history_since=TARGET, api_name="/status")["history"]
    assert [r["iteration"] for r in later] == list(range(TARGET + 1, TARGET + 101))


def newest_checkpoint(client: Client) -> str:
    """The newest listed checkpoint; a short run makes one when there is none (a test run alone)."""
    if not client.predict(api_name="/list_checkpoints")["checkpoints"]:
        client.predict(corpus_text=small_corpus(), max_iterations=20, api_name="/train", **SMALL_MODEL, **FAST)
        wait_for(client, lambda s: not s["is_training"])
    return client.predict(api_name="/list_checkpoints")["checkpoints"][0]["name"]


def test_resume_to_the_same_target_is_already_complete(client):
    name = newest_checkpoint(client)
    client.predict(checkpoint=name, api_name="/resume_training")
    done = wait_for(client, lambda s: not s["is_training"])
    assert done["state"] == "completed" and "Already at the target" in done["message"]


@pytest.mark.parametrize("name", ["../../etc", "/etc/passwd", "checkpoints/../model_iter_1",
                                  "hf://someone/else/model_iter_1", "model_paused_999999"])
def test_checkpoint_names_must_be_listed_names(client, name):
    with pytest.raises(AppError, match="listed checkpoint|no checkpoint"):
        client.predict(checkpoint=name, max_iterations=10, api_name="/resume_training")
    with pytest.raises(AppError, match="listed checkpoint|no checkpoint"):
        client.predict(checkpoint=name, api_name="/generate")


@pytest.mark.parametrize("fields, message", [
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(max_iterations=2.5), "max_iterations must be a whole number"),
    (dict(d_model=33), "d_model .* must be divisible by num_heads"),
    (dict(lr=-1.0), "lr must be a positive number"),
    (dict(time_budget_min=-5), "time_budget_min must be zero"),
    (dict(lr_schedule="zigzag"), "lr_schedule must be one of"),
])
def test_bad_numbers_get_one_sentence(client, fields, message):
    with pytest.raises(AppError, match=message):
        client.predict(api_name="/train", **{**SMALL_MODEL, **fields})
    assert not client.predict(history_since=-1, api_name="/status")["is_training"]


def test_generate_continues_the_prompt(client):
    name = newest_checkpoint(client)
    result = client.predict(checkpoint=name, prompt="ROMEO:", max_new_tokens=10, api_name="/generate")
    assert result["checkpoint"] == name and result["text"].startswith("ROMEO:")
    with pytest.raises(AppError, match="temperature must be a positive number"):
        client.predict(checkpoint=name, temperature=0, api_name="/generate")


def test_sigterm_saves_an_interrupted_checkpoint_and_exits(app, client):
    client.predict(corpus_text=small_corpus(), max_iterations=TARGET, api_name="/train", **SMALL_MODEL, **FAST)
    wait_for(client, lambda s: s["iteration"] >= 5)
    assert app.terminate() == 143
    interrupted = sorted(p.name for p in app.checkpoint_dir.glob("model_interrupted_*"))
    assert len(interrupted) == 1, app.output()


# ---------------------------------------------------------------------------- in process


def test_checkpoint_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AZR_CHECKPOINT_DIR", str(tmp_path / "mine"))
    assert default_checkpoint_dir() == tmp_path / "mine"
    monkeypatch.delenv("AZR_CHECKPOINT_DIR")
    assert default_checkpoint_dir() in (Path("/data/checkpoints"), Path("checkpoints"))


def test_uploads_over_the_limit_are_refused(monkeypatch, tmp_path):
    corpus = tmp_path / "big.txt"
    corpus.write_text("x" * 300_000)
    assert read_uploads([str(corpus)]) == ["x" * 300_000]
    monkeypatch.setenv("AZR_MAX_UPLOAD_MB", "0.25")
    with pytest.raises(DataError, match="more than the limit"):
        read_uploads([str(corpus)])


def train_to_the_end(job: TrainingJob, **kwargs) -> dict:
    job.start([small_corpus()], ModelConfig(**SMALL_MODEL), **kwargs)
    assert job.wait(120)
    return job.status()


def test_hub_checkpoints_are_offered_and_resumed(hub_env, tmp_path):
    repo = "user/app-run"
    pushing = HubSettings(repo, private=True, push_checkpoints=True)
    first = TrainingJob(tmp_path / "first", hub_repo="")
    status = train_to_the_end(first, max_iterations=20, hub_settings=pushing, **FAST)
    assert status["state"] == "completed"
    assert status["pushes"]["model_iter_20"].startswith("pushed ")

    restarted = TrainingJob(tmp_path / "empty", hub_repo=repo)  # a Space that lost its disk
    entries, warning = restarted.list_checkpoints()
    assert warning is None
    assert [(e["name"], e["source"]) for e in entries] == [(f"hf://{repo}/model_iter_20", "hub")]
    assert entries[0]["max_iterations"] == 20
    restarted.resume(entries[0]["name"], 30)
    assert restarted.wait(120)
    resumed = restarted.status()
    assert (resumed["state"], resumed["iteration"]) == ("completed", 30)
    assert [r["iteration"] for r in resumed["history"]] == list(range(1, 31))
    names = [e["name"] for e in restarted.list_checkpoints()[0]]
    assert names[0] == "model_iter_30" and f"hf://{repo}/model_iter_20" in names

    with pytest.raises(CheckpointError, match="listed checkpoint"):
        restarted.checkpoint_path("hf://user/other-run/model_iter_20")
    assert restarted.push("model_iter_30", HubSettings(repo))
    assert f"hf://{repo}/model_iter_30" not in [e["name"] for e in restarted.list_checkpoints()[0]]  # local copy
    hub_names = [e["name"] for e in TrainingJob(tmp_path / "third", hub_repo=repo).list_checkpoints()[0]]
    assert hub_names[0] == f"hf://{repo}/model_iter_30"


def test_the_checkpoint_in_use_cannot_be_deleted(tmp_path):
    job = TrainingJob(tmp_path / "ck", hub_repo="")
    train_to_the_end(job, max_iterations=10, **FAST)
    job.resume("model_iter_10", 100_000)
    try:
        with pytest.raises(CheckpointError, match="used by the running job"):
            job.delete("model_iter_10")
    finally:
        job.stop()
        assert job.wait(60)
    job.delete("model_iter_10")
    with pytest.raises(CheckpointError, match="not a local checkpoint name"):
        job.delete("../ck/model_iter_10")
    assert not (tmp_path / "ck" / "model_iter_10").exists()
    assert [e["name"] for e in job.list_checkpoints()[0]] == [job.status()["checkpoint"]]


def test_the_lr_preview_is_the_schedule_the_resume_follows_and_zips_hold_the_checkpoint(tmp_path):
    job = TrainingJob(tmp_path / "ck", hub_repo="")
    train_to_the_end(job, max_iterations=10, **FAST)
    preview = job.lr_preview("model_iter_10", 30, lr=1e-3)
    trained = [r for r in preview if r["part"] == "trained"]
    planned = [r for r in preview if r["part"] == "planned"]
    assert [r["iteration"] for r in trained] == list(range(1, 11))
    assert [r["iteration"] for r in planned] == list(range(11, 31))
    with pytest.raises(ConfigError, match="below the checkpoint's iteration"):
        job.lr_preview("model_iter_10", 5)

    job.resume("model_iter_10", 30, lr=1e-3)
    assert job.wait(60)
    history = job.status()["history"]
    assert [r["lr"] for r in history] == [r["lr"] for r in trained + planned]

    with zipfile.ZipFile(job.archive("model_iter_30")) as archive:
        names = archive.namelist()
    assert {"model_iter_30/model.safetensors", "model_iter_30/trainer_state.json"} <= set(names)


def test_a_restarted_app_offers_the_newer_hub_checkpoint_and_pushes(hub_server, hub_env, tmp_path):
    repo = "user/space-run"
    train_to_the_end(TrainingJob(tmp_path / "before", hub_repo=""), max_iterations=10,
                     hub_settings=HubSettings(repo, push_checkpoints=True), **FAST)
    restarted = AppProcess.start(tmp_path, AZR_HUB_REPO=repo, HF_HUB_OFFLINE="0")
    try:
        client = Client(restarted.url, verbose=False)
        listing = client.predict(api_name="/list_checkpoints")
        assert listing["warning"] is None
        newest = listing["checkpoints"][0]
        assert (newest["name"], newest["source"]) == (f"hf://{repo}/model_iter_10", "hub")
        client.predict(checkpoint=newest["name"], max_iterations=20, push_checkpoints=True,
                       api_name="/resume_training")
        done = wait_for(client, lambda s: not s["is_training"])
        assert (done["state"], done["iteration"]) == ("completed", 20)
        assert done["pushes"]["model_iter_20"].startswith("pushed ")

        client.predict(corpus_text=small_corpus(), max_iterations=TARGET, push_checkpoints=True,
                       api_name="/train", **SMALL_MODEL, **FAST)
        wait_for(client, lambda s: s["iteration"] >= 5)
        assert restarted.terminate() == 143
        interrupted = next(restarted.checkpoint_dir.glob("model_interrupted_*")).name
        assert f"checkpoints/{interrupted}/trainer_state.json" in hub_server.files(repo)
    finally:
        restarted.stop()
