"""Model shapes beyond the small presets: grouped-query attention and tied embeddings, as in the 135m preset
(SmolLM2-135M's architecture, built at random)."""
from __future__ import annotations

import torch
from conftest import FAST

from azr import AZRTrainer, ModelConfig, build_model, preset
from azr.checkpoints.checkpoint import Checkpoint
from azr.models.causal_lm import model_config_of


def test_the_135m_preset_is_smollm2_135m_s_architecture():
    model = build_model(preset("135m"))
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # SmolLM2-135M's count, vocabulary 49,152
    assert model.config.num_key_value_heads == 3 and model.config.num_attention_heads == 9
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model_config_of(model) == preset("135m")


def test_a_grouped_query_model_with_tied_embeddings_stops_and_resumes_bit_identically(texts, tokenizer, tmp_path):
    config = ModelConfig(vocab_size=len(tokenizer), d_model=32, num_layers=1, num_heads=4, num_kv_heads=2, d_ff=64,
                         max_seq_len=32, tie_embeddings=True)
    settings = {**FAST, "self_play_every": 0}
    whole = AZRTrainer(build_model(config, seed=0), tokenizer, device="cpu")
    for _ in whole.train(texts, 10, tmp_path / "whole", **settings):
        pass
    first = AZRTrainer(build_model(config, seed=0), tokenizer, device="cpu",
                       status_callback=lambda s: s.iteration == 5 and first.stop_training())
    statuses = list(first.train(texts, 10, tmp_path / "split", **settings))
    paused = Checkpoint.open(statuses[-1].checkpoint)
    assert paused.iteration == 5 and paused.state["model_config"] == config.to_dict()
    second = AZRTrainer.from_checkpoint(paused.path, device="cpu")  # the shape comes from the checkpoint alone
    for _ in second.train(max_iterations=10, checkpoint_dir=tmp_path / "split"):
        pass
    assert second.model.lm_head.weight is second.model.model.embed_tokens.weight
    assert [r["loss"] for r in second.history] == [r["loss"] for r in whole.history]
    for name, value in whole.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], value), name
