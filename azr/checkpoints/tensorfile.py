"""Nested state (an optimizer's ``state_dict()``, RNG states) as one safetensors file, and back.

Tensors go into the file as tensors; everything around them (dicts with int or str keys, lists, numbers, strings)
goes into the file's metadata as JSON. Reading and writing go through the ``safetensors`` library, so loading never
executes code from a file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

SKELETON_KEY = "azr_state"


def write(path: str | Path, state: Any) -> None:
    """Write ``state`` (nested dicts/lists/tuples of tensors and plain values) as the safetensors file ``path``
    (straight to the file: no copy of the whole file in memory first)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _skeleton(state, tensors)
    save_file(tensors, str(path), metadata={SKELETON_KEY: json.dumps(skeleton)})


def decode(path: str | Path, device: torch.device | str = "cpu") -> Any:
    """Return the state stored by :func:`encode` in the file ``path``, its tensors on ``device``; raises
    ValueError when the file is not such a file."""
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as file:
            skeleton = json.loads((file.metadata() or {})[SKELETON_KEY])
            tensors = {name: file.get_tensor(name) for name in file.keys()}
        return _rebuild(skeleton, tensors)
    except ValueError:
        raise
    except Exception as exc:  # safetensors and json raise their own errors for a malformed file
        raise ValueError(f"not a state file ({type(exc).__name__})") from exc


def _skeleton(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = value.detach().to("cpu").contiguous()
        return {"t": key}
    if isinstance(value, dict):
        return {"d": [[k, _skeleton(v, tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"l" if isinstance(value, list) else "u": [_skeleton(v, tensors) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"v": value}
    raise TypeError(f"cannot store a {type(value).__name__} in a state file")


def _rebuild(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError("malformed state skeleton")
    (kind, body), = node.items()
    if kind == "t":
        return tensors[body]
    if kind == "d":
        return {key: _rebuild(value, tensors) for key, value in body}
    if kind == "l":
        return [_rebuild(value, tensors) for value in body]
    if kind == "u":
        return tuple(_rebuild(value, tensors) for value in body)
    if kind == "v":
        return body
    raise ValueError("malformed state skeleton")
