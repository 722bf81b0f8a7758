"""The text that names a run's reward functions, e.g. ``ends_sentence(within=8)*2, composite*0.5, pkg.mod:fn``.

Each item is a built-in name or an import path ``package.module:function``, optional options in parentheses
(``key=value``; numbers, true/false, text, ``a|b`` for a list) and an optional weight after ``*`` (default 1).
The text is stored in the run's settings, so a resume builds the same functions again.
"""
from __future__ import annotations

import importlib
import inspect
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

ITEM = re.compile(r"^\s*(?P<target>[A-Za-z_][\w.]*(?::[A-Za-z_][\w.]*)?)\s*(?:\((?P<options>[^()]*)\))?\s*"
                  r"(?:\*\s*(?P<weight>[-+0-9.eE]+))?\s*$")
EXAMPLE = "e.g. 'ends_sentence(within=8)*2, composite*0.5' or 'package.module:function'"


@dataclass(frozen=True)
class RewardSpec:
    """One reward function of the list: what it is, its options and its weight."""

    target: str
    options: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0

    @property
    def is_import_path(self) -> bool:
        return ":" in self.target


def parse(text: str, builtins: tuple[str, ...]) -> list[RewardSpec]:
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


def build(spec: RewardSpec, builtins: dict[str, type], tokenizer, corpus_ids) -> Any:
    """Return the callable for ``spec``: a class is built as ``Cls(tokenizer, corpus_ids, **options)``, a
    function is used as it is. Raises ConfigError when it cannot be imported or built."""
    target = builtins.get(spec.target) or _import(spec.target)
    if not inspect.isclass(target):
        if spec.options:
            raise ConfigError(f"Reward {spec.target!r} is a function and takes no options; remove them.")
        return target
    try:
        inspect.signature(target).bind(tokenizer, corpus_ids, **spec.options)
        return target(tokenizer, corpus_ids, **spec.options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Reward {spec.target!r} cannot be built with options {spec.options}: {exc}.") from None


def _import(path: str) -> Any:
    """Return the function or class at ``package.module:name`` (never one of the standard library)."""
    module_name, _, name = path.partition(":")
    if module_name.split(".")[0] in sys.stdlib_module_names:
        raise ConfigError(f"Reward {path!r} is in the standard library; name a function of your own package.")
    try:
        found: Any = importlib.import_module(module_name)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Reward {path!r} cannot be imported ({type(exc).__name__}: {exc}); install its "
                          "package or correct the path.") from None
    if not (inspect.isfunction(found) or inspect.isclass(found)):
        raise ConfigError(f"Reward {path!r} is not a function or class; name one defined in Python.")
    return found
