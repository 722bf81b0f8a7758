"""A reward grounded in the user's text: how closely the sampled continuation matches the real one.

Self-play prompts are prefixes of training windows, so every prompt has a real continuation (the window's next
tokens). ``chrf`` scores a sample against it with chrF++ (character 1- to 6-grams and word 1- and 2-grams,
F-beta with beta 2; Popović 2015/2017) from sacrebleu, the maintained reference implementation: only text that
approaches the real continuation scores high, which is sequence-level training towards the data (MIXER, Ranzato
et al. 2016) rather than towards a proxy of "text-like" that a model can game.
"""
from __future__ import annotations

import torch
from sacrebleu.metrics import CHRF

from azr.errors import ConfigError


class ChrfReward:
    """chrF++ of each continuation against its prompt's real continuation, from 0 (nothing shared) to 1 (equal).

    Options: ``char_order`` (default 6), ``word_order`` (default 2; 0 is plain chrF) and ``beta`` (default 2: recall
    weighs twice precision), as sacrebleu's ``CHRF``.
    """

    def __init__(self, tokenizer, corpus_ids: torch.Tensor, *, char_order: int = 6, word_order: int = 2,
                 beta: int = 2) -> None:
        for name, value, low in (("char_order", char_order, 1), ("word_order", word_order, 0), ("beta", beta, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer of at least {low}, got {value!r}")
        self.metric = CHRF(char_order=char_order, word_order=word_order, beta=beta)

    def __call__(self, prompts: list[str], completions: list[str], references: list[str] | None = None) -> list[float]:
        if references is None:
            raise ConfigError("The chrf reward needs each prompt's real continuation: self-play passes it, and a "
                              "direct call must pass references=[...].")
        return [self.metric.sentence_score(text, [reference]).score / 100.0
                for text, reference in zip(completions, references)]
