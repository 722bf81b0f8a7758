"""The app as users' scripts see it: ``python app.py`` in its own process, driven with gradio_client.

Also the job's Hub wiring (in process, against the local Hub-compatible server) and the upload limit.
"""
from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from app_process import SMALL_MODEL, AppProcess, PageSession, app, small_corpus, wait_for  # noqa: F401
from conftest_hub import hub_env, hub_server  # noqa: F401
from gradio_client import Client
from gradio_client.exceptions import AppError

from azr import ModelConfig
from azr.app.api import read_uploads
from azr.app.feed import Feed, charts_stale, follow, status_key
from azr.app.jobs import HubSettings, TrainingJob, default_runs_root
from azr.checkpoints.checkpoint import Checkpoint
from azr.errors import CheckpointError, ConfigError, DataError

TARGET = 600  # long enough to be stopped early, short enough to finish a resume quickly
FAST = dict(batch_size=4, save_every=500)


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app.url, verbose=False)


def test_train_stop_resume_continues_the_history(app, client):
    started = client.predict(corpus_text=small_corpus(), max_iterations=TARGET, api_name="/train",
                             **SMALL_MODEL, **FAST)
    assert started["is_training"] and started["max_iterations"] == TARGET
    run = started["run"]
    assert run.startswith("run-")

    running = wait_for(client, lambda s: s["iteration"] >= 10)
    assert running["state"] in ("running", "checkpoint") and running["loss"] is not None
    with pytest.raises(AppError, match="already active"):
        client.predict(max_iterations=50, api_name="/train", **SMALL_MODEL)

    assert client.predict(api_name="/stop_training")["status"] == "stopping"
    paused = wait_for(client, lambda s: not s["is_training"])
    stopped_at = paused["iteration"]
    assert paused["state"] == "paused" and 10 <= stopped_at < TARGET
    assert paused["checkpoint"] == f"{run}/model_paused_{stopped_at}"
    assert f"saved model_paused_{stopped_at}" in paused["message"]
    listed = client.predict(api_name="/list_checkpoints")["checkpoints"]
    assert listed[0]["name"] == paused["checkpoint"] and (listed[0]["source"], listed[0]["run"]) == ("local", run)
    assert listed[0]["max_iterations"] == TARGET and listed[0]["valid"]
    before = client.predict(api_name="/status")["history"]
    assert client.predict(api_name="/stop_training")["status"] == "not training"

    resumed = client.predict(checkpoint=paused["checkpoint"], max_iterations=TARGET + 100,
                             api_name="/resume_training")
    assert (resumed["max_iterations"], resumed["run"]) == (TARGET + 100, run)  # in the checkpoint's run
    assert resumed["launch"] == started["launch"] + 1
    done = wait_for(client, lambda s: not s["is_training"])
    assert (done["state"], done["iteration"]) == ("completed", TARGET + 100)
    assert done["checkpoint"] == f"{run}/model_iter_{TARGET + 100}"
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


def test_a_resume_can_continue_as_a_new_run_leaving_the_checkpoints_run_as_it_is(app, client):
    name = newest_checkpoint(client)
    run = name.split("/")[0]
    source = Checkpoint.open(app.checkpoint_dir / name)
    before = sorted(p.name for p in (app.checkpoint_dir / run).iterdir())
    with pytest.raises(AppError, match="already exists"):
        client.predict(checkpoint=name, run_name=run, api_name="/resume_training")
    resumed = client.predict(checkpoint=name, max_iterations=source.iteration + 10, run_name="branch",
                             api_name="/resume_training")
    assert resumed["run"] == "branch"
    done = wait_for(client, lambda s: not s["is_training"])
    assert (done["state"], done["checkpoint"]) == ("completed", f"branch/model_iter_{source.iteration + 10}")
    assert [r["iteration"] for r in client.predict(api_name="/status")["history"]] == \
        list(range(1, source.iteration + 11))
    assert sorted(p.name for p in (app.checkpoint_dir / run).iterdir()) == before


