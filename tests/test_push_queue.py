"""A Hub outage loses no push: pending pushes are recorded in the run and pushed later (``azr push --pending``, the
app's next start); Ctrl+C during a hanging push exits within the grace period; invalid repo ids are refused before
training; two pushers to one repo keep every index entry. All against the local Hub server with the real client."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from app_process import AppProcess
from conftest import FAST, temporaries
from test_cli import TINY

from azr import AZRTrainer, HubError
from azr.checkpoints.checkpoint import Checkpoint
from azr.cli.main import main
from azr.hub import publish
from azr.hub.http import api
from azr.hub.pending import PENDING_FILE, PushTarget, pending
from azr.hub.uploader import HubUploader, push_pending

REPO = "user/run"
EVERY = {"model_iter_10", "model_iter_20", "model_iter_30"}


def azr(*args: object, **env: str) -> subprocess.CompletedProcess:
    """Run ``azr ARGS`` in a fresh process with the current environment (the local Hub server) and ``env``."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "azr", *map(str, args)], capture_output=True, text=True,
                          env=environment, timeout=300)


def index_of(hub_server, repo: str = REPO) -> dict:
    files = hub_server.files(repo)
    return json.loads(files["checkpoints/index.json"]) if "checkpoints/index.json" in files else {}


def wait_until(condition, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def train_while_the_hub_hangs(hub_server, make_model, tokenizer, texts, run_dir, monkeypatch):
    """Train 30 iterations pushing to REPO while every Hub request hangs; return the final status."""
    monkeypatch.setenv("AZR_HUB_TIMEOUT_S", "0.5")
    hub_server.outage()
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    *_, final = trainer.train(texts, 30, run_dir, hub_repo_id=REPO, hub_flush_timeout_s=0.5, **FAST)
    monkeypatch.delenv("AZR_HUB_TIMEOUT_S")  # later pushes (a loaded machine is slow) get the default timeout
    return final


def test_a_hub_that_hangs_through_the_run_gets_every_checkpoint_after_push_pending(
        hub_env, hub_server, make_model, tokenizer, texts, tmp_path, monkeypatch):
    final = train_while_the_hub_hangs(hub_server, make_model, tokenizer, texts, tmp_path / "runs" / "a", monkeypatch)
    assert final.state == "completed"
    assert set(final.pushes) == EVERY and all(s.startswith("pending: ") for s in final.pushes.values()), final.pushes
    assert "Not pushed to user/run" in final.message and "azr push --pending" in final.message
    assert {p.checkpoint for p in pending(tmp_path / "runs" / "a")} == EVERY
    deadline = time.monotonic() + 30  # the push in flight gives up when its request times out (0.5 s) and cleans up
    while [p for p in (tmp_path / "runs" / "a").iterdir() if p.name.startswith(".push-")] and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in (tmp_path / "runs" / "a").iterdir() if p.name.startswith(".push-")]

    hub_server.recover()  # the Hub comes back after the run ended
    result = azr("push", "--pending", tmp_path / "runs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Every pending push is done." in result.stdout
    lines = [line for line in result.stdout.splitlines() if " -> user/run: " in line]
    assert [line.split(" ")[0] for line in lines] == ["a/model_iter_30", "a/model_iter_20", "a/model_iter_10"]
    assert set(index_of(hub_server)) == EVERY
    assert not (tmp_path / "runs" / "a" / PENDING_FILE).exists()
    again = azr("push", "--pending", tmp_path / "runs")
    assert again.returncode == 0 and "Nothing pending" in again.stdout


def test_the_next_resume_pushes_what_is_pending(hub_env, hub_server, make_model, tokenizer, texts, tmp_path,
                                                monkeypatch):
    train_while_the_hub_hangs(hub_server, make_model, tokenizer, texts, tmp_path / "a", monkeypatch)
    hub_server.recover()
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    *_, final = trainer.train(texts, 35, tmp_path / "a", resume_from=tmp_path / "a" / "model_iter_30", **FAST)
    assert "All 3 checkpoints pushed to user/run." in final.message  # no --push-to-hub: only what was pending
    assert set(index_of(hub_server)) == EVERY and not pending(tmp_path / "a")


def test_the_app_pushes_pending_checkpoints_when_it_starts(hub_env, hub_server, make_model, tokenizer, texts,
                                                           tmp_path, monkeypatch):
    runs = tmp_path / "checkpoints"
    train_while_the_hub_hangs(hub_server, make_model, tokenizer, texts, runs / "a", monkeypatch)
    assert {p.checkpoint for p in pending(runs / "a")} == EVERY
    hub_server.recover()
    app = AppProcess.start(tmp_path, HF_HUB_OFFLINE="0")  # a restart of the app on the same runs root
    try:
        deadline = time.monotonic() + 120
        while set(index_of(hub_server)) != EVERY and time.monotonic() < deadline:
            time.sleep(0.2)
        assert set(index_of(hub_server)) == EVERY, app.output()
    finally:
        app.stop()
    assert not (runs / "a" / PENDING_FILE).exists()


def test_ctrl_c_during_a_hanging_push_exits_within_the_grace_period(hub_env, hub_server, texts, tmp_path):
    corpus = tmp_path / "small.txt"
    corpus.write_text("".join(texts), encoding="utf-8")
    hub_server.outage()  # every request hangs for longer than the grace period (the timeout is the default 60 s)
    grace = 8.0
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "AZR_GRACE_PERIOD_S": str(grace), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "azr", "train", *TINY, "--texts", corpus, "--batch-size", "4", "--save-every", "10", "--self-play-every",
         "0", "--max-iterations", "100000", "--runs-dir", tmp_path, "--run", "a", "--push-to-hub", REPO],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    try:
        for line in process.stdout:
            if line.startswith("Saved "):  # its push is hanging now
                break
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        output = process.communicate(timeout=60)[0]
        elapsed = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode == 130, output
    assert elapsed <= grace, (elapsed, output)
    assert "Interrupted at iteration" in output and "pending" in output
    left = {p.checkpoint for p in pending(tmp_path / "a")}
    assert "model_iter_10" in left and any(name.startswith("model_interrupted_") for name in left), left
    hub_server.recover()
    # On a loaded machine the run may save more than keep_last times before the signal lands: rotation has then
    # removed the oldest checkpoints, whose pushes are reported as impossible rather than retried forever.
    local = {name for name in left if (tmp_path / "a" / name).is_dir()}
    states = {push.checkpoint: state for push, state in push_pending(tmp_path / "a")}
    assert states.keys() == left and any(name.startswith("model_interrupted_") for name in local), states
    assert all(states[name].startswith("pushed") for name in local), states
    assert all(states[name] == "failed: the checkpoint no longer exists locally" for name in left - local), states
    assert local <= set(index_of(hub_server))


