"""Reward functions for self-play: the built-ins by name, user functions by import path, and their weighted list.

Built-ins that need the training corpus are classes built as ``Cls(tokenizer, corpus_ids, **options)``, where
``corpus_ids`` is a 1-D LongTensor of the training split's tokens. See :mod:`azr.rewards.combined` for the contract
of a reward function and :mod:`azr.rewards.spec` for the text that names a run's functions.
"""
from __future__ import annotations

import torch

from .combined import RewardFn, RewardSet
from .composite import CompositeReward, ReferenceStats, score_tokens
from .ngram import NgramReward
from .spec import RewardSpec, build, parse
from .verifiable import Avoids, Contains, EndsSentence

BUILTINS: dict[str, type] = {
    "composite": CompositeReward,
    "ends_sentence": EndsSentence,
    "contains": Contains,
    "avoids": Avoids,
    "ngram": NgramReward,
}


def parse_rewards(text: str) -> list[RewardSpec]:
    """Return the reward functions named by ``text``; raises ConfigError for bad syntax or an unknown name."""
    return parse(text, tuple(BUILTINS))


def build_rewards(text: str, tokenizer, corpus_ids: torch.Tensor) -> RewardSet:
    """Return the weighted reward functions named by ``text`` (imports and builds them; raises ConfigError)."""
    specs = parse_rewards(text)
    labels = [spec.target for spec in specs]
    labels = [label if labels.count(label) == 1 else f"{label}#{labels[:i].count(label) + 1}"
              for i, label in enumerate(labels)]
    return RewardSet([(label, build(spec, BUILTINS, tokenizer, corpus_ids), spec.weight)
                      for label, spec in zip(labels, specs)])


__all__ = ["BUILTINS", "Avoids", "CompositeReward", "Contains", "EndsSentence", "NgramReward", "ReferenceStats",
           "RewardFn", "RewardSet", "RewardSpec", "build_rewards", "parse_rewards", "score_tokens"]