def test_two_runs_in_one_app_keep_their_own_checkpoints(app, client):
    """The bug of issue 9: a second Start in the same app overwrote the first run's model_iter_20."""
    def train(seed: int, **fields) -> dict:
        started = client.predict(corpus_text=small_corpus(), max_iterations=20, seed=seed, api_name="/train",
                                 **SMALL_MODEL, **FAST, **fields)
        done = wait_for(client, lambda s: not s["is_training"])
        assert (done["state"], done["run"], done["launch"]) == ("completed", started["run"], started["launch"])
        return done

    first = train(1, run_name="first-run")
    assert first["checkpoint"] == "first-run/model_iter_20"
    on_disk = Checkpoint.open(app.checkpoint_dir / "first-run" / "model_iter_20")
    with pytest.raises(AppError, match="already exists"):
        client.predict(max_iterations=20, run_name="first-run", api_name="/train", **SMALL_MODEL)
    with pytest.raises(AppError, match="cannot name a run"):
        client.predict(max_iterations=20, run_name="../escape", api_name="/train", **SMALL_MODEL)
    second = train(2)
    assert second["run"] not in ("first-run", "") and second["checkpoint"] == f"{second['run']}/model_iter_20"

    listed = {e["name"]: e for e in client.predict(verify=True, api_name="/list_checkpoints")["checkpoints"]}
    one, two = listed["first-run/model_iter_20"], listed[second["checkpoint"]]
    assert one["valid"] and two["valid"] and (one["run"], two["run"]) == ("first-run", second["run"])
    assert one["loss"] == on_disk.state["loss"] == first["loss"] != two["loss"] == second["loss"]
    assert one["run_id"] == on_disk.run_id != two["run_id"]
    again = Checkpoint.open(app.checkpoint_dir / "first-run" / "model_iter_20")
    assert (again.run_id, again.state["loss"], again.state["timestamp"]) == \
        (on_disk.run_id, on_disk.state["loss"], on_disk.state["timestamp"])
    runs = {r["run"]: r for r in client.predict(api_name="/list_runs")["runs"]}
    assert runs["first-run"]["checkpoints"] == runs[second["run"]]["checkpoints"] == 1
    assert runs["first-run"]["id"] == on_disk.run_id

    whole = client.predict(history_since=0, api_name="/status")["history"]
    assert [r["iteration"] for r in whole] == list(range(1, 21))
    assert client.predict(history_since=13, api_name="/status")["history"] == whole[13:]
    assert client.predict(history_since=20, api_name="/status")["history"] == []
    assert client.predict(history_since=-1, api_name="/status")["history"] == []


@pytest.mark.parametrize("name", ["../../etc", "/etc/passwd", "checkpoints/../model_iter_1", "../run/model_iter_1",
                                  "run/../../model_iter_1", "./model_iter_1", "hf://someone/else/model_iter_1",
                                  "model_paused_999999", "run-1/model_paused_999999"])
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


def resident_mb(pid: int) -> float:
    """The resident memory of a process, in MB."""
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def test_an_oversized_corpus_text_is_refused_before_any_work(app, client):
    """The upload limit (20 MiB) holds for text sent through the API too: refused at once, nothing started."""
    before, memory = client.predict(history_since=-1, api_name="/status"), resident_mb(app.process.pid)
    runs = sorted(app.checkpoint_dir.glob("*"))
    with pytest.raises(AppError, match=r"corpus_text holds at least 21.0 MiB, more than the limit of 20.0 MiB "
                                       r"\(AZR_MAX_UPLOAD_MB\); send less text"):
        client.predict(corpus_text="x" * 21 * 2**20, max_iterations=20, api_name="/train", **SMALL_MODEL)
    after = client.predict(history_since=-1, api_name="/status")
    assert (after["launch"], after["is_training"], after["state"]) == (before["launch"], False, before["state"])
    assert sorted(app.checkpoint_dir.glob("*")) == runs
    assert resident_mb(app.process.pid) - memory < 300  # the request itself; training on it took gigabytes
    with pytest.raises(AppError, match="prompt holds 100,001 characters, more than the limit of 100,000"):
        client.predict(checkpoint="none/model_iter_1", prompt="x" * 100_001, api_name="/generate")
    with pytest.raises(AppError, match="run_name holds 1,001 characters"):
        client.predict(max_iterations=20, run_name="x" * 1001, api_name="/train", **SMALL_MODEL)


def test_generate_continues_the_prompt(client):
    name = newest_checkpoint(client)
    result = client.predict(checkpoint=name, prompt="ROMEO:", max_new_tokens=10, api_name="/generate")
    assert result["checkpoint"] == name and result["text"].startswith("ROMEO:")
    with pytest.raises(AppError, match="temperature must be a positive number"):
        client.predict(checkpoint=name, temperature=0, api_name="/generate")


