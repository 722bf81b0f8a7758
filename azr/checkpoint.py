"""The checkpoint directory format: atomic save, verification, listing, loading and rotation.

A checkpoint ``<checkpoint_dir>/model_<kind>_<N>/`` holds the transformers files (``model.safetensors``,
``config.json``, tokenizer files), the sidecars ``optimizer.pt``, ``scheduler.json``, ``rng_state.pt`` and
``self_play.safetensors``, and ``trainer_state.json`` with the sha256 of every other file. Nothing here
unpickles: tensors load with safetensors or ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .errors import CheckpointError

FORMAT_VERSION = 1
STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.json"
RNG_FILE = "rng_state.pt"
SELF_PLAY_FILE = "self_play.safetensors"
REQUIRED_FILES = (WEIGHTS_FILE, CONFIG_FILE, SCHEDULER_FILE, RNG_FILE, SELF_PLAY_FILE)
KINDS = ("iter", "paused", "interrupted", "error")
NAME_PATTERN = re.compile(r"^model_(iter|paused|interrupted|error)_(\d+)$")
TEMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
STAGING_PREFIX = ".push-"


def checkpoint_name(kind: str, iteration: int) -> str:
    """Return the directory name of a checkpoint of ``kind`` at ``iteration``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return f"model_{kind}_{iteration}"


@dataclass
class CheckpointInfo:
    """One checkpoint as listed: what it is and whether it can be loaded."""

    name: str
    path: str
    kind: str
    iteration: int | None
    max_iterations: int | None
    loss: float | None
    val_loss: float | None
    timestamp: str | None
    size_bytes: int
    has_optimizer: bool
    valid: bool
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return asdict(self)


def save_checkpoint(
    checkpoint_dir: str | Path,
    name: str,
    *,
    model,
    tokenizer,
    state: dict[str, Any],
    optimizer_state: dict[str, Any] | None,
    scheduler: dict[str, Any],
    rng: dict[str, Any],
    self_play: dict[str, torch.Tensor],
) -> Path:
    """Write a complete checkpoint atomically and return its path.

    Files go to a temporary sibling directory, are fsynced, get their sha256 recorded in
    ``trainer_state.json``, and the directory is then renamed into place. A crash at any moment
    leaves either no new checkpoint or a complete one.
    """
    root = Path(checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root)
    temp = hidden_sibling(root, TEMP_PREFIX, name)
    temp.mkdir()
    try:
        model.save_pretrained(temp, safe_serialization=True)
        tokenizer.save_pretrained(temp)
        if optimizer_state is not None:
            torch.save(optimizer_state, temp / OPTIMIZER_FILE)
        (temp / SCHEDULER_FILE).write_text(json.dumps(scheduler, indent=2))
        torch.save(rng, temp / RNG_FILE)
        save_file({k: v.contiguous().cpu() for k, v in self_play.items()}, str(temp / SELF_PLAY_FILE))
        files = _in_parallel(_sha256_and_fsync, sorted(p for p in temp.iterdir() if p.is_file()))
        full_state = {**state, "format_version": FORMAT_VERSION, "name": name, "files": files}
        (temp / STATE_FILE).write_text(json.dumps(full_state, indent=1))
        _publish(temp, root / name, [temp / STATE_FILE])  # the other files were fsynced while hashed
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return root / name


