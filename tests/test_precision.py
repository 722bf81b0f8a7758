"""Precision and throughput settings: bf16, fp16 with its GradScaler, gradient accumulation and torch.compile (with
the default deterministic kernels) each resume bit for bit on CPU; accumulation takes the same steps as the whole
batch; impossible settings are refused in one sentence."""
from __future__ import annotations

import pytest
import torch
from conftest import FAST

from azr import AZRTrainer, ConfigError, TrainConfig
from azr.checkpoints.checkpoint import Checkpoint
from azr.cli.main import build_parser
from azr.training import precision

TARGET, STOP = 12, 6


def train(trainer, texts, directory, stop_at=None, **settings):
    """Drain a run (stopping at ``stop_at``) and return its final status."""
    statuses = []
    for status in trainer.train(texts, TARGET, directory, **{**FAST, **settings}):
        statuses.append(status)
        if status.iteration == stop_at and status.state == "running":
            trainer.stop_training()
    return statuses[-1]


def losses(trainer):
    return [record["loss"] for record in trainer.history]


@pytest.mark.parametrize("settings", [dict(precision="bf16"), dict(precision="fp16"),
                                      dict(grad_accum_steps=2, precision="bf16"), dict(precision="fp32", compile=True)],
                         ids=["bf16", "fp16", "accum", "compile"])
def test_stop_and_resume_is_bit_identical(texts, tokenizer, make_model, tmp_path, settings):
    reference = AZRTrainer(make_model(), tokenizer, device="cpu")
    done = train(reference, texts, tmp_path / "reference", status_every=STOP, **settings)
    expected = Checkpoint.open(done.checkpoint)
    first = AZRTrainer(make_model(), tokenizer, device="cpu")
    final = train(first, texts, tmp_path / "stopped", stop_at=STOP, status_every=STOP, **settings)
    assert final.checkpoint.endswith(f"model_paused_{STOP}")
    saved = Checkpoint.open(final.checkpoint)
    if settings["precision"] == "fp16":  # the scaler counts steps without overflow towards its next growth
        assert saved.state["grad_scaler"]["_growth_tracker"] == STOP
    else:
        assert saved.state["grad_scaler"] is None

    second = AZRTrainer.from_checkpoint(final.checkpoint, device="cpu")
    resumed = train(second, texts, tmp_path / "stopped", status_every=STOP)  # the settings are the checkpoint's
    assert losses(second) == losses(reference)
    assert Checkpoint.open(resumed.checkpoint).state["grad_scaler"] == expected.state["grad_scaler"]
    for name, value in reference.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], value), name


def test_accumulation_takes_the_same_steps_as_the_whole_batch(texts, tokenizer, make_model, tmp_path):
    whole, pieces = (AZRTrainer(make_model(), tokenizer, device="cpu") for _ in range(2))
    train(whole, texts, tmp_path / "whole", batch_size=8)
    train(pieces, texts, tmp_path / "pieces", batch_size=8, grad_accum_steps=4)
    assert max(abs(a - b) for a, b in zip(losses(whole), losses(pieces))) <= 1e-5


def test_impossible_settings_are_refused_in_one_sentence(texts, tokenizer, make_model, tmp_path):
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, fp16, got 'fp8'"):
        TrainConfig(precision="fp8")
    with pytest.raises(ConfigError, match="compile must be true or false"):
        TrainConfig(compile="yes")
    with pytest.raises(ConfigError, match="precision bf16 needs autocast, which torch does not offer on meta"):
        precision.check("bf16", torch.device("meta"))
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    with pytest.raises(ConfigError, match=r"global batch of 4 windows cannot be split evenly over 1 process\(es\) "
                                          r"x 3 accumulation step"):
        trainer.train(texts, TARGET, tmp_path, **{**FAST, "grad_accum_steps": 3})
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_the_cli_offers_the_settings():
    args = build_parser().parse_args(["train", "--precision", "bf16", "--grad-accum-steps", "2", "--compile"])
    assert (args.precision, args.grad_accum_steps, args.compile) == ("bf16", 2, True)
    assert build_parser().parse_args(["train"]).compile is None  # not given: not passed on
    assert build_parser().parse_args(["resume", "x", "--no-compile"]).compile is False


def kernel_mode() -> tuple[bool, bool]:
    """PyTorch's process-wide deterministic mode and whether it fills new memory."""
    return torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory


@pytest.fixture
def default_kernel_mode():
    """PyTorch's defaults before the test (deterministic off, new memory filled when it is on), restored after."""
    before = kernel_mode()
    torch.use_deterministic_algorithms(False)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = before[1]


def test_deterministic_kernels_last_as_long_as_their_run(texts, tokenizer, make_model, tmp_path, default_kernel_mode):
    """A run's deterministic mode is the run's: during it PyTorch picks deterministic kernels without filling each
    new tensor's memory first (a cost with nothing to make deterministic: a kernel that reads memory it did not
    write is a bug either way); once it ends, a Trainer or loop in the same process runs in the mode it had."""
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    during = [kernel_mode() for status in trainer.train(texts, 4, tmp_path / "on", **FAST) if status.iteration]
    assert set(during) == {(True, False)}
    assert kernel_mode() == (False, True)
    during = [kernel_mode() for status in trainer.train(texts, 4, tmp_path / "off", deterministic=False, **FAST)
              if status.iteration]
    assert set(during) == {(False, True)}


def test_a_run_ending_leaves_deterministic_kernels_to_a_run_still_training(texts, tokenizer, make_model, tmp_path,
                                                                         default_kernel_mode):
    first = AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 4, tmp_path / "first", **FAST)
    second = AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 4, tmp_path / "second", **FAST)
    next(first), next(second)  # both runs have started
    list(first)  # the first ends while the second has not
    during = [kernel_mode() for status in second if status.iteration]
    assert set(during) == {(True, False)}
    assert kernel_mode() == (False, True)
