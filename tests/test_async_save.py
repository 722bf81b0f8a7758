"""Asynchronous checkpoints: the blocking part copies the state (``thread``) or writes the checkpoint's files
without fsync (``pagecache``), a thread writes or finishes and verifies it; the written checkpoint is the one a
synchronous save of the same step writes, and every final checkpoint is complete when its status is yielded (or
its interrupt raised). These tests hold and break the thread's writes; the writer process has its own in
``test_writer_process.py``."""
from __future__ import annotations

import errno
import hashlib
import os
import re
import threading

import pytest
from conftest import FAST, temporaries
from safetensors import SafetensorError

from azr import AZRTrainer, CheckpointError, list_checkpoints
from azr.checkpoints import storage, tensorfile
from azr.checkpoints.writerprocess import NICENESS
from azr.training import saving
from azr.training.callbacks import TrainerCallback

COMPARED = ("model.safetensors", "optimizer.safetensors", "rng_state.safetensors", "reference.safetensors",
            "scheduler.json", "config.json", "generation_config.json", "tokenizer.json")


@pytest.fixture(autouse=True, params=["thread", "pagecache"])
def writer(monkeypatch, request) -> str:
    monkeypatch.setenv("AZR_SAVE_WRITER", request.param)
    return request.param


def digests(path) -> dict[str, str]:
    return {name: hashlib.sha256((path / name).read_bytes()).hexdigest() for name in COMPARED}


def train(trainer, texts, target, directory, **settings):
    return [(s.state, s.iteration, s.message) for s in trainer.train(texts, target, directory, **{**FAST, **settings})]


def hold_background_saves(monkeypatch, release: threading.Event, failure: BaseException | None = None) -> None:
    """Make each background save wait for ``release`` before its thread writes or finishes it (and then raise
    ``failure``, if given)."""
    for name in ("write_contents", "finish_checkpoint"):
        def held(*args, _original=getattr(saving, name), **kwargs):
            if threading.current_thread().name == "azr-checkpoint-save":
                assert release.wait(300)
                if failure is not None:
                    raise failure
            return _original(*args, **kwargs)
        monkeypatch.setattr(saving, name, held)


def test_a_background_save_writes_what_a_synchronous_save_of_the_same_step_writes(texts, tokenizer, make_model,
                                                                                  tmp_path, monkeypatch):
    """The save at 10 is held until training reached 15: the steps taken meanwhile must not leak into it."""
    release = threading.Event()
    hold_background_saves(monkeypatch, release)
    later = AZRTrainer(make_model(), tokenizer, device="cpu",
                       status_callback=lambda s: s.iteration == 15 and release.set())
    statuses = train(later, texts, 20, tmp_path / "async")
    now = AZRTrainer(make_model(), tokenizer, device="cpu")
    train(now, texts, 20, tmp_path / "sync", async_save=False)
    reported = [(state, iteration) for state, iteration, message in statuses if state == "checkpoint"]
    assert reported[0][0] == "checkpoint" and reported[0][1] >= 15  # the save at 10 ended after 15
    for name in ("model_iter_10", "model_iter_20"):
        assert digests(tmp_path / "async" / name) == digests(tmp_path / "sync" / name), name
    assert [i.name for i in list_checkpoints(tmp_path / "async") if i.valid] == ["model_iter_20", "model_iter_10"]


def test_a_pause_waits_for_the_save_in_flight_and_both_are_complete_when_yielded(texts, tokenizer, make_model,
                                                                                 tmp_path, monkeypatch):
    release = threading.Event()
    hold_background_saves(monkeypatch, release)

    def on_status(status):
        if status.iteration == 10 and status.state == "running":
            trainer.stop_training()
            threading.Timer(0.3, release.set).start()
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu", status_callback=on_status)
    seen = []
    for status in trainer.train(texts, 30, tmp_path, **FAST):
        seen.append((status.state, status.message))
        if status.state == "paused":
            listed = {i.name: i.valid for i in list_checkpoints(tmp_path)}
    assert seen[-2:] == [("checkpoint", "Saved model_iter_10."), ("paused", "Paused at iteration 10; saved "
                                                                           "model_paused_10.")]
    assert listed == {"model_paused_10": True, "model_iter_10": True}


def test_ctrl_c_while_a_save_is_in_flight_leaves_it_and_the_interrupted_checkpoint_complete(
        texts, tokenizer, make_model, tmp_path, monkeypatch):
    release = threading.Event()
    hold_background_saves(monkeypatch, release)

    def on_status(status):
        if status.iteration == 10 and status.state == "running":
            threading.Timer(0.3, release.set).start()
            raise KeyboardInterrupt
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu", status_callback=on_status)
    with pytest.raises(KeyboardInterrupt):
        train(trainer, texts, 30, tmp_path)
    assert {i.name: i.valid for i in list_checkpoints(tmp_path)} == {"model_interrupted_10": True,
                                                                     "model_iter_10": True}


