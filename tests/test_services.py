"""The shared services: a new model for a run, sampling from a checkpoint, and the LR preview of a resume."""
from __future__ import annotations

import pytest
import torch
from conftest import FAST

from azr import AZRTrainer, CheckpointError, ConfigError, ModelConfig, build_model
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.writing import copy_checkpoint
from azr.services import lr_preview, new_model, sample_text

SIZE = dict(d_model=32, num_layers=1, num_heads=2, d_ff=64, max_seq_len=32)


@pytest.fixture(scope="module")
def run(tmp_path_factory, texts, tokenizer, model_config):
    """A 10-iteration run with warmup: its run directory (holding model_iter_10) and its history."""
    directory = tmp_path_factory.mktemp("services") / "run"
    trainer = AZRTrainer(build_model(model_config, seed=0), tokenizer, device="cpu")
    history = trainer.train_continuous(texts, 10, directory, **{**FAST, "warmup": 4})
    return directory, history


def test_new_model_builds_the_configured_size_with_the_tokenizer_vocabulary(texts):
    model, tokenizer = new_model(texts, ModelConfig(vocab_size=300, **SIZE), seed=3)
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.max_position_embeddings) == (32, 1, 32)
    assert config.vocab_size == len(tokenizer) <= 300
    again, _ = new_model(texts, ModelConfig(vocab_size=300, **SIZE), seed=3)
    for (name, value), (_, other) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(value, other), name
    with pytest.raises(ConfigError, match="not both"):
        new_model(texts, ModelConfig(**SIZE), base_model="gpt2")


