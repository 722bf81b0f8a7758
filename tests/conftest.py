"""Shared fixtures: a small corpus, a tokenizer trained on it once, and tiny models built from it."""
from __future__ import annotations

import os

import pytest
import torch

from azr import ModelConfig, build_model, default_corpus, train_tokenizer

TINY_VOCAB = 300

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers share the two cores: one thread each, no oversubscription
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def texts() -> list[str]:
    """About 60 kB of the default corpus, cut into a few texts."""
    corpus = default_corpus()[0][:60_000]
    return [corpus[i : i + 20_000] for i in range(0, len(corpus), 20_000)]


@pytest.fixture(scope="session")
def tokenizer(texts):
    return train_tokenizer(texts, TINY_VOCAB)


@pytest.fixture(scope="session")
def model_config(tokenizer) -> ModelConfig:
    return ModelConfig(vocab_size=len(tokenizer), d_model=32, num_layers=1, num_heads=2, d_ff=64, max_seq_len=32)


@pytest.fixture
def make_model(model_config):
    """Build a tiny model with fixed initial weights (the same for every call with the same seed)."""
    def make(seed: int = 0, **overrides):
        config = model_config if not overrides else type(model_config)(**{**model_config.to_dict(), **overrides})
        return build_model(config, seed=seed)
    return make


def temporaries(directory) -> list[str]:
    """The half-written, deleted or staged leftovers in ``directory`` (not the run's lock file)."""
    from azr.checkpoints import storage

    prefixes = (storage.TEMP_PREFIX, storage.TRASH_PREFIX, storage.STAGING_PREFIX)
    return [p.name for p in directory.iterdir() if p.name.startswith(prefixes)]


# Settings that make a run fast and exercise every part of the loop (self-play, validation, saving).
FAST = dict(batch_size=4, save_every=10, status_every=5, self_play_every=3, val_every=10, keep_last=3, keep_best=False)


from conftest_hub import hub_env, hub_server  # noqa: E402,F401  (the local Hub-compatible server)
