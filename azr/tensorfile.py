"""Nested state (an optimizer's ``state_dict()``, RNG states) as one safetensors file, and back.

Tensors go into the file as tensors; everything around them (dicts with int or str keys, lists, numbers,
strings) goes into the file's metadata as JSON. Loading never executes code from the file.
"""
from __future__ import annotations

import json
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

SKELETON_KEY = "azr_state"


def encode(state: Any) -> bytes:
    """Return ``state`` (nested dicts/lists/tuples of tensors and plain values) as safetensors bytes."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _skeleton(state, tensors)
    return save_tensors(tensors, metadata={SKELETON_KEY: json.dumps(skeleton)})


def decode(data: bytes, device: torch.device | str = "cpu") -> Any:
    """Return the state stored by :func:`encode`; raises ValueError when ``data`` is not such a file."""
    try:
        tensors = load_tensors(data)
        skeleton = json.loads(_metadata(data)[SKELETON_KEY])
        return _rebuild(skeleton, {k: v.to(device) for k, v in tensors.items()})
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise ValueError(f"not a state file ({type(exc).__name__})") from exc


def _metadata(data: bytes) -> dict[str, str]:
    """Return a safetensors file's metadata: its JSON header after the 8-byte length."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length]).get("__metadata__") or {}


def _skeleton(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = value.detach().to("cpu", copy=True).contiguous()
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