@pytest.mark.parametrize("repo", ["not a/valid repo", "../../x", "user/run/extra", "user/r..n"])
def test_an_invalid_repo_id_is_refused_before_training(repo, make_model, tokenizer, texts, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    with pytest.raises(HubError, match="is not a Hub repo id; write user/run"):
        trainer.train(texts, 30, tmp_path / "run", hub_repo_id=repo, **FAST)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [["train", *TINY, "--max-iterations", "5", "--push-to-hub", "not a/valid repo"],
                                  ["push", "ck", "../../x"]])
def test_the_cli_refuses_an_invalid_repo_id_in_one_line(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("azr: error: ") and "is not a Hub repo id" in error and len(error.splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing was trained, no run directory was left


def test_concurrent_pushes_to_one_repo_keep_every_index_entry(hub_env, hub_server, make_model, tokenizer, texts,
                                                              tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    for _ in trainer.train(texts, 20, tmp_path, **FAST):
        pass
    api().create_repo(REPO, exist_ok=True)
    hub_server.hang_next(1, 1.0, methods=("POST",), path="/commit/")  # the first commit waits: the other goes first
    results: dict[str, str | Exception] = {}

    def push(name: str) -> None:
        try:
            results[name] = publish.push(tmp_path / name, REPO)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[name] = exc

    pushers = [threading.Thread(target=push, args=(name,)) for name in ("model_iter_10", "model_iter_20")]
    for pusher in pushers:
        pusher.start()
    for pusher in pushers:
        pusher.join(60)
    assert all(isinstance(commit, str) for commit in results.values()), results
    assert set(index_of(hub_server)) == {"model_iter_10", "model_iter_20"}
    commits = [status for method, path, status in hub_server.answers if method == "POST" and "/commit/" in path]
    assert sorted(commits) == [200, 200, 412]  # one pusher's commit was refused and made again on the new head


def test_a_replaced_queued_push_leaves_no_staging_and_a_push_to_another_repo_is_kept(
        hub_env, hub_server, make_model, tokenizer, texts, tmp_path):
    run = tmp_path / "a"
    AZRTrainer(make_model(), tokenizer, device="cpu").train_continuous(texts, 20, run, **FAST)
    hub_server.outage()  # the first push hangs in flight: the next ones wait in the queue
    uploader = HubUploader()
    try:
        uploader.submit(run / "model_iter_20", PushTarget(REPO))
        wait_until(lambda: uploader.states().get("model_iter_20") == "uploading")
        for repo in ("user/x", "user/y", "user/y"):  # the same checkpoint to two repos, the second one twice
            uploader.submit(run / "model_iter_10", PushTarget(repo))
        assert len(temporaries(run)) == 3  # one staged copy per push in flight or waiting; the replaced one is gone
        hub_server.recover()
        states = uploader.finish(60)
    finally:
        uploader.close()
    assert all(state.startswith("pushed") for state in states.values()), states
    assert set(index_of(hub_server)) == {"model_iter_20"}
    assert set(index_of(hub_server, "user/x")) == set(index_of(hub_server, "user/y")) == {"model_iter_10"}
    assert not pending(run) and not temporaries(run)


def test_an_older_push_in_flight_does_not_forget_the_newer_content_of_its_name(
        hub_env, hub_server, make_model, tokenizer, texts, tmp_path):
    run, aside = tmp_path / "a", tmp_path / "aside"
    aside.mkdir()
    AZRTrainer(make_model(), tokenizer, device="cpu").train_continuous(texts, 20, run, **FAST)
    (run / "model_iter_20").rename(aside / "old")
    AZRTrainer.from_checkpoint(run / "model_iter_10", device="cpu").train_continuous(
        texts, 20, run, resume_from=run / "model_iter_10", **{**FAST, "lr": 1e-4})  # model_iter_20 again, changed
    (run / "model_iter_20").rename(aside / "new")
    (aside / "old").rename(run / "model_iter_20")
    new = Checkpoint.open(aside / "new", verify=False).state["timestamp"]
    hub_server.hang_next(1, 5.0, methods=("POST",), path="/commit/")  # the old content's commit takes a while
    uploader = HubUploader()
    try:
        uploader.submit(run / "model_iter_20", PushTarget(REPO))
        wait_until(lambda: any(method == "POST" and "/commit/" in path for method, path in hub_server.requests))
        (run / "model_iter_20").rename(aside / "old")  # meanwhile the run saves model_iter_20 again
        (aside / "new").rename(run / "model_iter_20")
        hub_server.outage(503, methods=("POST",))  # and the Hub fails from now on: the new content stays pending
        uploader.submit(run / "model_iter_20", PushTarget(REPO))
        wait_until(lambda: uploader.states()["model_iter_20"].startswith("retrying"))  # the old one has landed
    finally:
        uploader.close()
    assert [push.timestamp for push in pending(run)] == [new]
    hub_server.recover()
    assert [state.split(" ")[0] for _, state in push_pending(run)] == ["pushed"]
    assert index_of(hub_server)["model_iter_20"]["timestamp"] == new and not pending(run)


def test_transient_errors_in_a_short_run_are_retried_within_its_flush_window(
        hub_env, hub_server, make_model, tokenizer, texts, tmp_path, monkeypatch):
    for name in ("AZR_HUB_BACKOFF_S", "AZR_HUB_BACKOFF_MAX_S"):  # the default backoff: 1 s, doubling up to 60 s
        monkeypatch.delenv(name)
    hub_server.fail_next(3, 503, methods=("POST",), path="/api/repos/create")
    hub_server.fail_next(3, 500, methods=("POST",), path="/api/repos/create")
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    *_, final = trainer.train(texts, 30, tmp_path / "a", hub_repo_id=REPO, hub_flush_timeout_s=30, **FAST)
    assert "All 3 checkpoints pushed to user/run." in final.message, final.pushes
    assert set(index_of(hub_server)) == EVERY and not pending(tmp_path / "a")
