"""On a CUDA GPU: every precision (fp16 with its GradScaler too) and torch.compile resume bit for bit, AdamW is the
fused one, background saves copy the live GPU state exactly and a writer process writes them, and a run paused on
one device resumes on the other.

These run where a GPU is (they were run on an H200 lent to this work; BENCHMARKS.md); without one they are skipped.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from test_precision import STOP, TARGET, losses, train
from test_writer_process import spy, wait_for_the_writer

from azr import AZRTrainer
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.names import OPTIMIZER_FILE, RNG_FILE, WEIGHTS_FILE

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# On a GPU, float32 matmuls and reductions take other paths than on the CPU: same-device resumes are bit for bit,
# a resume on the other device agrees to rounding.
OTHER_DEVICE_TOLERANCE = 1e-4


@pytest.mark.parametrize("settings", [dict(precision="fp32"), dict(precision="bf16"), dict(precision="fp16"),
                                      dict(precision="bf16", grad_accum_steps=2), dict(precision="fp32", compile=True)],
                         ids=["fp32", "bf16", "fp16", "accum", "compile"])
def test_stop_and_resume_on_the_gpu_is_bit_identical(texts, tokenizer, make_model, tmp_path, settings):
    reference = AZRTrainer(make_model(), tokenizer, device="cuda")
    done = train(reference, texts, tmp_path / "reference", status_every=STOP, **settings)
    assert reference.optimizer.defaults["fused"] is True
    first = AZRTrainer(make_model(), tokenizer, device="cuda")
    paused = train(first, texts, tmp_path / "stopped", stop_at=STOP, status_every=STOP, **settings)
    assert paused.checkpoint.endswith(f"model_paused_{STOP}")

    second = AZRTrainer.from_checkpoint(paused.checkpoint, device="cuda")
    resumed = train(second, texts, tmp_path / "stopped", status_every=STOP)  # the settings are the checkpoint's
    assert losses(second) == losses(reference)
    scaler = Checkpoint.open(resumed.checkpoint).state["grad_scaler"]
    assert scaler == Checkpoint.open(done.checkpoint).state["grad_scaler"]
    assert (scaler is not None) == (settings["precision"] == "fp16")  # fp16 alone has a scaler, and it is saved
    for name, value in reference.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], value), name


def test_a_background_save_writes_exactly_the_gpu_state_of_its_iteration(texts, tokenizer, make_model, tmp_path,
                                                                         monkeypatch):
    """The staged copy (shared memory pinned with cudaHostRegister, non-blocking copies) is complete before
    training changes the state, and the writer process (the default on a GPU) writes it."""
    monkeypatch.delenv("AZR_SAVE_WRITER", raising=False)
    seen = spy(monkeypatch)
    for mode, background in (("async", True), ("sync", False)):
        trainer = AZRTrainer(make_model(), tokenizer, device="cuda")
        trainer.status_callback = wait_for_the_writer(trainer) if background else None
        train(trainer, texts, tmp_path / mode, async_save=background)
        if background:
            assert trainer._saver._stager.arena.pinned
    assert seen["writer"] == ["model_iter_10", "model_iter_12"] and seen["here"] == []
    written = {mode: Checkpoint.open(tmp_path / mode / "model_iter_10") for mode in ("async", "sync")}
    for filename in (WEIGHTS_FILE, OPTIMIZER_FILE, RNG_FILE):
        background, foreground = (load_file(written[mode].path / filename) for mode in ("async", "sync"))
        assert background.keys() == foreground.keys() and background
        for name, value in foreground.items():
            assert torch.equal(background[name], value), (filename, name)


@pytest.mark.parametrize("before, after", [("cpu", "cuda"), ("cuda", "cpu")])
def test_a_run_paused_on_one_device_resumes_on_the_other(texts, tokenizer, make_model, tmp_path, before, after):
    reference = AZRTrainer(make_model(), tokenizer, device=before)
    train(reference, texts, tmp_path / "reference")
    first = AZRTrainer(make_model(), tokenizer, device=before)
    paused = train(first, texts, tmp_path / "moved", stop_at=STOP, status_every=STOP)

    moved = AZRTrainer.from_checkpoint(paused.checkpoint, device=after)
    resumed = train(moved, texts, tmp_path / "moved")
    assert resumed.state == "completed" and resumed.iteration == TARGET
    assert all(value.device.type == after for value in moved.optimizer.state_dict()["state"][0].values()
               if isinstance(value, torch.Tensor) and value.dim() > 0)
    assert losses(moved)[:STOP] == losses(reference)[:STOP]  # the history came along unchanged
    assert max(abs(a - b) for a, b in zip(losses(moved), losses(reference))) <= OTHER_DEVICE_TOLERANCE
