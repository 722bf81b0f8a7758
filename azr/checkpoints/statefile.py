"""``trainer_state.json``: a checkpoint's state file, sealed with its own sha256 and checked field by field on read.

The state file records the checksum of every other file of the checkpoint (BLAKE3 from format 3, sha256 before:
:func:`checksum_algorithm`); ``state_sha256`` covers the state file itself (its canonical JSON without that key),
so a damaged or hand-edited state is refused with one sentence instead of resuming from wrong values. State files
written before the seal existed still load, fully checked.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from azr.checkpoints.storage import CHECKSUM
from azr.errors import CheckpointError

FORMAT_VERSION = 3  # 3: the files' checksums are BLAKE3; 2: sha256, the history in chunks; 1: the first format
STATE_FILE = "trainer_state.json"
SEAL = "state_sha256"
DIGEST = re.compile(r"^[0-9a-f]{64}$")


def seal(state: dict[str, Any]) -> bytes:
    """Return the bytes of ``state`` as a state file, with its seal (a seal it already holds is replaced)."""
    state = {key: value for key, value in state.items() if key != SEAL}
    return json.dumps({**state, SEAL: _digest(state)}, indent=1).encode()


def checksum_algorithm(format_version: int) -> str:
    """The algorithm of the file checksums a checkpoint of ``format_version`` records (format 3 on: what
    :mod:`~azr.checkpoints.storage` hashes new files with)."""
    return CHECKSUM if format_version >= 3 else "sha256"


def read_state(path: str | Path) -> dict[str, Any]:
    """Return a checkpoint directory's state, checked; raises CheckpointError naming what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"Checkpoint {str(path)!r} is not a checkpoint directory.")
    state_file = path / STATE_FILE
    if not state_file.is_file():
        _invalid(path, f"{STATE_FILE} is missing")
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: {STATE_FILE} is unreadable.") from exc
    if not isinstance(state, dict) or not _is_count(state.get("format_version")):
        _invalid(path, f"{STATE_FILE} has no format_version")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} has format version {state['format_version']}, newer than this azr "
            f"supports ({FORMAT_VERSION}); upgrade azr to load it.")
    if SEAL in state and state[SEAL] != _digest({k: v for k, v in state.items() if k != SEAL}):
        _invalid(path, f"checksum mismatch in {STATE_FILE} (it was changed after it was written)")
    problem = _problem(state)
    if problem:
        _invalid(path, problem)
    return state


def _problem(state: dict[str, Any]) -> str | None:
    """Return what is wrong with the state's fields, or None."""
    if not _is_count(state.get("iteration")):
        return "its iteration is not a count"
    if not isinstance(state.get("train_config"), dict):
        return "its train_config is missing"
    files = state.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(n, str) and isinstance(d, str) and DIGEST.match(d)
                                              for n, d in files.items()):
        return "its list of files and checksums is malformed"
    if any("/" in name or "\\" in name or name.startswith(".") for name in files):
        return "its list of files names a file outside the checkpoint"
    position = state.get("data_position", {})
    if not isinstance(position, dict) or not all(_is_count(v) for v in position.values()):
        return "its data position is not a set of counts"
    if state.get("max_iterations") is not None and not _is_count(state["max_iterations"]):
        return "its max_iterations is not a count"
    for key in ("loss", "val_loss", "reward", "lr"):
        if state.get(key) is not None and (not isinstance(state[key], (int, float)) or isinstance(state[key], bool)):
            return f"its {key} is not a number"
    return _history_problem(state.get("history"), state["format_version"])


def _history_problem(history: Any, format_version: int) -> str | None:
    if format_version < 2:
        return None if history is None or (isinstance(history, list) and all(isinstance(r, dict) for r in history)) \
            else "its history is not a list of records"
    if not isinstance(history, dict) or not _is_count(history.get("length")):
        return "its history record is malformed"
    chunks = history.get("chunks", [])
    if not isinstance(chunks, list) or not all(isinstance(d, str) and DIGEST.match(d) for d in chunks):
        return "its history chunks are malformed"
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _digest(state: dict[str, Any]) -> str:
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _invalid(path: Path, reason: str) -> None:
    raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: {reason}.")