def test_a_short_run_started_with_the_pages_defaults_decays_its_lr_before_it_ends(app, client):
    """The Start button with the page's initial settings but for a short target: the warmup fits the run."""
    small = {f"train-{name}": value for name, value in SMALL_MODEL.items()}
    page = PageSession(app.url)
    message, = page.press("on_start", **small, **{"train-max-iterations": 80, "train-batch-size": 4,
                                                   "train-save-every": 500})
    assert "training to 80 iterations" in message
    assert wait_for(client, lambda s: not s["is_training"])["state"] == "completed"
    lrs = [r["lr"] for r in client.predict(api_name="/status")["history"]]
    assert len(lrs) == 80
    assert lrs.index(max(lrs)) < 60 and lrs[-1] < 0.5 * max(lrs)


def test_generate_with_an_empty_seed_differs_each_time_and_a_seed_repeats(client):
    name = newest_checkpoint(client)

    def generate(**seed) -> str:
        return client.predict(checkpoint=name, prompt="ROMEO:", max_new_tokens=20, api_name="/generate",
                              **seed)["text"]

    assert len({generate() for _ in range(3)}) > 1
    assert len({generate(seed=None) for _ in range(3)}) > 1
    assert generate(seed=7) == generate(seed=7)

def test_sigterm_saves_an_interrupted_checkpoint_and_exits(app, client):
    client.predict(corpus_text=small_corpus(), max_iterations=TARGET, api_name="/train", **SMALL_MODEL, **FAST)
    wait_for(client, lambda s: s["iteration"] >= 5)
    assert app.terminate() == 143
    interrupted = sorted(p.name for p in app.checkpoint_dir.glob("*/model_interrupted_*"))
    assert len(interrupted) == 1, app.output()


# ---------------------------------------------------------------------------- in process


def test_the_runs_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AZR_CHECKPOINT_DIR", str(tmp_path / "mine"))
    assert default_runs_root() == tmp_path / "mine"
    monkeypatch.delenv("AZR_CHECKPOINT_DIR")
    assert default_runs_root() in (Path("/data/checkpoints"), Path("checkpoints"))


def test_uploads_over_the_limit_are_refused(monkeypatch, tmp_path):
    corpus = tmp_path / "big.txt"
    corpus.write_text("x" * 300_000)
    assert read_uploads([str(corpus)]) == ["x" * 300_000]
    monkeypatch.setenv("AZR_MAX_UPLOAD_MB", "0.25")
    with pytest.raises(DataError, match="more than the limit"):
        read_uploads([str(corpus)])


def fake_job(launch: int, history: list[dict]) -> tuple[list[int], Callable[[int], dict]]:
    """A /status stand-in: the records of ``history`` after ``since``, and the list of ``since`` it was asked."""
    asked: list[int] = []

    def fetch(since: int) -> dict:
        asked.append(since)
        return {"launch": launch, "iteration": history[-1]["iteration"] if history else 0, "state": "running",
                "checkpoint": None, "message": "", "pushes": {}, "warnings": [],
                "history": [r for r in history if r["iteration"] > since]}
    return asked, fetch


def records(first: int, last: int) -> list[dict]:
    return [{"iteration": i, "loss": 1.0 / i, "val_loss": None, "reward": None, "lr": 1e-3, "time": 0.0}
            for i in range(first, last + 1)]


def test_the_poll_asks_only_for_new_records():
    page = Feed(launch=3, records=records(1, 40))
    asked, fetch = fake_job(3, records(1, 45))
    status = follow(page, fetch)
    assert asked == [40]  # one request, for what comes after the newest record the page has
    assert page.records == records(1, 45) and status["iteration"] == 45
    assert charts_stale(page) and not charts_stale(page)  # drawn once per change

    asked, fetch = fake_job(3, records(1, 45))
    follow(page, fetch)
    assert asked == [45] and len(page.records) == 45 and not charts_stale(page)


