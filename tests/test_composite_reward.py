"""The six-component ("composite") reward: reference counts, component ranges, the weighted total and its ordering."""
from __future__ import annotations

import pytest
import torch

from azr import ReferenceStats, score_tokens
from azr.data.corpus import TokenWindows

WEIGHTS = {"diversity": 0.15, "coherence": 0.25, "repetition": 0.20, "length": 0.10, "vocabulary": 0.15,
           "naturalness": 0.15}
TARGET = 32


@pytest.fixture(scope="module")
def windows(texts, tokenizer) -> torch.Tensor:
    return TokenWindows.from_texts(texts, tokenizer, TARGET).train[:]


@pytest.fixture(scope="module")
def stats(windows, tokenizer) -> ReferenceStats:
    return ReferenceStats.from_windows(windows, len(tokenizer))


@pytest.fixture(scope="module")
def sequences(windows, stats) -> dict[str, list[int]]:
    """A natural sequence from the corpus, a random one, and the commonest token repeated 20 times."""
    generator = torch.Generator().manual_seed(0)
    return {
        "natural": windows[0].tolist(),
        "random": torch.randint(3, stats.vocab_size, (TARGET,), generator=generator).tolist(),
        "repetitive": [int(stats.unigram_counts.argmax())] * 20,
        "single": [windows[0, 0].item()],
    }


def test_from_windows_counts_unigrams_and_within_window_bigrams():
    stats = ReferenceStats.from_windows(torch.tensor([[0, 1, 2], [1, 2, 2]]), vocab_size=4)
    assert stats.unigram_counts.tolist() == [1, 2, 3, 0]
    first, second = torch.tensor([0, 1, 2, 2, 3]), torch.tensor([1, 2, 2, 1, 0])
    assert stats.bigram_counts_of(first, second).tolist() == [1, 2, 1, 0, 0]  # (2, 1) spans two windows


@pytest.mark.parametrize("name", ["natural", "random", "repetitive", "single"])
def test_components_in_range_and_total_is_weighted_sum(sequences, stats, name):
    scores = score_tokens(sequences[name], stats, TARGET)
    assert set(scores) == {*WEIGHTS, "total"}
    assert all(0.0 <= value <= 1.0 for value in scores.values())
    weighted = sum(weight * scores[component] for component, weight in WEIGHTS.items())
    assert scores["total"] == pytest.approx(min(1.0, max(0.0, weighted)))


def test_repetition_scores_below_natural_text(sequences, stats):
    natural = score_tokens(sequences["natural"], stats, TARGET)
    repetitive = score_tokens(sequences["repetitive"], stats, TARGET)
    for component in ("diversity", "repetition", "total"):
        assert repetitive[component] < natural[component], component


def test_corpus_text_is_more_coherent_and_natural_than_random_ids(sequences, stats):
    natural = score_tokens(sequences["natural"], stats, TARGET)
    random = score_tokens(sequences["random"], stats, TARGET)
    for component in ("coherence", "naturalness"):
        assert natural[component] > random[component], component


def test_empty_sequence_scores_zero(stats):
    assert score_tokens([], stats, TARGET) == {**dict.fromkeys(WEIGHTS, 0.0), "total": 0.0}
