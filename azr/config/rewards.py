"""The text that names a run's reward functions, e.g. ``ends_sentence(within=8)*2, composite*0.5, pkg.mod:fn``.

Each item is a built-in name or an import path ``package.module:function``, optional options in parentheses
(``key=value``; numbers, true/false, text, ``a|b`` for a list) and an optional weight after ``*`` (default 1).
The text is stored in the run's settings, so a resume builds the same functions again.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from azr.errors import ConfigError

BUILTIN_NAMES = ("composite", "ends_sentence", "contains", "avoids", "ngram", "chrf")

ITEM = re.compile(r"^\s*(?P<target>[A-Za-z_][\w.]*(?::[A-Za-z_][\w.]*)?)\s*(?:\((?P<options>[^()]*)\))?\s*"
                  r"(?:\*\s*(?P<weight>[-+0-9.eE]+))?\s*$")
EXAMPLE = "e.g. 'ends_sentence(within=8)*2, composite*0.5' or 'package.module:function'"


@dataclass(frozen=True)
class RewardSpec:
    """One reward function of the list: what it is, its options and its weight."""

    target: str
    options: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0


def parse_rewards(text: str, builtins: tuple[str, ...] = BUILTIN_NAMES) -> list[RewardSpec]:
    """Return the reward functions named by ``text``; raises ConfigError for bad syntax or an unknown name."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"rewards must name at least one reward function, {EXAMPLE}.")
    specs = [_item(part, builtins) for part in _split(text)]
    if not any(spec.weight for spec in specs):
        raise ConfigError("rewards must give at least one function a non-zero weight.")
    return specs


def _split(text: str) -> list[str]:
    """Split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    return parts + [text[start:]]


def _item(part: str, builtins: tuple[str, ...]) -> RewardSpec:
    match = ITEM.match(part)
    if not match:
        raise ConfigError(f"rewards item {part.strip()!r} is not NAME(options)*WEIGHT, {EXAMPLE}.")
    target = match["target"]
    if ":" not in target and target not in builtins:
        raise ConfigError(f"Unknown reward {target!r}; choose from {', '.join(builtins)} or give an import path "
                          "package.module:function.")
    try:
        weight = float(match["weight"]) if match["weight"] else 1.0
    except ValueError:
        raise ConfigError(f"The weight of reward {target!r} is not a number: {match['weight']!r}.") from None
    options = {}
    for pair in filter(str.strip, (match["options"] or "").split(",")):
        key, equals, value = pair.partition("=")
        if not equals or not key.strip().isidentifier():
            raise ConfigError(f"Option {pair.strip()!r} of reward {target!r} is not key=value.")
        options[key.strip()] = _value(value.strip())
    return RewardSpec(target, options, weight)


def _value(text: str) -> Any:
    if "|" in text:
        return [_value(part.strip()) for part in text.split("|")]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text
