"""Building a run's reward functions from their specs: built-in classes by name, user functions by import path."""
from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any

from azr.config.rewards import RewardSpec
from azr.errors import ConfigError


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
