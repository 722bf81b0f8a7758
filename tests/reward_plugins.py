"""A user's reward functions, named by import path (``reward_plugins:short_words``) in the rewards tests."""
from __future__ import annotations


def short_words(prompts, completions):
    """The share of words of at most four letters."""
    scores = []
    for text in completions:
        words = text.split()
        scores.append(sum(len(w) <= 4 for w in words) / len(words) if words else 0.0)
    return scores


def echoes_prompt(prompts, completions, completion_ids, prompt_ids):
    """1.0 when the continuation's first token occurs in the prompt (checks the ids the trainer passes)."""
    return [float(bool(ids) and ids[0] in prompt) for prompt, ids in zip(prompt_ids, completion_ids)]
