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
from safetensors.torch import save as save_tensors

SKELETON_KEY = "azr_state"


def encode(state: Any) -> bytes:
    """Return ``state`` (nested dicts/lists/tuples of tensors and plain values) as a safetensors file's bytes."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _skeleton(state, tensors)
    return save_tensors(tensors, metadata={SKELETON_KEY: json.dumps(skeleton)})


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


def misfits(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> list[str]:
    """Return what keeps ``tensors`` from loading into a model whose ``state_dict()`` is ``expected``: unexpected
    names, other shapes, and missing names (a name tied to a loaded one, sharing its memory, may be missing)."""
    problems = [f"unexpected {name}" for name in tensors if name not in expected]
    problems += [f"{name} has shape {list(tensor.shape)}, the model {list(expected[name].shape)}"
                 for name, tensor in tensors.items() if name in expected and tensor.shape != expected[name].shape]
    loaded = {_memory(expected[name]) for name in tensors if name in expected}
    problems += [f"missing {name}" for name, tensor in expected.items()
                 if name not in tensors and _memory(tensor) not in loaded]
    return problems


def _memory(tensor: torch.Tensor) -> tuple[str, int]:
    return str(tensor.device), tensor.untyped_storage().data_ptr()
