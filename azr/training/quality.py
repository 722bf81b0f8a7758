"""Text-quality measures at validation time: greedy continuations of fixed held-out prompts, scored by
seq-rep-4 (the share of repeated 4-grams within a continuation; Welleck et al. 2019) and distinct-2 (unique
bigrams over all bigrams of all continuations). Greedy decoding draws no random numbers, so measuring changes
nothing a resume depends on.
"""
from __future__ import annotations

import torch

from azr.models.causal_lm import evaluating
from azr.models.generation import exact_generate

PROMPTS = 8  # the first N validation windows give the prompts
PROMPT_TOKENS = 16
NEW_TOKENS = 32
MEASURES = ("seq_rep_4", "distinct_2")


def seq_rep(tokens: list[int], n: int = 4) -> float:
    """Return 1 - unique n-grams / n-grams of one sequence (0: nothing repeats)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def distinct(sequences: list[list[int]], n: int = 2) -> float:
    """Return unique n-grams over all n-grams of ``sequences`` (1: no n-gram occurs twice)."""
    grams = [tuple(s[i:i + n]) for s in sequences for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


@torch.no_grad()
def greedy_measures(model, windows: torch.Tensor, eos_token_id: int | None = None) -> dict[str, float]:
    """Return seq-rep-4 (mean over prompts) and distinct-2 of greedy continuations of the prompts cut from
    ``windows`` (empty when there are none)."""
    prompts = windows[:PROMPTS, :PROMPT_TOKENS]
    if not len(prompts):
        return {}
    new_tokens = min(NEW_TOKENS, model.config.max_position_embeddings - prompts.shape[1])
    if new_tokens < 4:
        return {}
    with evaluating(model):
        output = exact_generate(model, prompts.to(model.device), max_new_tokens=new_tokens, eos_token_id=eos_token_id,
                                pad_token_id=eos_token_id, sample=False, min_new_tokens=new_tokens)
    continuations = output.sequences[:, prompts.shape[1]:].tolist()
    return {"seq_rep_4": sum(seq_rep(c) for c in continuations) / len(continuations),
            "distinct_2": distinct(continuations)}
