"""The n-gram reward's probe: on two corpora, held-out real text scores above shuffled text, word salads of
frequent tokens and of rare words, greedy no-repeat bigram chains, random tokens and a repeated token; random tokens
score below 0 (not clamped: a group of bad samples still has a best one). The full probe suite, against every
quality reward, is tests/test_reward_probes.py."""
from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from azr import default_corpus, train_tokenizer
from azr.rl.rewards.ngram import NgramReward

LENGTH, PROMPT, SAMPLES = 24, 8, 30
DEGENERATE = ("shuffled", "salad", "rare salad", "greedy", "random", "repeated")


def grammar_text(seed: int, sentences: int) -> str:
    """English-like sentences from a small grammar: a corpus unlike the embedded one."""
    pick = random.Random(seed).choice
    nouns = ["farmer", "river", "machine", "teacher", "garden", "city", "engine", "storm", "market", "child"]
    verbs = ["repairs", "crosses", "watches", "builds", "follows", "paints", "carries", "finds"]
    adjectives = ["old", "quiet", "bright", "heavy", "small", "green", "distant", "broken"]
    endings = [".", ".", "!", " today.", " again."]
    lines = []
    for _ in range(sentences):
        subject = f"the {pick(adjectives)} {pick(nouns)}"
        lines.append(f"{subject.capitalize()} {pick(verbs)} a {pick(adjectives)} {pick(nouns)}{pick(endings)}")
    return "\n".join(lines)


def probe_sets(train_ids: torch.Tensor, held_ids: list[int], tokenizer) -> tuple[list[list[int]], dict]:
    """Prompts from held-out text, and per probe kind one continuation per prompt."""
    generator, vocab = torch.Generator().manual_seed(0), len(tokenizer)
    words = Counter(tokenizer.decode(train_ids.tolist()).split())
    rare = sorted((word for word in words if word.isalpha()), key=words.get)[:100]  # the rarest words
    step = (len(held_ids) - PROMPT - LENGTH) // SAMPLES
    starts = [i * step for i in range(SAMPLES)]
    prompts = [held_ids[s:s + PROMPT] for s in starts]
    held = [held_ids[s + PROMPT:s + PROMPT + LENGTH] for s in starts]
    top = torch.bincount(train_ids, minlength=vocab).argsort(descending=True)
    followers: dict[int, list[int]] = {}
    pairs, counts = torch.unique(train_ids[:-1] * vocab + train_ids[1:], return_counts=True)
    for pair in pairs[counts.argsort(descending=True)].tolist():
        followers.setdefault(pair // vocab, []).append(pair % vocab)

    def greedy_chain(token: int) -> list[int]:
        chain, used = [], {token}
        for _ in range(LENGTH):
            token = next((t for t in followers.get(token, []) + top.tolist() if t not in used))
            chain.append(token)
            used.add(token)
        return chain

    return prompts, {
        "held-out": held,
        "shuffled": [[c[j] for j in torch.randperm(LENGTH, generator=generator).tolist()] for c in held],
        "salad": [top[:LENGTH][torch.randperm(LENGTH, generator=generator)].tolist() for _ in held],
        "rare salad": [tokenizer.encode(" " + " ".join(random.Random(i).choices(rare, k=LENGTH)))[:LENGTH]
                       for i in range(SAMPLES)],
        "greedy": [greedy_chain(p[-1]) for p in prompts],
        "random": [torch.randint(3, vocab, (LENGTH,), generator=generator).tolist() for _ in held],
        "repeated": [[int(top[i % 3])] * LENGTH for i in range(SAMPLES)],
    }


def embedded():
    corpus = default_corpus()[0]
    return corpus[:60_000], corpus[200_000:215_000], 300


def written():
    return grammar_text(1, 3000), grammar_text(2, 300), 300


@pytest.mark.parametrize("make_corpus", [embedded, written], ids=["embedded", "written"])
def test_probe_orders_held_out_text_above_degenerate_text(make_corpus):
    train_text, held_text, vocab = make_corpus()
    tokenizer = train_tokenizer([train_text], vocab)
    train_ids = torch.tensor(tokenizer(train_text)["input_ids"])
    reward = NgramReward(tokenizer, train_ids)
    prompts, sets = probe_sets(train_ids, tokenizer(held_text)["input_ids"], tokenizer)
    means = {}
    for name, completions in sets.items():
        scores = reward([tokenizer.decode(p) for p in prompts], [tokenizer.decode(c) for c in completions],
                        prompt_ids=prompts, completion_ids=completions)
        assert len(scores) == SAMPLES
        means[name] = sum(scores) / SAMPLES
    assert means["held-out"] > 0.2, means
    for name in DEGENERATE:
        assert means["held-out"] > means[name] + 0.2, (name, means)
    assert means["random"] < 0.0 and means["repeated"] < 0.05, means


def test_reward_is_conditioned_on_the_prompt(tokenizer, texts):
    """Held-out continuations score higher after their real prompts than after each other's."""
    ids = tokenizer(default_corpus()[0][200_000:215_000])["input_ids"]
    starts = range(100, 4100, 100)
    prompts, continuations = [ids[s - 3:s] for s in starts], [ids[s:s + 6] for s in starts]
    swapped = prompts[1:] + prompts[:1]
    reward = NgramReward(tokenizer, torch.tensor(tokenizer("".join(texts))["input_ids"]))
    real = reward([""] * 40, [""] * 40, prompt_ids=prompts, completion_ids=continuations)
    other = reward([""] * 40, [""] * 40, prompt_ids=swapped, completion_ids=continuations)
    assert sum(real) > sum(other) * 1.2


def test_empty_and_prompt_free_completions(tokenizer, texts):
    ids = torch.tensor(tokenizer(texts[0])["input_ids"])
    reward = NgramReward(tokenizer, ids)
    scores = reward(["", ""], ["", "x"], prompt_ids=[[], []], completion_ids=[[], ids[:40].tolist()])
    assert scores[0] == 0.0 and scores[1] > 0.0
