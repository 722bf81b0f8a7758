"""The six-component AZR reward ("composite"), computed on token ids against unigram and bigram counts of the
training tokens. Kept as the project's original reward, and not a quality signal: it rewards token variety more
than text, scores greedy bigram chains and memorised training text above new real text, and ignores the prompt
(tests/test_reward_probes.py asserts these failures)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

COMPONENT_WEIGHTS = {
    "diversity": 0.15,
    "coherence": 0.25,
    "repetition": 0.20,
    "length": 0.10,
    "vocabulary": 0.15,
    "naturalness": 0.15,
}
SMOOTHING = 0.1  # add-k smoothing of the bigram model used for coherence

DEFAULT_TARGET_LENGTH = 24  # the length component is full at this many tokens unless told the generation length


@dataclass
class ReferenceStats:
    """Unigram and bigram counts of the training tokens: the reward's view of natural text."""

    vocab_size: int
    unigram_counts: torch.Tensor  # (vocab_size,) int64
    bigram_keys: torch.Tensor  # sorted unique first * vocab_size + second, int64
    bigram_counts: torch.Tensor  # counts aligned with bigram_keys, int64

    @classmethod
    def from_windows(cls, windows: torch.Tensor, vocab_size: int) -> ReferenceStats:
        """Count unigrams and within-window bigrams of a (n, length) tensor of token ids."""
        unigrams = torch.bincount(windows.reshape(-1), minlength=vocab_size)
        pairs = windows[:, :-1] * vocab_size + windows[:, 1:]
        keys, counts = torch.unique(pairs.reshape(-1), return_counts=True)
        return cls(vocab_size, unigrams, keys, counts)

    def bigram_counts_of(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Return how often each (first, second) pair occurs in the reference texts."""
        keys = first * self.vocab_size + second
        position = torch.searchsorted(self.bigram_keys, keys).clamp(max=max(self.bigram_keys.numel() - 1, 0))
        found = self.bigram_keys.numel() > 0
        hit = (self.bigram_keys[position] == keys) if found else torch.zeros_like(keys, dtype=torch.bool)
        return torch.where(hit, self.bigram_counts[position], torch.zeros_like(keys))


def score_tokens(tokens: Sequence[int], stats: ReferenceStats, target_length: int) -> dict[str, float]:
    """Return the six components and their weighted ``total`` (clipped to [0, 1]) for one sequence."""
    ids = torch.as_tensor(list(tokens), dtype=torch.long).clamp(0, stats.vocab_size - 1)
    n = ids.numel()
    if n == 0:
        return {**{name: 0.0 for name in COMPONENT_WEIGHTS}, "total": 0.0}
    unique = torch.unique(ids)
    components = {
        "diversity": unique.numel() / n,
        "coherence": _coherence(ids, stats),
        "repetition": _repetition(ids.tolist()),
        "length": min(1.0, n / max(1, target_length)),
        "vocabulary": _normalised_entropy(ids),
        "naturalness": _naturalness(ids, stats),
    }
    total = sum(COMPONENT_WEIGHTS[name] * value for name, value in components.items())
    components["total"] = min(1.0, max(0.0, total))
    return components


def _coherence(ids: torch.Tensor, stats: ReferenceStats) -> float:
    """Mean bigram log-probability, mapped so that uniform guessing is 0 and certainty is 1."""
    if ids.numel() < 2:
        return 0.0
    first, second = ids[:-1], ids[1:]
    pair = stats.bigram_counts_of(first, second).double()
    context = stats.unigram_counts[first].double()
    log_prob = torch.log((pair + SMOOTHING) / (context + SMOOTHING * stats.vocab_size))
    return float(min(1.0, max(0.0, 1.0 + log_prob.mean().item() / math.log(stats.vocab_size))))


def _repetition(ids: list[int]) -> float:
    """Mean ratio of unique to total 1-, 2- and 3-grams: 1 means nothing repeats."""
    ratios = []
    for n in (1, 2, 3):
        grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
        if grams:
            ratios.append(len(set(grams)) / len(grams))
    return sum(ratios) / len(ratios)


def _normalised_entropy(ids: torch.Tensor) -> float:
    """Entropy of the token distribution over its maximum: how evenly the vocabulary is used."""
    if ids.numel() < 2:
        return 0.0
    _, counts = torch.unique(ids, return_counts=True)
    p = counts.double() / ids.numel()
    return float(-(p * p.log()).sum().item() / math.log(ids.numel()))


def _naturalness(ids: torch.Tensor, stats: ReferenceStats) -> float:
    """Share of the sequence's bigrams that occur in the reference texts."""
    if ids.numel() < 2:
        return 0.0
    return float((stats.bigram_counts_of(ids[:-1], ids[1:]) > 0).double().mean().item())


class CompositeReward:
    """The six-component reward as a reward function: ``Cls(tokenizer, corpus_ids)``, then called with
    ``(prompts, completions, completion_ids=..., max_new_tokens=...)``; it ignores the prompts. Not a quality
    signal (see the module's docstring)."""

    def __init__(self, tokenizer, corpus_ids: torch.Tensor) -> None:
        self.tokenizer = tokenizer
        self.stats = ReferenceStats.from_windows(corpus_ids.reshape(1, -1), max(len(tokenizer),
                                                                                 int(corpus_ids.max()) + 1))

    def __call__(self, prompts: list[str], completions: list[str], completion_ids: list[list[int]] | None = None,
                 max_new_tokens: int = DEFAULT_TARGET_LENGTH) -> list[float]:
        if completion_ids is None:
            completion_ids = [self.tokenizer.encode(text, add_special_tokens=False) for text in completions]
        return [score_tokens(ids, self.stats, max_new_tokens)["total"] for ids in completion_ids]
