"""Atomic directory writes: files hashed as they are written, fsynced, and published with one rename.

A directory is built under a hidden temporary name (``.tmp-<name>-<pid>-<random>``) and renamed into place
only when every file in it is on disk, so a crash at any moment leaves either nothing or the whole directory.
Deleted directories are renamed to ``.trash-…`` first, so they vanish from listings at once.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TEMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
STAGING_PREFIX = ".push-"


def hidden_sibling(root: Path, prefix: str, name: str) -> Path:
    """Return a new hidden path in ``root`` that names this process, so leftovers can be cleaned up."""
    return root / f"{prefix}{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_bytes(path: Path, data: bytes) -> str:
    """Write ``data`` to a new file, fsync it and return its sha256 (computed from memory, not re-read)."""
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Return the sha256 of a file."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fsync_and_hash(path: Path) -> str:
    """Fsync a file written by someone else and return its sha256."""
    fsync_file(path)
    return sha256_file(path)


def in_parallel(function: Callable[[Path], str], paths: list[Path]) -> dict[str, str]:
    """Return ``{path.name: function(path)}``, computed in threads (hashing, writing and fsync release the GIL)."""
    with ThreadPoolExecutor(max_workers=min(8, len(paths) or 1)) as pool:
        return dict(zip((p.name for p in paths), pool.map(function, paths)))


def write_file_atomically(path: Path, make_data: Callable[[], bytes]) -> None:
    """Create ``path`` with ``make_data()`` unless it exists, atomically (temporary file, fsync, rename)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = hidden_sibling(path.parent, TEMP_PREFIX, path.name)
    try:
        write_bytes(temp, make_data())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def publish(temp: Path, final: Path) -> None:
    """Fsync the finished temporary directory and rename it to its final name (replacing an older one)."""
    fsync_dir(temp)
    if final.exists():
        discard(final)
    os.rename(temp, final)
    fsync_dir(final.parent)


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard(path: Path) -> None:
    """Remove a directory so that it vanishes from listings at once (rename, then delete)."""
    trash = hidden_sibling(path.parent, TRASH_PREFIX, path.name)
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def remove_stale_temporaries(root: Path) -> None:
    """Delete leftovers in ``root``: trash, half-written directories of dead processes (or this one), dead uploads."""
    for entry in root.iterdir():
        if not entry.name.startswith((TRASH_PREFIX, TEMP_PREFIX, STAGING_PREFIX)):
            continue
        pid = entry.name.rsplit("-", 2)[-2] if entry.name.count("-") >= 2 else ""
        owner_alive = pid.isdigit() and _process_alive(int(pid))
        if entry.name.startswith(TRASH_PREFIX) or not owner_alive or (
                entry.name.startswith(TEMP_PREFIX) and int(pid) == os.getpid() and entry.is_dir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
