"""The non-finite guard: settings must be finite, and a NaN/inf loss or gradient stops the run with model_error_N
holding the last finite state; rotation never removes the newest finite checkpoint; the state file is sealed."""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import math

import pytest
import torch
from conftest import FAST
from safetensors.torch import load_file

from azr import AZRTrainer, CheckpointError, ConfigError, TrainConfig, TrainingError
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.runs import list_checkpoints, rotate_checkpoints
from azr.checkpoints.statefile import STATE_FILE, seal
from azr.cli.main import main
from azr.training import step


@pytest.mark.parametrize("name", ["lr", "grad_clip", "weight_decay", "min_lr_ratio", "rl_weight", "temperature"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_settings_must_be_finite(name, value):
    with pytest.raises(ConfigError, match=name):
        TrainConfig(**{name: value})


@pytest.fixture
def diverging(monkeypatch):
    """Every loss from the 8th training forward pass on is NaN, as a run diverging at its peak LR would give (the highest LR
    the settings accept, 10, does not diverge a tiny model within a test's iterations)."""
    loss, calls = step.next_token_loss, itertools.count(1)

    def diverged(forward, batch):
        value = loss(forward, batch)
        return value * float("nan") if next(calls) >= 8 else value
    monkeypatch.setattr(step, "next_token_loss", diverged)


def test_a_diverging_run_stops_with_the_last_finite_state(texts, make_model, tokenizer, tmp_path, diverging):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = []
    with pytest.raises(TrainingError) as raised:
        for status in trainer.train(texts, 30, tmp_path, lr=10, **{**FAST, "save_every": 1}):
            statuses.append(status)
    message = str(raised.value)
    errors = list(tmp_path.glob("model_error_*"))
    assert len(errors) == 1 and statuses[-1].state == "error"
    failed_at = int(errors[0].name.rsplit("_", 1)[1])
    assert f"Step {failed_at + 1} stopped the run" in message and errors[0].name in message
    assert "learning rate 10 is far too high" in message and "\n" not in message
    checkpoint = Checkpoint.open(errors[0])  # complete and verified
    weights = load_file(errors[0] / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert all(math.isfinite(r["loss"]) for r in checkpoint.history())  # no NaN step was recorded
    assert checkpoint.iteration == failed_at == len(checkpoint.history())


def test_the_cli_reports_a_diverging_run_in_one_line(tmp_path, texts, diverging):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(texts)[:20_000])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", "--texts", str(corpus), "--lr", "10", "--max-iterations", "20", "--runs-dir",
                     str(tmp_path / "runs"), "--run", "r", "--vocab-size", "300", "--d-model", "32",
                     "--num-layers", "1", "--num-heads", "2", "--d-ff", "64", "--max-seq-len", "32",
                     "--batch-size", "4", "--self-play-every", "0"])
    last = err.getvalue().strip().splitlines()[-1]
    assert code == 2 and last.startswith("azr: error: Training failed at iteration") and "model_error_" in last
    assert len(list((tmp_path / "runs" / "r").glob("model_error_*"))) == 1


def test_rotation_keeps_the_newest_finite_checkpoint(texts, make_model, tokenizer, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    for _ in trainer.train(texts, 8, tmp_path, **{**FAST, "save_every": 2, "keep_last": 10}):
        pass
    for name in ("model_iter_6", "model_iter_8"):  # as an older azr wrote them: NaN losses, valid checkpoints
        state = json.loads((tmp_path / name / STATE_FILE).read_text())
        state.pop("state_sha256")
        (tmp_path / name / STATE_FILE).write_bytes(seal({**state, "loss": float("nan")}))
    rotate_checkpoints(tmp_path, keep_last=1)
    assert {info.name for info in list_checkpoints(tmp_path)} == {"model_iter_8", "model_iter_4"}


def test_a_changed_state_file_is_refused(texts, make_model, tokenizer, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    for _ in trainer.train(texts, 4, tmp_path, **{**FAST, "save_every": 4}):
        pass
    state_file = tmp_path / "model_iter_4" / STATE_FILE
    state = json.loads(state_file.read_text())
    assert state["state_sha256"]
    state_file.write_text(json.dumps({**state, "loss": 0.001}))
    with pytest.raises(CheckpointError, match="checksum mismatch in trainer_state.json"):
        Checkpoint.open(tmp_path / "model_iter_4")
