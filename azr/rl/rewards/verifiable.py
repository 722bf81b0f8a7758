"""Verifiable rewards: checks with a yes/no answer a person can confirm by reading the continuation."""
from __future__ import annotations

import re

import torch

# An end mark after a word, then closing quotes or brackets, then a space or the end of the text.
SENTENCE_END = re.compile(r"(?P<word>\S*)[.!?]+[\"')\]]*(?=\s|$)")
WORD = re.compile(r"\w+")
ABBREVIATIONS = {"www", "etc", "mr", "mrs", "ms", "dr", "st", "vs", "jr", "sr", "inc", "ltd", "co", "cf", "fig"}


class EndsSentence:
    """1.0 when the continuation ends a sentence of its own within its first ``within`` tokens, else 0.0.

    A sentence end is ".", "!" or "?" (closing quotes or brackets may follow) before a space or the end of the
    text, after a word of two or more letters that is not an abbreviation ("2.0", "www.", "e.g.", "J." are not
    ends), with at least ``min_words`` (default 3) words of the continuation before it: a mark emitted right after
    the prompt ("there is a?") ends the prompt's sentence, not one the model wrote.
    """

    def __init__(self, tokenizer, corpus_ids: torch.Tensor, within: int = 8, min_words: int = 3) -> None:
        for name, value in (("within", within), ("min_words", min_words)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.tokenizer, self.within, self.min_words = tokenizer, within, min_words

    def __call__(self, prompts: list[str], completions: list[str],
                 completion_ids: list[list[int]] | None = None) -> list[float]:
        if completion_ids is None:
            completion_ids = [self.tokenizer.encode(text, add_special_tokens=False) for text in completions]
        texts = self.tokenizer.batch_decode(completion_ids)
        heads = self.tokenizer.batch_decode([ids[: self.within] for ids in completion_ids])
        return [float(self._ends_by(text, len(head))) for text, head in zip(texts, heads)]

    def _ends_by(self, text: str, limit: int) -> bool:
        """True when a sentence of the continuation ends before character ``limit`` of ``text``."""
        for match in SENTENCE_END.finditer(text):
            if match.end("word") >= limit:
                return False
            word = match["word"].strip("\"'([").lower()
            if len(word) > 1 and word.isalpha() and word not in ABBREVIATIONS and \
                    len(WORD.findall(text[: match.end("word")])) >= self.min_words:
                return True
        return False


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
