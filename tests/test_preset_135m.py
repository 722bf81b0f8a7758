"""The 135m preset (SmolLM2-135M's architecture) trained for real at a short window: full fine-tuning and LoRA stop
and resume bit-identically, the adapter checkpoint is a small part of the full one, and a merged LoRA run loads
with transformers alone."""
from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Callable

import pytest
import torch
from transformers import AutoModelForCausalLM

from azr import AZRTrainer, ModelConfig, build_model, preset, services
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.names import ADAPTER_WEIGHTS
from azr.models.lora import LoraSettings

ITERATIONS, STOP_AT = 2, 1
# A short window and batch keep a step of the 30-layer model near a second on one CPU thread; saves are written at
# once (no staged copy of the 1.3 GB state, no writer process to start).
SETTINGS = dict(batch_size=2, seq_len=16, self_play_every=0, val_every=0, status_every=1, keep_best=False,
                async_save=False)


@pytest.fixture(scope="module")
def config(tokenizer) -> ModelConfig:
    return dataclasses.replace(preset("135m"), vocab_size=len(tokenizer))


@pytest.fixture(scope="module")
def full_run(config, tokenizer, texts, tmp_path_factory) -> AZRTrainer:
    """The 135m preset fully fine-tuned without a stop."""
    trainer = AZRTrainer(build_model(config, seed=0), tokenizer, device="cpu")
    trainer.train_continuous(texts, ITERATIONS, tmp_path_factory.mktemp("full"), **SETTINGS)
    return trainer


def paused_at_stop(make: Callable[[], AZRTrainer], texts, directory) -> Checkpoint:
    """Train a new trainer from ``make()`` and stop it at ``STOP_AT``; return its paused checkpoint (the trainer,
    1.7 GB with its optimizer, goes)."""
    first = make()
    for status in first.train(texts, ITERATIONS, directory, **SETTINGS):
        if status.iteration == STOP_AT and status.state == "running":
            first.stop_training()
    return Checkpoint.open(directory / f"model_paused_{STOP_AT}")


def stopped_and_resumed(make: Callable[[], AZRTrainer], texts, directory) -> tuple[AZRTrainer, Checkpoint]:
    """Stop a run at ``STOP_AT``, resume its paused checkpoint to the end; return the resumed trainer and the
    paused checkpoint."""
    paused = paused_at_stop(make, texts, directory)
    resumed = AZRTrainer.from_checkpoint(paused, device="cpu")
    resumed.train_continuous(texts, ITERATIONS, directory)
    return resumed, paused


def assert_same_run(resumed: AZRTrainer, reference: AZRTrainer) -> None:
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in reference.history]
    expected = reference.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_full_fine_tuning_of_the_135m_preset_stops_and_resumes_bit_identically(full_run, config, tokenizer, texts,
                                                                                tmp_path):
    resumed, paused = stopped_and_resumed(
        lambda: AZRTrainer(build_model(config, seed=0), tokenizer, device="cpu"), texts, tmp_path)
    assert paused.state["model_config"] == config.to_dict()
    assert resumed.model.lm_head.weight is resumed.model.model.embed_tokens.weight
    assert_same_run(resumed, full_run)


def test_lora_on_the_135m_preset_resumes_bit_identically_in_a_small_checkpoint_and_merges(full_run, config, tokenizer,
                                                                                          texts, tmp_path):
    base = tmp_path / "base"
    build_model(config, seed=0).save_pretrained(base)
    tokenizer.save_pretrained(base)

    def lora_trainer() -> AZRTrainer:
        model, lora_tokenizer = services.new_model(None, base_model=str(base), lora=LoraSettings())
        return AZRTrainer(model, lora_tokenizer, device="cpu")

    reference = lora_trainer()
    reference.train_continuous(texts, ITERATIONS, tmp_path / "reference", **SETTINGS)
    resumed, paused = stopped_and_resumed(lora_trainer, texts, tmp_path / "run")
    assert ADAPTER_WEIGHTS in paused.files and "model.safetensors" not in paused.files
    assert_same_run(resumed, reference)

    adapter = tmp_path / "run" / f"model_iter_{ITERATIONS}"
    full = full_run.last_status.checkpoint
    assert size(adapter) <= 0.05 * size(full)

    merge = subprocess.run(["azr", "merge", str(adapter), str(tmp_path / "merged")], capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert merge.returncode == 0, merge.stderr
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    plain = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, resumed.model(ids).logits, atol=1e-5)
        assert not torch.allclose(merged(ids).logits, plain(ids).logits, atol=1e-5)  # the adapter is in it


def size(checkpoint) -> int:
    return sum(path.stat().st_size for path in Checkpoint.open(checkpoint).path.iterdir() if path.is_file())
