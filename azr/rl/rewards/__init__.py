"""Reward functions for self-play: the built-ins by name, user functions by import path, and their weighted list.

Built-ins that need the training corpus are classes built as ``Cls(tokenizer, corpus_ids, **options)``, where
``corpus_ids`` is a 1-D LongTensor of the training split's tokens (of a large corpus, a sample). See
:mod:`azr.rl.rewards.combined` for the contract of a reward function and :mod:`azr.config.rewards` for the text
that names a run's functions. The functions' modules (and torch) are imported on first use, so that checking a
setting (``azr --help``, TrainConfig) stays light.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from azr.config.rewards import BUILTIN_NAMES, RewardSpec, parse_rewards
from azr.rl.rewards.building import build
from azr.utils import lazy

if TYPE_CHECKING:
    import torch

    from azr.rl.rewards.combined import RewardSet

_LAZY = {  # name -> the module that defines it
    "CompositeReward": "composite", "ReferenceStats": "composite", "score_tokens": "composite",
    "EndsSentence": "verifiable", "Contains": "verifiable", "Avoids": "verifiable", "NgramReward": "ngram",
    "ChrfReward": "reference",
    "RewardFn": "combined", "RewardSet": "combined",
}


def builtins() -> dict[str, type]:
    """Return the built-in reward classes by name (importing their modules)."""
    classes = ("CompositeReward", "EndsSentence", "Contains", "Avoids", "NgramReward", "ChrfReward")
    return {name: __getattr__(cls) for name, cls in zip(BUILTIN_NAMES, classes)}


def build_rewards(text: str, tokenizer, corpus_ids: torch.Tensor) -> RewardSet:
    """Return the weighted reward functions named by ``text`` (imports and builds them; raises ConfigError)."""
    specs = parse_rewards(text)
    labels = [spec.target for spec in specs]
    labels = [label if labels.count(label) == 1 else f"{label}#{labels[:i].count(label) + 1}"
              for i, label in enumerate(labels)]
    classes = builtins()
    return __getattr__("RewardSet")([(label, build(spec, classes, tokenizer, corpus_ids), spec.weight)
                                     for label, spec in zip(labels, specs)])


__getattr__ = lazy.attributes(__name__, _LAZY, globals())

__all__ = ["BUILTIN_NAMES", "RewardSpec", "build_rewards", "builtins", "parse_rewards", *_LAZY]
