"""One state, one save path: a field added to TrainState alone is saved, verified and restored; a failed background
save is never dropped by a later save; a run's staged memory goes when the run ends."""
from __future__ import annotations

import dataclasses
import errno
import gc
import os
import threading
from pathlib import Path

import pytest
import torch
from conftest import FAST
from test_async_save import hold_background_saves

from azr import AZRTrainer, CheckpointError, TrainingError
from azr.checkpoints.checkpoint import Checkpoint
from azr.training import session, step
from azr.training.callbacks import TrainerCallback
from azr.training.saving import CheckpointSaver, StepSnapshot
from azr.training.state import TrainState


@dataclasses.dataclass
class ExtendedState(TrainState):
    """A new piece of training state, added in one place: a field of the state class."""

    tokens_seen: dict[str, float] = dataclasses.field(default_factory=dict)


def test_a_field_added_to_the_train_state_is_saved_verified_and_restored_bit_for_bit(
        texts, tokenizer, make_model, tmp_path, monkeypatch):
    monkeypatch.setattr(session, "TrainState", ExtendedState)
    model = make_model()
    run = session.prepare_run(model, tokenizer, model.device, texts, 10, tmp_path, None, True, FAST)
    run.state.tokens_seen = {"total": 12345.678901234567, "rate": 1 / 3}
    path = CheckpointSaver(model, tokenizer, model.device).save(run, "paused", StepSnapshot())
    assert Checkpoint.open(path).state["tokens_seen"] == run.state.tokens_seen  # written, sealed and verified

    resumed = session.prepare_run(make_model(seed=1), tokenizer, model.device, None, 20, tmp_path,
                                  Checkpoint.open(path), True, FAST)
    assert isinstance(resumed.state, ExtendedState)
    assert resumed.state.tokens_seen == run.state.tokens_seen  # the same floats, to the last bit
    assert resumed.state.state_dict() | {"plan": None} == run.state.state_dict() | {"plan": None}


def test_a_failed_background_save_followed_by_a_best_checkpoint_ends_the_run_in_error(
        texts, tokenizer, make_model, tmp_path, monkeypatch):
    """The save at 4 fails in the background; the best checkpoint at 5 must not hide it."""
    monkeypatch.setenv("AZR_SAVE_WRITER", "thread")
    release = threading.Event()
    release.set()
    hold_background_saves(monkeypatch, release, OSError(errno.EIO, "injected I/O error"))
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = []
    with pytest.raises(CheckpointError, match="model_iter_4"):
        for status in trainer.train(texts, 8, tmp_path, **{**FAST, "save_every": 4, "val_every": 5,
                                                             "keep_best": True, "self_play_every": 0}):
            statuses.append(status)
    assert statuses[-1].state == "error"
    assert "model_iter_4" in statuses[-1].message
    assert not (tmp_path / "model_iter_4").exists()
    assert "completed" not in [s.state for s in statuses]


def _staged_mappings(pid: int | str = "self") -> list[str]:
    """The lines of a process's memory map that are a staged checkpoint's shared memory."""
    return [line for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "azr-staged-checkpoint" in line]


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_two_trainings_in_one_process_release_their_staged_memory_after_each(
        texts, tokenizer, make_model, tmp_path, monkeypatch, writer):
    monkeypatch.setenv("AZR_SAVE_WRITER", writer)
    gc.collect()
    before = set(_staged_mappings())  # what earlier tests of this process may still hold
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    for number, target in enumerate((10, 20)):
        for _ in trainer.train(texts, target, tmp_path / f"run{number}", **{**FAST, "self_play_every": 0}):
            pass
        assert (tmp_path / f"run{number}" / f"model_iter_{target}").is_dir()
        stager = trainer._saver._stager
        assert stager.arena is None and stager._buffers == []
        gc.collect()
        assert set(_staged_mappings()) <= before  # no growth: this run's staged copy is unmapped
        for pid in _writer_pids():
            assert _staged_mappings(pid) == []  # an idle writer process maps no run's state either


def _writer_pids() -> list[int]:
    """The writer processes this process started (its children running azr.checkpoints.writerprocess)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if f"PPid:\t{os.getpid()}\n" in status and b"azr.checkpoints.writerprocess" in command:
                pids.append(int(entry.name))
    return pids


def test_a_background_save_collected_by_a_best_checkpoint_is_reported(texts, tokenizer, make_model, tmp_path,
                                                                       monkeypatch):
    """The save at 4 ends while the best checkpoint at 5 is taken: its status and last_checkpoint stay."""
    monkeypatch.setenv("AZR_SAVE_WRITER", "thread")
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = list(trainer.train(texts, 8, tmp_path, **{**FAST, "save_every": 4, "val_every": 5, "keep_best": True,
                                                          "self_play_every": 0}))
    saved = [s.message for s in statuses if s.state == "checkpoint"]
    assert saved == ["Saved model_iter_4.", "Saved model_iter_8."]
    assert statuses[-1].state == "completed"


class ThreadRecorder(TrainerCallback):
    """Records the thread each hook runs on."""

    def __init__(self) -> None:
        self.threads: set[str] = set()

    def on_status(self, status) -> None:
        self.threads.add(threading.current_thread().name)

    def on_save(self, path, kind) -> None:
        self.threads.add(threading.current_thread().name)


def test_every_hook_runs_on_the_training_thread_background_saves_too(texts, tokenizer, make_model, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("AZR_SAVE_WRITER", "thread")
    recorder = ThreadRecorder()
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu", callbacks=[recorder])
    statuses = list(trainer.train(texts, 20, tmp_path, **{**FAST, "self_play_every": 0}))
    assert [s.message for s in statuses if s.state == "checkpoint"] == ["Saved model_iter_10.", "Saved model_iter_20."]
    assert recorder.threads == {threading.current_thread().name}


def test_a_non_finite_rl_gradient_under_fp16_stops_the_step_before_the_update(texts, tokenizer, make_model,
                                                                              tmp_path, monkeypatch):
    """The GradScaler checks the LM gradients when it unscales them; the RL gradient blended in after must be
    guarded too."""
    blend = step.blend_rl_gradient

    def poisoned(model, *args):
        blend(model, *args)
        next(p for p in model.parameters() if p.grad is not None).grad.view(-1)[0] = float("nan")
    monkeypatch.setattr(step, "blend_rl_gradient", poisoned)
    model = make_model()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    trainer = AZRTrainer(model, tokenizer, device="cpu")
    with pytest.raises(TrainingError, match="gradient norm is nan"):
        for _ in trainer.train(texts, 5, tmp_path, **{**FAST, "precision": "fp16", "self_play_every": 1}):
            pass
    assert trainer.last_status.state == "error" and trainer.last_status.iteration == 0
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())


@pytest.mark.parametrize("async_save", [True, False])
def test_a_step_saved_as_best_and_as_iter_stores_its_files_once(texts, tokenizer, make_model, tmp_path, monkeypatch,
                                                                 async_save):
    monkeypatch.setenv("AZR_SAVE_WRITER", "thread")
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    for _ in trainer.train(texts, 10, tmp_path, **{**FAST, "val_every": 10, "keep_best": True,
                                                   "self_play_every": 0, "async_save": async_save}):
        pass
    best, last = tmp_path / "model_best_10", tmp_path / "model_iter_10"
    for name in ("model.safetensors", "optimizer.safetensors", "rng_state.safetensors"):
        assert (best / name).stat().st_ino == (last / name).stat().st_ino, name
    Checkpoint.open(best), Checkpoint.open(last)  # both still verify
