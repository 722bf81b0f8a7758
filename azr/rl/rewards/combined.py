"""A list of reward functions with weights, scored together (like TRL's ``reward_funcs`` and ``reward_weights``).

The contract: a reward function is any callable ``fn(prompts, completions, **kwargs) -> list[float]`` (one float per
completion). It is given the keyword arguments it accepts among ``prompt_ids``, ``completion_ids`` (lists of lists
of int), ``max_new_tokens``, ``references`` (each prompt's real continuation in the training text, as text) and
``reference_ids`` (the same as token ids); one that takes a single argument gets just the completions.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch

from azr.errors import ConfigError

RewardFn = Callable[..., list[float]]


class RewardSet:
    """Reward functions with their labels and weights; the reward of a completion is the weighted sum."""

    def __init__(self, functions: list[tuple[str, RewardFn, float]]) -> None:
        self.functions = [(label, fn, weight, _call_style(fn)) for label, fn, weight in functions]

    @property
    def labels(self) -> list[str]:
        return [label for label, *_ in self.functions]

    def score(self, prompts: list[str], completions: list[str], **offered: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the weighted totals (n,) and each function's rewards (functions, n) as float32 tensors.

        Raises ConfigError when a function does not return one finite number per completion.
        """
        rows = []
        for label, fn, _, style in self.functions:
            if style is None:
                values = fn(completions)
            else:
                values = fn(prompts, completions, **{k: v for k, v in offered.items() if style is all or k in style})
            rows.append(_checked(label, values, len(completions)))
        each = torch.tensor(rows, dtype=torch.float32)
        weights = torch.tensor([weight for *_, weight, _ in self.functions], dtype=torch.float32)
        return (weights[:, None] * each).sum(dim=0), each


def _call_style(fn: RewardFn) -> set[str] | object | None:
    """None for a one-argument callable; ``all`` when it takes ``**kwargs``; else the keyword names it takes."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: the two-argument form
        return set()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return all
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) == 1 and not any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _checked(label: str, values: Any, count: int) -> list[float]:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"Reward {label!r} must return a list of numbers, got {type(values).__name__}.") from None
    if len(numbers) != count:
        raise ConfigError(f"Reward {label!r} returned {len(numbers)} values for {count} completions; return one each.")
    if not all(math.isfinite(v) for v in numbers):
        raise ConfigError(f"Reward {label!r} returned a value that is not finite; return finite numbers.")
    return numbers
