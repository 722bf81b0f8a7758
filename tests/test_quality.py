"""Validation-time text measures: seq-rep-4 and distinct-2 of greedy continuations, in the history and status."""
from __future__ import annotations

import math

import numpy as np
import torch
from conftest import FAST
from safetensors.numpy import save
from transformers import GenerationConfig

from azr import AZRTrainer
from azr.checkpoints.history import History
from azr.training.quality import distinct, greedy_measures, seq_rep


def test_seq_rep_and_distinct_by_hand():
    assert seq_rep([1, 2, 3, 4, 1, 2, 3, 4]) == 1 - 4 / 5  # 5 four-grams, 4 unique
    assert seq_rep([7] * 10) == 1 - 1 / 7
    assert seq_rep([1, 2, 3]) == 0.0
    assert distinct([[1, 2, 1, 2], [2, 1]]) == 2 / 4  # (1,2) (2,1) (1,2) (2,1)


def test_validation_records_greedy_measures_in_history_and_status(texts, tokenizer, make_model, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = list(trainer.train(texts, 20, tmp_path, **{**FAST, "val_every": 10, "self_play_every": 0}))
    measured = [r for r in trainer.history if r.get("seq_rep_4") is not None]
    assert [r["iteration"] for r in measured] == [10, 20]
    assert all(0.0 <= r["seq_rep_4"] <= 1.0 and 0.0 < r["distinct_2"] <= 1.0 for r in measured)
    assert statuses[-1].quality == {"seq_rep_4": measured[-1]["seq_rep_4"], "distinct_2": measured[-1]["distinct_2"]}


def test_a_history_without_the_new_columns_still_loads():
    old = {name: np.arange(3, dtype=np.float64) for name in ("iteration", "loss", "val_loss", "reward", "lr", "time")}
    history = History()
    history.extend_encoded(save(old))
    assert len(history) == 3 and history[2]["loss"] == 2.0
    assert history[2].get("seq_rep_4") is None or math.isnan(history[2]["seq_rep_4"])


def test_greedy_measures_ignore_the_models_own_generation_settings(make_model):
    """A base model's repetition penalty or n-gram ban would flatter seq-rep-4: the measure uses plain greedy."""
    windows = torch.randint(3, 300, (8, 32), generator=torch.Generator().manual_seed(0))
    plain, configured = make_model(seed=2), make_model(seed=2)
    configured.generation_config = GenerationConfig(repetition_penalty=3.0, no_repeat_ngram_size=2)
    assert greedy_measures(configured, windows, eos_token_id=1) == greedy_measures(plain, windows, eos_token_id=1)
