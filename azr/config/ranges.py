"""The range of every numeric setting: declared with the setting, checked before anything is built, shown in the CLI's
help and in docs/cli.md (:func:`markdown_table` writes that table).

Ranges are generous for real use (a 0.5B model, a billion iterations, any 64-bit seed) and keep out the values that
would abort the process or break what reads the settings later (a vocabulary the tokenizer cannot allocate, an
iteration count or seed beyond 64 bits).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from azr.errors import ConfigError

MAX_ITERATIONS = 10**9  # iterations, and every "every N iterations" setting
MAX_SEED = 2**63 - 1  # torch and numpy take a signed 64-bit seed
MAX_VOCAB = 2**19  # 524,288 tokens: more than any released tokenizer
MAX_TOKENS = 2**17  # 131,072: a model's length, a window, the tokens one sample generates


@dataclass(frozen=True)
class Range:
    """The values a numeric setting accepts: ``low`` to ``high``, whole numbers only when ``integer``; ``above``
    excludes ``low`` and ``below`` excludes ``high``."""

    low: float
    high: float
    integer: bool = True
    above: bool = False
    below: bool = False

    def holds(self, value: Any) -> bool:
        """True when ``value`` is a number of the right kind inside the range (never a bool, NaN or infinity)."""
        kinds = int if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            return False
        return (value > self.low if self.above else value >= self.low) and \
            (value < self.high if self.below else value <= self.high)

    def check(self, name: str, value: Any) -> None:
        """Raise ConfigError naming ``name`` and the range unless the range holds ``value``."""
        if not self.holds(value):
            raise ConfigError(f"{name} must be {self.describe()}, got {value!r}.")

    def describe(self) -> str:
        """The range in words, e.g. "a positive integer up to 1,000" or "a number from 0 to 1"."""
        kind, high = ("integer" if self.integer else "number"), _number(self.high)
        if self.below:
            return f"a {kind} at least {_number(self.low)} and below {high}"
        if self.low == 0 and (self.above or self.integer) or self.integer and self.low == 1:
            return f"{'zero or ' if not self.above and self.low == 0 else ''}a positive {kind} up to {high}"
        return f"{'an' if self.integer else 'a'} {kind} from {_number(self.low)} to {high}"


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def markdown_table(rows: list[tuple[str, str, Range]]) -> str:
    """A Markdown table of ``(option, what, range)`` rows: the ranges section of docs/cli.md."""
    lines = ["| option | setting | accepted values |", "|---|---|---|"]
    lines += [f"| {option} | {what} | {within.describe()} |" for option, what, within in rows]
    return "\n".join(lines) + "\n"