def copy_checkpoint(source: str | Path, checkpoint_dir: str | Path) -> Path:
    """Copy a checkpoint directory into ``checkpoint_dir`` atomically (as :func:`save_checkpoint`); return it."""
    source, root = Path(source), Path(checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    temp = hidden_sibling(root, TEMP_PREFIX, source.name)
    try:
        shutil.copytree(source, temp)
        _publish(temp, root / source.name, list(temp.iterdir()))
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return root / source.name


def _publish(temp: Path, final: Path, unsynced: list[Path]) -> None:
    """Fsync the files not yet synced and the temporary directory, then rename it to its final name."""
    for path in unsynced:
        _fsync_file(path)
    _fsync_dir(temp)
    if final.exists():
        _discard(final)
    os.rename(temp, final)
    _fsync_dir(final.parent)


def read_state(path: str | Path) -> dict[str, Any]:
    """Return the parsed ``trainer_state.json`` of a checkpoint without verifying files.

    Raises CheckpointError when the checkpoint or its state is missing, unreadable or of a newer format.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist; check the path or run `azr list`.")
    if not path.is_dir():
        raise CheckpointError(f"Checkpoint {str(path)!r} is not a checkpoint directory.")
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: {STATE_FILE} is missing.")
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: {STATE_FILE} is unreadable ({exc}).") from exc
    if not isinstance(state, dict) or not isinstance(state.get("format_version"), int):
        raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: {STATE_FILE} has no format_version.")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} has format version {state['format_version']}, newer than this azr "
            f"supports ({FORMAT_VERSION}); upgrade azr to load it."
        )
    return state


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """Check every file against its recorded sha256 and return the state.

    Raises CheckpointError naming the first problem (missing file, checksum mismatch, unreadable state).
    """
    path = Path(path)
    state = read_state(path)
    files = state.get("files") or {}
    for required in REQUIRED_FILES:
        if required not in files:
            raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: {required} is not recorded.")
    for filename in files:
        if not (path / filename).is_file():
            raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: {filename} is missing.")
    actual = _in_parallel(_sha256, [path / filename for filename in files])
    for filename, digest in files.items():
        if actual[filename] != digest:
            raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: checksum mismatch in {filename}.")
    return state


def checkpoint_info(path: str | Path, verify: bool = True) -> CheckpointInfo:
    """Describe one checkpoint directory; invalid ones are described with the reason."""
    path = Path(path)
    match = NAME_PATTERN.match(path.name)
    kind = match.group(1) if match else "unknown"
    size = sum(p.stat().st_size for p in path.iterdir() if p.is_file()) if path.is_dir() else 0
    try:
        state = verify_checkpoint(path) if verify else read_state(path)
    except CheckpointError as exc:
        reason = str(exc).split(" is invalid: ", 1)[-1].rstrip(".")
        return CheckpointInfo(path.name, str(path), kind, int(match.group(2)) if match else None, None, None,
                              None, None, size, (path / OPTIMIZER_FILE).is_file(), False, reason)
    return CheckpointInfo(
        name=path.name, path=str(path), kind=kind, iteration=state.get("iteration"),
        max_iterations=state.get("max_iterations"), loss=state.get("loss"), val_loss=state.get("val_loss"),
        timestamp=state.get("timestamp"), size_bytes=size,
        has_optimizer=OPTIMIZER_FILE in state.get("files", {}), valid=True,
    )


def list_checkpoints(checkpoint_dir: str | Path, verify: bool = True) -> list[CheckpointInfo]:
    """Return the checkpoints in a directory, newest first, each marked valid or invalid with the reason.

    Raises CheckpointError when ``checkpoint_dir`` is not a directory.
    """
    root = Path(checkpoint_dir)
    if not root.is_dir():
        raise CheckpointError(f"Checkpoint directory {str(root)!r} does not exist.")
    infos = [checkpoint_info(p, verify) for p in root.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name)]
    infos.sort(key=lambda i: (i.timestamp or "", i.iteration or 0), reverse=True)
    return infos


def rotate_checkpoints(checkpoint_dir: str | Path, keep_last: int) -> list[str]:
    """Delete all but the newest ``keep_last`` ``model_iter_*`` checkpoints; return the deleted names.

    Paused, interrupted and error checkpoints, and the newest checkpoint of any kind, are never deleted.
    """
    infos = list_checkpoints(checkpoint_dir, verify=False)
    newest = infos[0].name if infos else None
    iters = sorted((i for i in infos if i.kind == "iter"), key=lambda i: i.iteration or 0, reverse=True)
    deleted = []
    for info in iters[keep_last:]:
        if info.name != newest:
            _discard(Path(info.path))
            deleted.append(info.name)
    return deleted


def load_weights(path: str | Path, model, device: torch.device) -> None:
    """Load ``model.safetensors`` into ``model`` (shared/tied tensors may be absent from the file).

    Raises CheckpointError when tensors are missing or have other shapes.
    """
    tensors = load_file(str(Path(path) / WEIGHTS_FILE), device=str(device))
    expected = model.state_dict()
    wrong_shape = [k for k, v in tensors.items() if k in expected and expected[k].shape != v.shape]
    if wrong_shape:
        raise CheckpointError(f"Checkpoint weights do not fit the model: {', '.join(wrong_shape[:5])} differ in shape.")
    result = model.load_state_dict(tensors, strict=False)
    loaded_pointers = {expected[k].data_ptr() for k in tensors if k in expected}
    missing = [k for k in result.missing_keys if expected[k].data_ptr() not in loaded_pointers]
    if missing or result.unexpected_keys:
        problem = missing[:5] or result.unexpected_keys[:5]
        raise CheckpointError(f"Checkpoint weights do not fit the model: {', '.join(problem)} missing or unexpected.")


def read_model_config(path: str | Path) -> dict[str, Any]:
    """Return a checkpoint's ``config.json`` (the transformers model config) as a dict."""
    return json.loads((Path(path) / CONFIG_FILE).read_text())


def load_tensor_file(path: str | Path, filename: str, device: torch.device | str = "cpu") -> Any:
    """Load a torch sidecar with ``weights_only=True`` (never runs code from the file)."""
    return torch.load(Path(path) / filename, map_location=device, weights_only=True)


def load_self_play(path: str | Path) -> dict[str, torch.Tensor]:
    """Load the self-play sidecar tensors."""
    return load_file(str(Path(path) / SELF_PLAY_FILE))


def load_scheduler(path: str | Path) -> dict[str, Any]:
    """Load the scheduler sidecar (a JSON LR plan)."""
    return json.loads((Path(path) / SCHEDULER_FILE).read_text())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256_and_fsync(path: Path) -> str:
    _fsync_file(path)
    return _sha256(path)


def _in_parallel(function, paths: list[Path]) -> dict[str, Any]:
    """Return ``{path.name: function(path)}``, computed in threads (hashing and fsync release the GIL)."""
    with ThreadPoolExecutor(max_workers=min(8, len(paths) or 1)) as pool:
        return dict(zip((p.name for p in paths), pool.map(function, paths)))


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(path: Path) -> None:
    """Remove a checkpoint directory so that it vanishes from listings at once (rename, then delete)."""
    trash = hidden_sibling(path.parent, TRASH_PREFIX, path.name)
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def hidden_sibling(root: Path, prefix: str, name: str) -> Path:
    """Return a new hidden path in ``root`` that names this process, so leftovers can be cleaned up."""
    return root / f"{prefix}{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove_stale_temporaries(root: Path) -> None:
    """Delete leftovers: trash, half-written checkpoints of dead processes (or this one), dead uploads."""
    for entry in root.iterdir():
        if not entry.is_dir() or not entry.name.startswith((TRASH_PREFIX, TEMP_PREFIX, STAGING_PREFIX)):
            continue
        pid = entry.name.rsplit("-", 2)[-2]
        owner_alive = pid.isdigit() and _process_alive(int(pid))
        if entry.name.startswith(TRASH_PREFIX) or not owner_alive or (
                entry.name.startswith(TEMP_PREFIX) and int(pid) == os.getpid()):
            shutil.rmtree(entry, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