def test_sample_text_is_reproducible_with_a_seed_and_leaves_the_global_rng_alone(run):
    checkpoint = Checkpoint.open(run[0] / "model_iter_10")
    state = torch.get_rng_state()
    first = sample_text(checkpoint, "ROMEO:", temperature=1.0, top_k=20, max_new_tokens=12, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert first.startswith("ROMEO:") and len(first) > len("ROMEO:")
    assert sample_text(checkpoint, "ROMEO:", temperature=1.0, top_k=20, max_new_tokens=12, seed=7) == first
    others = {sample_text(checkpoint, "ROMEO:", temperature=1.0, top_k=20, max_new_tokens=12, seed=s)
              for s in range(4)}
    assert len(others) > 1


def test_a_prompt_longer_than_the_model_keeps_its_end(run):
    checkpoint = Checkpoint.open(run[0] / "model_iter_10")
    prompt = "To be, or not to be, that is the question. " * 20  # far more than 32 tokens
    text = sample_text(checkpoint, prompt, temperature=1.0, top_k=0, max_new_tokens=100, seed=1)
    assert text.startswith(prompt) and len(text) > len(prompt)
    assert sample_text(checkpoint, "", temperature=0.5, top_k=5, max_new_tokens=3, seed=1) is not None


@pytest.mark.parametrize("settings, message", [
    (dict(temperature=0), "temperature must be a positive number"),
    (dict(temperature=float("nan")), "temperature must be a positive number"),
    (dict(top_k=-1), "top_k must be zero"),
    (dict(max_new_tokens=0), "max_new_tokens must be a positive integer"),
    (dict(max_new_tokens=2.5), "max_new_tokens must be a positive integer"),
])
def test_bad_sampling_settings_get_one_sentence(run, settings, message):
    checkpoint = Checkpoint.open(run[0] / "model_iter_10")
    with pytest.raises(ConfigError, match=message):
        sample_text(checkpoint, "x", **{"temperature": 1.0, "top_k": 5, "max_new_tokens": 5, **settings})


def test_sample_text_refuses_a_damaged_checkpoint(run, tmp_path):
    copy = copy_checkpoint(Checkpoint.open(run[0] / "model_iter_10"), tmp_path / "copy")
    checkpoint = Checkpoint.open(copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch in model.safetensors"):
        sample_text(checkpoint, "ROMEO:", temperature=1.0, top_k=5, max_new_tokens=5, seed=0)


@pytest.mark.parametrize("target, lr, extend", [(30, 1e-3, None), (25, None, None), (25, None, "final_lr"),
                                                (10, None, None)])
def test_lr_preview_is_the_lr_the_resumed_trainer_uses(run, texts, tmp_path, target, lr, extend):
    directory, history = run
    checkpoint = Checkpoint.open(directory / "model_iter_10")
    preview = lr_preview(checkpoint, target, lr, extend)
    trained = [r for r in preview if r["part"] == "trained"]
    planned = [r for r in preview if r["part"] == "planned"]
    assert [(r["iteration"], r["lr"]) for r in trained] == [(r["iteration"], r["lr"]) for r in history]
    assert [r["iteration"] for r in planned] == list(range(11, target + 1))

    resumed = AZRTrainer.from_checkpoint(checkpoint.path, device="cpu")
    used = resumed.train_continuous(texts, target, tmp_path / "continued", lr=lr, extend_schedule=extend)
    assert {r["iteration"]: r["lr"] for r in used[10:]} == {r["iteration"]: r["lr"] for r in planned}


def test_lr_preview_shows_each_extension_choice(run):
    """The finished run re-warms by default and stays at its final LR with "final_lr"."""
    checkpoint = Checkpoint.open(run[0] / "model_iter_10")
    final = checkpoint.plan().final_lr
    rewarm = [r["lr"] for r in lr_preview(checkpoint, 40) if r["part"] == "planned"]
    stay = [r["lr"] for r in lr_preview(checkpoint, 40, extend_schedule="final_lr") if r["part"] == "planned"]
    assert stay == pytest.approx([final] * 30) and max(rewarm) > 2 * final
    assert rewarm[0] == pytest.approx(final)


def test_lr_preview_of_a_wsd_extension_starts_where_the_decay_began(texts, tokenizer, model_config, tmp_path):
    trainer = AZRTrainer(build_model(model_config, seed=0), tokenizer, device="cpu")
    trainer.train_continuous(texts, 20, tmp_path / "run", **{**FAST, "warmup": 4, "lr_schedule": "wsd"})
    checkpoint = Checkpoint.open(tmp_path / "run" / "model_iter_20")
    preview = lr_preview(checkpoint, 40)
    assert [r["iteration"] for r in preview if r["part"] == "trained"] == list(range(1, 17))  # up to the decay
    planned = [r for r in preview if r["part"] == "planned"]
    assert [r["iteration"] for r in planned] == list(range(17, 41))
    resumed = AZRTrainer.from_checkpoint(checkpoint.path, device="cpu")
    used = resumed.train_continuous(None, 40, tmp_path / "run")
    assert [(r["iteration"], r["lr"]) for r in used[16:]] == [(r["iteration"], r["lr"]) for r in planned]


def test_lr_preview_thins_long_parts_and_refuses_a_target_below_the_checkpoint(run):
    checkpoint = Checkpoint.open(run[0] / "model_iter_10")
    planned = [r for r in lr_preview(checkpoint, 100_000) if r["part"] == "planned"]
    assert 150 <= len(planned) <= 201
    assert (planned[0]["iteration"], planned[-1]["iteration"]) == (11, 100_000)
    with pytest.raises(ConfigError, match="below the checkpoint's iteration"):
        lr_preview(checkpoint, 5)
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        lr_preview(checkpoint, 20, -1.0)


@pytest.mark.parametrize("paused_at", [20, 60])
def test_a_resume_to_a_target_its_warmup_does_not_fit_decays_by_the_end_as_its_preview_shows(
        texts, tokenizer, model_config, tmp_path, paused_at):
    """A run planned for 2000 iterations (warmup 150) paused during its warmup and resumed to 100: the LR ends at
    the final LR at 100 of 100 instead of still warming up, without a jump, as the preview shows beforehand."""
    trainer = AZRTrainer(build_model(model_config, seed=0), tokenizer, device="cpu")
    for status in trainer.train(texts, 2000, tmp_path / "run", **{**FAST, "lr": 1e-3, "warmup": 150}):
        if status.iteration == paused_at and status.state == "running":
            trainer.stop_training()
    checkpoint = Checkpoint.open(tmp_path / "run" / f"model_paused_{paused_at}")
    planned = [r for r in lr_preview(checkpoint, 100) if r["part"] == "planned"]
    resumed = AZRTrainer.from_checkpoint(checkpoint.path, device="cpu")
    used = resumed.train_continuous(None, 100, tmp_path / "run")
    assert [(r["iteration"], r["lr"]) for r in used[paused_at:]] == [(r["iteration"], r["lr"]) for r in planned]
    lrs = [r["lr"] for r in used]
    assert lrs[-1] == pytest.approx(checkpoint.plan().final_lr, rel=0.05)  # decayed, not at a warmup's peak
    assert max(abs(b - a) for a, b in zip(lrs, lrs[1:])) < 0.1 * max(lrs)  # no jump where the plan changed
    assert Checkpoint.open(tmp_path / "run" / "model_iter_100").plan().lr_at(99) == pytest.approx(lrs[-1])
