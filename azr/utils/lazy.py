"""Module attributes imported on first use (PEP 562), so that importing a package does not import torch."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def attributes(package: str, table: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` that imports ``table[name]`` (a submodule of ``package``) on first use of
    ``name``, keeps the value in ``namespace``, and raises AttributeError for any other name."""
    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{table[name]}", package), name)
        namespace[name] = value
        return value
    return __getattr__
