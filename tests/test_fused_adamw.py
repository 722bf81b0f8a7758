"""Which AdamW a run steps with: the fused kernel for a new run on every device (the CPU included), and on resume
the one the run was trained with, as its checkpoint's optimizer state records it."""
from __future__ import annotations

import shutil
from pathlib import Path

from conftest import FAST

from azr import AZRTrainer
from azr.checkpoints.checkpoint import Checkpoint

FIXTURES = Path(__file__).parent / "fixtures"


def fused(optimizer) -> list:
    """The optimizer's own choice and each parameter group's, which is what its step follows."""
    return [optimizer.defaults["fused"], *(group["fused"] for group in optimizer.param_groups)]


def train(trainer, texts, target, directory, stop_at=None, **kwargs):
    """Run to ``target`` (stopping after iteration ``stop_at`` when given); return the last status."""
    for status in trainer.train(texts, target, directory, **{**FAST, **kwargs}):
        if status.iteration == stop_at and status.state == "running":
            trainer.stop_training()
    return status


def test_a_new_cpu_run_uses_the_fused_adamw(texts, tokenizer, make_model, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    train(trainer, texts, 2, tmp_path)
    assert fused(trainer.optimizer) == [True, True, True]
    saved = Checkpoint.open(Path(trainer.last_status.checkpoint)).optimizer_state()
    assert [group["fused"] for group in saved["param_groups"]] == [True, True]  # the run's record of it


def test_a_fused_run_stopped_and_resumed_is_bit_identical(texts, tokenizer, make_model, tmp_path):
    reference = AZRTrainer(make_model(), tokenizer, device="cpu")
    train(reference, texts, 12, tmp_path / "reference")
    first = AZRTrainer(make_model(), tokenizer, device="cpu")
    paused = train(first, texts, 12, tmp_path / "run", stop_at=5)
    assert paused.state == "paused"
    second = AZRTrainer.from_checkpoint(paused.checkpoint, device="cpu")
    train(second, texts, 12, tmp_path / "run")
    assert fused(second.optimizer) == [True, True, True]
    assert [r["loss"] for r in second.history] == [r["loss"] for r in reference.history]
    for name, value in reference.model.state_dict().items():
        assert value.equal(second.model.state_dict()[name]), name


def test_a_run_trained_without_the_fused_adamw_resumes_without_it(tmp_path):
    run = Path(shutil.copytree(FIXTURES / "v1_run", tmp_path / "run"))  # an earlier release's CPU run
    trainer = AZRTrainer.from_checkpoint(run / "model_paused_6", device="cpu")
    train(trainer, None, 8, run)
    assert fused(trainer.optimizer) == [None, None, None]  # torch's default: the per-tensor AdamW on a CPU
    saved = Checkpoint.open(Path(trainer.last_status.checkpoint)).optimizer_state()
    assert [group["fused"] for group in saved["param_groups"]] == [None, None]  # and its checkpoints still say so
