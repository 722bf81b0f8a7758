"""Tensors in safetensors files, written from and read into memory without extra copies.

:func:`encode` turns nested state (an optimizer's ``state_dict()``, RNG states) into a safetensors file: tensors go
in as tensors; everything around them (dicts with int or str keys, lists, numbers, strings) goes into the file's
metadata as JSON. The file is returned as consecutive parts — its header, then each tensor's own memory — so it is
written and hashed without being serialised into one buffer first. :func:`views` reads any safetensors file in
memory (bytes or a read-only mapping) as tensors that share that memory. Loading never executes code from a file.
"""
from __future__ import annotations

import json
import warnings
from typing import Any

import torch

SKELETON_KEY = "azr_state"
ALIGNMENT = 8  # safetensors pads its header so that the data starts 8-byte aligned
DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}
TORCH_DTYPES = {name: dtype for dtype, name in DTYPES.items()}


def encode(state: Any) -> list[memoryview | bytes]:
    """Return ``state`` (nested dicts/lists/tuples of tensors and plain values) as the parts of a safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _skeleton(state, tensors)
    return file_parts(tensors, {SKELETON_KEY: json.dumps(skeleton)})


def file_parts(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> list[memoryview | bytes]:
    """Return a safetensors file of ``tensors`` as parts: the header, then each tensor's bytes (CPU tensors are not
    copied, so they must not change until the parts are written). Tensors must not share memory."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    parts: list[memoryview | bytes] = []
    offset = 0
    for name, tensor in sorted(tensors.items(), key=lambda item: -item[1].element_size()):  # keeps all aligned
        tensor = tensor.detach().to("cpu").contiguous()
        if tensor.dtype not in DTYPES:
            raise TypeError(f"cannot store a tensor of {tensor.dtype} in a safetensors file")
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": DTYPES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
        if size:
            parts.append(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % ALIGNMENT)
    return [len(text).to_bytes(8, "little") + text, *parts]


def decode(data, device: torch.device | str = "cpu") -> Any:
    """Return the state stored by :func:`encode`, in memory of its own on ``device``; raises ValueError when
    ``data`` (bytes or a mapping of the file) is not such a file."""
    try:
        tensors, metadata = views(data)
        skeleton = json.loads(metadata[SKELETON_KEY])
        return _rebuild(skeleton, {k: v.to(device, copy=True) for k, v in tensors.items()})
    except ValueError:
        raise
    except Exception as exc:  # a malformed file fails in many ways
        raise ValueError(f"not a state file ({type(exc).__name__})") from exc


def views(data) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return the tensors of a safetensors file in memory as views of that memory (read-only: never write to them),
    and its metadata; raises ValueError when ``data`` is not a well-formed safetensors file."""
    buffer = memoryview(data)
    try:
        length = int.from_bytes(buffer[:8], "little")
        header = json.loads(bytes(buffer[8 : 8 + length]))
        metadata = header.pop("__metadata__", None) or {}
        start, end = 8 + length, 8
        tensors: dict[str, torch.Tensor] = {}
        with warnings.catch_warnings():  # the memory is read-only; the views are only read or copied
            warnings.filterwarnings("ignore", message="The given buffer is not writable")
            for name, entry in header.items():
                dtype = TORCH_DTYPES[entry["dtype"]]
                begin, stop = entry["data_offsets"]
                shape = [int(n) for n in entry["shape"]]
                count = 1
                for n in shape:
                    count *= n
                if not 0 <= begin <= stop <= len(buffer) - start or stop - begin != count * dtype.itemsize:
                    raise ValueError(f"tensor {name} lies outside the file")
                flat = torch.frombuffer(buffer, dtype=dtype, count=count, offset=start + begin) if count else \
                    torch.empty(0, dtype=dtype)
                tensors[name] = flat.view(shape)
                end = max(end, start + stop)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a safetensors file ({type(exc).__name__})") from exc
    if end != len(buffer) and tensors:
        raise ValueError("not a safetensors file (trailing bytes)")
    return tensors, metadata


def _skeleton(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = value
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