def test_the_poll_starts_over_for_a_new_launch_or_a_rewind():
    page = Feed(launch=3, records=records(1, 40))
    asked, fetch = fake_job(4, records(1, 12))  # a new run (or a resume) started
    follow(page, fetch)
    assert asked == [40, 0] and page.records == records(1, 12) and page.launch == 4

    asked, fetch = fake_job(4, records(1, 5))  # the same launch, but fewer records: start over too
    follow(page, fetch)
    assert asked == [12, 0] and page.records == records(1, 5)

    fresh = Feed()
    asked, fetch = fake_job(1, records(1, 7))
    status = follow(fresh, fetch)
    assert asked == [0] and fresh.records == records(1, 7)
    assert status_key(status) == status_key(fetch(7))


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
    assert [(e["name"], e["source"], e["run"]) for e in entries] == [(f"hf://{repo}/model_iter_20", "hub",
                                                                       f"hf://{repo}")]
    assert entries[0]["max_iterations"] == 20
    restarted.resume(entries[0]["name"], 30)
    assert restarted.wait(120)
    resumed = restarted.status()
    assert (resumed["state"], resumed["iteration"], resumed["run"]) == ("completed", 30, "app-run")
    assert [r["iteration"] for r in resumed["history"]] == list(range(1, 31))
    names = [e["name"] for e in restarted.list_checkpoints()[0]]
    assert names[0] == "app-run/model_iter_30" and f"hf://{repo}/model_iter_20" in names
    [run] = restarted.list_runs()
    assert (run["run"], run["checkpoints"]) == ("app-run", 1)
    assert run["id"] == Checkpoint.open(tmp_path / "first" / status["run"] / "model_iter_20").run_id

    with pytest.raises(CheckpointError, match="listed checkpoint"):
        restarted.lr_preview("hf://user/other-run/model_iter_20", 40)
    assert restarted.push("app-run/model_iter_30", HubSettings(repo))
    assert f"hf://{repo}/model_iter_30" not in [e["name"] for e in restarted.list_checkpoints()[0]]  # local copy
    hub_names = [e["name"] for e in TrainingJob(tmp_path / "third", hub_repo=repo).list_checkpoints()[0]]
    assert hub_names[0] == f"hf://{repo}/model_iter_30"


def test_the_checkpoint_in_use_cannot_be_deleted(tmp_path):
    job = TrainingJob(tmp_path / "ck", hub_repo="")
    name = train_to_the_end(job, max_iterations=10, **FAST)["checkpoint"]
    job.resume(name, 100_000)
    try:
        with pytest.raises(CheckpointError, match="used by the running job"):
            job.delete(name)
    finally:
        job.stop()
        assert job.wait(60)
    job.delete(name)
    for other in ("../ck/model_iter_10", f"{name}/..", "hf://user/run/model_iter_10"):
        with pytest.raises(CheckpointError, match="listed checkpoint|only local checkpoints"):
            job.delete(other)
    assert not (tmp_path / "ck" / name).exists()
    assert [e["name"] for e in job.list_checkpoints()[0]] == [job.status()["checkpoint"]]
    assert [(r["run"], r["checkpoints"]) for r in job.list_runs()] == [(name.split("/")[0], 1)]


def test_the_lr_preview_is_the_schedule_the_resume_follows_and_zips_hold_the_checkpoint(tmp_path):
    job = TrainingJob(tmp_path / "ck", hub_repo="")
    run = train_to_the_end(job, max_iterations=10, run_name="zipped", **FAST)["run"]
    assert run == "zipped"
    preview = job.lr_preview("zipped/model_iter_10", 30, lr=1e-3)
    trained = [r for r in preview if r["part"] == "trained"]
    planned = [r for r in preview if r["part"] == "planned"]
    assert [r["iteration"] for r in trained] == list(range(1, 11))
    assert [r["iteration"] for r in planned] == list(range(11, 31))
    with pytest.raises(ConfigError, match="below the checkpoint's iteration"):
        job.lr_preview("zipped/model_iter_10", 5)

    job.resume("zipped/model_iter_10", 30, lr=1e-3)
    assert job.wait(60)
    history = job.status()["history"]
    assert [r["lr"] for r in history] == [r["lr"] for r in trained + planned]

    with zipfile.ZipFile(job.archive("zipped/model_iter_30")) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "unzipped")
    assert {"zipped/run.json", "zipped/model_iter_30/model.safetensors",
            "zipped/model_iter_30/trainer_state.json"} <= set(names)
    assert Checkpoint.open(tmp_path / "unzipped" / "zipped" / "model_iter_30").iteration == 30


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
        assert (done["state"], done["iteration"], done["run"]) == ("completed", 20, "space-run")
        assert done["pushes"]["model_iter_20"].startswith("pushed ")

        client.predict(corpus_text=small_corpus(), max_iterations=TARGET, push_checkpoints=True,
                       api_name="/train", **SMALL_MODEL, **FAST)
        wait_for(client, lambda s: s["iteration"] >= 5)
        assert restarted.terminate() == 143
        interrupted = next(restarted.checkpoint_dir.glob("*/model_interrupted_*")).name
        assert f"checkpoints/{interrupted}/trainer_state.json" in hub_server.files(repo)
    finally:
        restarted.stop()