def test_a_failed_background_save_surfaces_as_an_error(texts, tokenizer, make_model, tmp_path, monkeypatch):
    release = threading.Event()
    release.set()
    hold_background_saves(monkeypatch, release, failure=OSError(28, "No space left on device"))
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = []
    with pytest.raises(CheckpointError, match="model_iter_10 in the background failed"):
        for status in trainer.train(texts, 30, tmp_path, **FAST):
            statuses.append(status)
    final = statuses[-1]
    assert final.state == "error" and "No space left on device" in final.message
    assert [i.name for i in list_checkpoints(tmp_path)] == [f"model_error_{final.iteration}"]


DISK_FAILURES = {  # how the disk fails, and what the message must say (a pattern)
    "full": (lambda: SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
             r"The disk holding {directory} is full \([\d,.]+ MiB free\): model_iter_20 could not be written"),
    "read-only": (lambda: OSError(errno.EROFS, "Read-only file system"),
                  r"model_iter_20 could not be written in {directory} \(Read-only file system\)")}


@pytest.mark.parametrize("async_save", [False, True], ids=["now", "background"])
@pytest.mark.parametrize("failure", DISK_FAILURES)
@pytest.mark.parametrize("when", ["writing", "fsync"])
def test_a_disk_that_fails_stops_the_run_with_one_clear_error_naming_the_newest_checkpoint(
        texts, tokenizer, make_model, tmp_path, monkeypatch, async_save, failure, when):
    """Once the disk fails (safetensors reports a full one in its own error) while the files are written or while
    they are made durable, the save fails and so does the error checkpoint after it: the run ends with one error that
    says why, nothing half-written is left, and the message names the newest checkpoint there is."""
    error, expected = DISK_FAILURES[failure]
    module, name = (tensorfile, "write") if when == "writing" else (storage, "fsync_file")
    write, failing = getattr(module, name), threading.Event()

    def write_unless_failing(*args):
        if failing.is_set():
            raise error()
        return write(*args)
    monkeypatch.setattr(module, name, write_unless_failing)

    class FailAfterTheFirstSave(TrainerCallback):  # on_save: as the save is collected, before the next one begins
        def on_save(self, path, kind):
            failing.set()
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu", callbacks=[FailAfterTheFirstSave()])
    with pytest.raises(CheckpointError) as raised:
        train(trainer, texts, 40, tmp_path, async_save=async_save)
    message = str(raised.value)
    assert re.search(expected.format(directory=re.escape(repr(str(tmp_path)))), message), message
    assert "model_error_" in message and "could not be saved either" in message
    assert message.endswith(f"the newest checkpoint is {tmp_path / 'model_iter_10'}.")
    assert trainer.last_status.state == "error" and trainer.last_status.message == message
    assert [(i.name, i.valid) for i in list_checkpoints(tmp_path)] == [("model_iter_10", True)]
    assert not temporaries(tmp_path)  # nothing half-written is left


def test_a_run_that_ends_lets_go_of_its_gradients(texts, tokenizer, make_model, tmp_path):
    """The memory a run adds to the model (its last step's gradients) goes when the run ends, completed or paused:
    a model kept after training weighs what it weighed before."""
    completed = AZRTrainer(make_model(), tokenizer, device="cpu")
    train(completed, texts, 4, tmp_path / "completed", save_every=2)
    paused = AZRTrainer(make_model(), tokenizer, device="cpu",
                        status_callback=lambda s: s.iteration == 2 and paused.stop_training())
    assert train(paused, texts, 4, tmp_path / "paused", status_every=1)[-1][0] == "paused"
    for trainer in (completed, paused):
        assert [name for name, p in trainer.model.named_parameters() if p.grad is not None] == []


def test_saves_through_the_page_cache_stage_no_copy_of_the_state(texts, tokenizer, make_model, tmp_path, writer):
    """With ``pagecache`` no staging buffer is ever allocated (the memory a staged copy would double); the thread
    writer's copy is there while its run goes on."""
    staged = []
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu", status_callback=lambda s: s.state == "checkpoint" and
                         staged.append(len(trainer._saver._stager._buffers)))
    assert train(trainer, texts, 20, tmp_path)[-1][0] == "completed"
    assert len(staged) == 2 and (all(staged) if writer == "thread" else staged == [0, 0])


def test_saves_through_the_page_cache_are_finished_below_the_training_priority(texts, tokenizer, make_model, tmp_path,
                                                                             monkeypatch, writer):
    """The thread that makes a save durable and verifies it runs at the writer process's niceness (Linux)."""
    seen, finish = [], saving.finish_checkpoint

    def spied(*args, **kwargs):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return finish(*args, **kwargs)
    monkeypatch.setattr(saving, "finish_checkpoint", spied)
    train(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 20, tmp_path)
    expected = max(NICENESS, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert seen == ([expected] * 2 if writer == "pagecache" else [])
