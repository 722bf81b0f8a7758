"""Starting from an existing pretrained causal LM (another architecture, its own tokenizer)."""
from __future__ import annotations

import pytest
import torch
from conftest import FAST
from transformers import GPT2Config, GPT2LMHeadModel

from azr import AZRTrainer, ConfigError, load_pretrained


@pytest.fixture
def gpt2_dir(tokenizer, tmp_path):
    """A tiny GPT-2 (tied embeddings) saved with its tokenizer, as a downloaded base model would be."""
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=0, eos_token_id=1, pad_token_id=2)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def test_a_pretrained_model_trains_and_resumes_exactly(gpt2_dir, texts, tmp_path):
    model, tokenizer = load_pretrained(str(gpt2_dir))
    reference = AZRTrainer(model, tokenizer, device="cpu")
    reference.train_continuous(texts, 20, tmp_path / "reference", **FAST)

    model, tokenizer = load_pretrained(str(gpt2_dir))
    first = AZRTrainer(model, tokenizer, device="cpu")
    for status in first.train(texts, 20, tmp_path / "run", **FAST):
        if status.iteration == 10 and status.state == "running":
            first.stop_training()
    resumed = AZRTrainer.from_checkpoint(tmp_path / "run" / "model_paused_10", device="cpu")
    assert isinstance(resumed.model, GPT2LMHeadModel)
    resumed.train_continuous(texts, 20, tmp_path / "run", **FAST)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in reference.history]
    for name, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name


def test_a_missing_base_model_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="Cannot load base model"):
        load_pretrained(str(tmp_path / "nowhere"))


def test_loading_a_base_model_or_a_checkpoint_prints_nothing(gpt2_dir, texts, tmp_path, capfd):
    """The library never prints: transformers' "Loading weights" bar is off while it loads a model."""
    model, tokenizer = load_pretrained(str(gpt2_dir))
    AZRTrainer(model, tokenizer, device="cpu").train_continuous(texts, 2, tmp_path / "run", **dict(FAST, save_every=2))
    capfd.readouterr()
    load_pretrained(str(gpt2_dir))
    AZRTrainer.from_checkpoint(tmp_path / "run" / "model_iter_2", device="cpu")
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == ""
