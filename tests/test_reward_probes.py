"""The reward probe suite: for every built-in reward meant as a quality signal, on two corpora (the embedded tiny
Shakespeare and license texts, tests/fixtures/licenses), held-out real continuations must score above each way of
gaming it, compared as means over many held-out prompts. A reward that fails a probe says so in its docstring and
in docs/self-play.md, and the failure is asserted here, so that it cannot go unnoticed nor be fixed silently."""
from __future__ import annotations

import random
from collections import Counter
from functools import cached_property
from pathlib import Path

import pytest
import torch

from azr import TrainConfig, default_corpus, train_tokenizer
from azr.rl.rewards import build_rewards

PROMPT, LENGTH, SAMPLES, VOCAB = 16, 24, 60, 512
LICENSES = Path(__file__).parent / "fixtures" / "licenses" / "licenses.txt"
BOTH = ("shakespeare", "licenses")
# The probes each quality reward fails, per corpus: asserted, so that a change in them cannot go unnoticed. composite
# prefers greedy chains and memorised text to real text and ignores the prompt (a tie): it is not a quality signal
# (its docstring and docs/self-play.md say so). ngram's counts were taken on the training text, so memorised text
# scores above new text: a text-likeness signal, not a grounded one. chrf fails none.
KNOWN_FAILURES = {
    "composite": {"shakespeare": {"greedy chain", "memorised", "rare salad", "prompt-ignoring"},
                  "licenses": {"greedy chain", "memorised", "prompt-ignoring"}},
    "ngram": {corpus: {"memorised"} for corpus in BOTH},
    "chrf": {corpus: set() for corpus in BOTH},
}


def corpus(name: str) -> tuple[str, str]:
    """The training text and the held-out text of a probe corpus."""
    text = default_corpus()[0] if name == "shakespeare" else LICENSES.read_text(encoding="utf-8")
    return text[:150_000], text[-30_000:]


class Probes:
    """Held-out prompts, their real continuations, and per probe one continuation of each prompt."""

    def __init__(self, name: str) -> None:
        self.name = name
        train_text, held_text = corpus(name)
        self.tokenizer = tokenizer = train_tokenizer([train_text], VOCAB)
        self.train_ids = torch.tensor(tokenizer.encode(train_text))
        held = tokenizer.encode(held_text)
        step = (len(held) - PROMPT - LENGTH) // SAMPLES
        starts = [i * step for i in range(SAMPLES)]
        self.prompts = [held[s:s + PROMPT] for s in starts]
        self.real = [held[s + PROMPT:s + PROMPT + LENGTH] for s in starts]
        words = Counter(train_text.split())
        ranked = [w for w, _ in words.most_common()]
        self.frequent, self.rare = ranked[:100], [w for w in ranked if words[w] <= 2 and w.isalpha()]

    def encode_words(self, words: list[str]) -> list[int]:
        return self.tokenizer.encode(" " + " ".join(words))[:LENGTH]

    def greedy_chains(self) -> list[list[int]]:
        """From each prompt's last token, the most frequent next token each time, never one already used."""
        vocab = len(self.tokenizer)
        pairs, counts = torch.unique(self.train_ids[:-1] * vocab + self.train_ids[1:], return_counts=True)
        followers: dict[int, list[int]] = {}
        for pair in pairs[counts.argsort(descending=True, stable=True)].tolist():
            followers.setdefault(pair // vocab, []).append(pair % vocab)
        top = torch.bincount(self.train_ids, minlength=vocab).argsort(descending=True).tolist()
        chains = []
        for prompt in self.prompts:
            token, chain, used = prompt[-1], [], {prompt[-1]}
            for _ in range(LENGTH):
                token = next(t for t in followers.get(token, []) + top if t not in used)
                chain.append(token)
                used.add(token)
            chains.append(chain)
        return chains

    @cached_property
    def sets(self) -> dict[str, list[list[int]]]:
        rng, train = random.Random(0), self.train_ids.tolist()
        decode = self.tokenizer.decode
        spam = self.tokenizer.encode(" ." * LENGTH)[:LENGTH]
        return {
            "held-out": self.real,
            "greedy chain": self.greedy_chains(),
            "memorised": [train[s:s + LENGTH] for s in rng.sample(range(len(train) - LENGTH), SAMPLES)],
            "frequent salad": [self.encode_words(rng.choices(self.frequent, k=LENGTH)) for _ in self.real],
            "rare salad": [self.encode_words(rng.choices(self.rare, k=LENGTH)) for _ in self.real],
            "shuffled": [self.encode_words(rng.sample(w, len(w))) for w in (decode(c).split() for c in self.real)],
            "random tokens": [[rng.randrange(3, len(self.tokenizer)) for _ in range(LENGTH)] for _ in self.real],
            "repeated 4-gram": [(c[:4] * LENGTH)[:LENGTH] for c in self.real],
            "dot spam": [spam for _ in self.real],
            "empty": [[] for _ in self.real],
            "very short": [c[:2] for c in self.real],
            "prompt-ignoring": self.real[1:] + self.real[:1],
        }

    def means(self, reward: str) -> dict[str, float]:
        """Mean reward of each probe set, scored as self-play scores (references: the real continuations)."""
        rewards = build_rewards(reward, self.tokenizer, self.train_ids)
        decode = self.tokenizer.batch_decode
        prompts, references = decode(self.prompts), decode(self.real)
        means = {}
        for name, completions in self.sets.items():
            totals, _ = rewards.score(prompts, decode(completions), prompt_ids=self.prompts,
                                      completion_ids=completions, max_new_tokens=LENGTH, references=references,
                                      reference_ids=self.real)
            means[name] = float(totals.mean())
        return means


@pytest.fixture(scope="module", params=BOTH)
def probes(request) -> Probes:
    return Probes(request.param)


def test_the_default_reward_is_among_the_rewards_that_must_pass_every_probe():
    """The reward a run gets when it names none is checked by the probe test below and may fail no probe."""
    default = TrainConfig().rewards
    assert default in KNOWN_FAILURES and KNOWN_FAILURES[default] == {corpus: set() for corpus in BOTH}


@pytest.mark.parametrize("reward", sorted(KNOWN_FAILURES))
def test_held_out_text_scores_above_every_gaming_probe(probes, reward):
    means = probes.means(reward)
    print(reward, {k: round(v, 3) for k, v in means.items()})
    beaten = {name for name, mean in means.items() if name != "held-out" and mean >= means["held-out"]}
    assert beaten == KNOWN_FAILURES[reward][probes.name], means


def test_ends_sentence_is_not_won_by_marks_after_the_prompt(probes):
    """The gamed case of the verifiable reward: "." spam, or a mark right after the prompt ("there is a?", "she
    were? I be."), scores 0, below the real continuations."""
    sets = probes.sets
    gamed = {"dot spam": sets["dot spam"], "mark after the prompt": [probes.tokenizer.encode("? I be.")] * SAMPLES}
    rewards = build_rewards("ends_sentence(within=8)", probes.tokenizer, probes.train_ids)

    def mean(completions):
        return float(rewards.score([""] * SAMPLES, probes.tokenizer.batch_decode(completions),
                                   completion_ids=completions)[0].mean())

    real = mean(sets["held-out"])
    assert real > 0.02 and all(mean(completions) == 0.0 for completions in gamed.values()), real
