"""Verifiable rewards: checks with a yes/no answer a person can confirm by reading the continuation."""
from __future__ import annotations

import re

import torch

SENTENCE_END = re.compile(r"[.!?]")


class EndsSentence:
    """1.0 when the continuation ends a sentence (".", "!" or "?") within its first ``within`` tokens, else 0.0."""

    def __init__(self, tokenizer, corpus_ids: torch.Tensor, within: int = 8) -> None:
        if not isinstance(within, int) or isinstance(within, bool) or within < 1:
            raise ValueError(f"within must be a positive integer, got {within!r}")
        self.tokenizer, self.within = tokenizer, within

    def __call__(self, prompts: list[str], completions: list[str],
                 completion_ids: list[list[int]] | None = None) -> list[float]:
        if completion_ids is None:
            completion_ids = [self.tokenizer.encode(text, add_special_tokens=False) for text in completions]
        heads = self.tokenizer.batch_decode([ids[: self.within] for ids in completion_ids])
        return [float(bool(SENTENCE_END.search(head))) for head in heads]


class _Words:
    """Base of the word checks: the given words, matched as whole words, case-insensitively."""

    def __init__(self, tokenizer, corpus_ids: torch.Tensor, words: str | list[str] = ()) -> None:
        words = [words] if isinstance(words, str) else list(words)
        if not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise ValueError("words must name at least one word, e.g. words=sea|ship")
        self.patterns = [re.compile(rf"\b{re.escape(w.strip())}\b", re.IGNORECASE) for w in words]

    def found(self, text: str) -> list[bool]:
        return [bool(p.search(text)) for p in self.patterns]


class Contains(_Words):
    """The share of the given ``words`` that the continuation contains (1.0: all of them)."""

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        return [sum(self.found(text)) / len(self.patterns) for text in completions]


class Avoids(_Words):
    """1.0 when the continuation contains none of the given ``words``, else 0.0."""

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        return [0.0 if any(self.found(text)) else 1.0 for text in completions]
