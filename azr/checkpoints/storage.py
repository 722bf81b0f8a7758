"""Atomic directory writes: files written, then fsynced and hashed, and published with one rename.

Files are hashed with BLAKE3 (:data:`CHECKSUM`; the ``blake3`` package, several threads for a large file): at
about 4 GB/s per core here against sha256's 0.9, it keeps the check of every byte off a save's and a load's
critical path (BENCHMARKS.md, "Checksums: BLAKE3 in format 3"). Checkpoints of formats 1 and 2 recorded sha256,
which :func:`checksum` still computes for them.

A directory is built under a hidden temporary name (``.tmp-<name>-<pid>-<random>``) and renamed into place
only when every file in it is on disk, so a crash at any moment leaves either nothing or the whole directory.
Deleted directories are renamed to ``.trash-…`` first, so they vanish from listings at once. Nothing here follows a
symbolic link out of a directory: :func:`link_out` finds one, deleting removes the link itself, never its target.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import mmap
import os
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar, Union

import blake3

from azr.utils.files import fsync_dir

TEMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
STAGING_PREFIX = ".push-"
WORKERS = 8
MAP_THRESHOLD = 1 << 20  # files at least this large are mapped, not read
SPLIT_HASH_BYTES = 1 << 20  # a buffer at least this large is hashed in several threads
CHECKSUM = "blake3"  # what new files are hashed with; "sha256" for checkpoints of formats 1 and 2
HASH_WINDOW = 16 << 20  # a file is hashed this much of its map at a time (as fast as the whole map, see file_checksum)
DONT_NEED = getattr(mmap, "MADV_DONTNEED", None)

FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
AT_FDCWD, RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>

T = TypeVar("T")
Buffer = Union[bytes, bytearray, memoryview, mmap.mmap]


def hidden_sibling(root: Path, prefix: str, name: str) -> Path:
    """Return a new hidden path in ``root`` that names this process, so leftovers can be cleaned up."""
    return root / f"{prefix}{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_fsync(path: Path, data: Buffer) -> None:
    """Write ``data`` to a new file and fsync it."""
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_new(path: Path, data: Buffer) -> None:
    """Write ``data`` to a new file, not yet durable (no fsync: it goes to the page cache)."""
    with open(path, "xb") as handle:
        handle.write(data)


def checksum(data: Buffer, algorithm: str = CHECKSUM) -> str:
    """Return the hex checksum of ``data`` (``algorithm``: "blake3" or "sha256")."""
    hasher = _hasher(algorithm, large=memoryview(data).nbytes >= SPLIT_HASH_BYTES)
    hasher.update(data)
    return hasher.hexdigest()


def _hasher(algorithm: str, large: bool):
    """A new hasher of ``algorithm``; BLAKE3 hashes ``large`` inputs in several threads."""
    if algorithm == "sha256":
        return hashlib.sha256()
    return blake3.blake3(max_threads=blake3.blake3.AUTO if large else 1)


def read_buffer(path: Path) -> Buffer:
    """Return a file's bytes: small files read, large ones mapped read-only (no copy; nothing is read twice)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < MAP_THRESHOLD:
            return handle.read()
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


def file_checksum(path: Path, algorithm: str = CHECKSUM) -> str:
    """Return the checksum of a file, read through a memory map one window at a time: each window's pages leave
    the process once hashed, so checking a file of gigabytes does not add gigabytes to its resident memory."""
    hasher = _hasher(algorithm, large=True)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:  # an empty file cannot be mapped
            return hasher.hexdigest()
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
            for start in range(0, size, HASH_WINDOW):
                hasher.update(view[start:start + HASH_WINDOW])
                if DONT_NEED is not None:
                    mapped.madvise(DONT_NEED, start, min(HASH_WINDOW, size - start))
    return hasher.hexdigest()


def fsync_and_hash(path: Path) -> str:
    """Fsync a file written by someone else, with the mode a new file of this process gets (safetensors writes
    0o600: see :func:`new_file_mode`), and return its checksum."""
    os.chmod(path, new_file_mode(), follow_symlinks=False)
    fsync_file(path)
    return file_checksum(path)


def new_file_mode() -> int:
    """The mode of a new ordinary file of this process: 0o666 less the umask. Every file of a checkpoint gets it,
    also those that a library writes through a private temporary file (safetensors >= 0.8 leaves them 0o600)."""
    try:
        with open("/proc/self/status") as status:  # Linux: the umask, read without changing it
            mask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)  # elsewhere: set and restored at once
        os.umask(mask)
    return 0o666 & ~mask


def in_parallel(function: Callable[[Path], T], paths: list[Path], workers: int = WORKERS) -> dict[str, T]:
    """Return ``{path.name: function(path)}``, computed in up to ``workers`` threads (hashing, writing and fsync
    release the GIL)."""
    with ThreadPoolExecutor(max_workers=min(workers, len(paths) or 1)) as pool:
        return dict(zip((p.name for p in paths), pool.map(function, paths)))


def write_file_atomically(path: Path, make_data: Callable[[], bytes]) -> None:
    """Create ``path`` with ``make_data()`` unless it exists, atomically (temporary file, fsync, rename)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = hidden_sibling(path.parent, TEMP_PREFIX, path.name)
    try:
        write_fsync(temp, make_data())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def publish(temp: Path, final: Path) -> None:
    """Fsync the finished temporary directory and rename it to its final name; an older directory of that name is
    replaced so that the name always holds a complete version (see :func:`_replace`)."""
    fsync_dir(temp)
    if final.is_symlink() or final.exists():
        _replace(temp, final)
    else:
        os.rename(temp, final)
        fsync_dir(final.parent)


def _replace(temp: Path, final: Path) -> None:
    """Put ``temp`` in the place of ``final`` and delete the older version: swapped in one system call where the
    file system can, else renamed aside just before and put back if the second rename is interrupted."""
    older = hidden_sibling(final.parent, TRASH_PREFIX, final.name)
    if _exchange(temp, final):
        os.rename(temp, older)  # the old version, now under the temporary name, goes to the trash
    else:
        os.rename(final, older)
        try:
            os.rename(temp, final)
        except BaseException:  # a Ctrl+C between the renames: the name keeps its older version
            os.rename(older, final)
            raise
    fsync_dir(final.parent)
    _remove(older)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two directory entries atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where the system
    or the file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(first))


def copy_directory(source: Path, final: Path) -> None:
    """Copy the files of ``source`` into a new directory ``final`` atomically (each file fsynced)."""
    temp = hidden_sibling(final.parent, TEMP_PREFIX, final.name)
    temp.mkdir()
    try:
        in_parallel(lambda p: write_fsync(temp / p.name, p.read_bytes()), [p for p in source.iterdir() if p.is_file()])
        publish(temp, final)
    except BaseException:
        discard(temp)
        raise


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def discard(path: Path) -> None:
    """Remove a directory so that it vanishes from listings at once (rename, then delete); a symbolic link is
    removed itself, never what it points to."""
    trash = hidden_sibling(path.parent, TRASH_PREFIX, path.name)
    os.rename(path, trash)
    _remove(trash)


def same_file(first: Path, second: Path) -> bool:
    """True when both paths are one file on disk (hard links of each other)."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def link_out(directory: Path) -> Path | None:
    """Return ``directory`` when it is a symbolic link, else its first entry that is one, else None.

    In a Hugging Face cache snapshot, a link to a blob of the same cached repo (how ``huggingface_hub`` stores a
    download) does not count: what it leads to is a plain file of that repo's ``blobs/`` folder.
    """
    if directory.is_symlink():
        return directory
    blobs = _cache_blobs(directory)
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_symlink() and not (blobs and _is_blob(Path(entry.path), blobs)):
                return Path(entry.path)
    return None


def is_link_out(path: Path) -> bool:
    """True when ``path`` is a symbolic link that is not a Hugging Face cache snapshot's link to its own blob."""
    if not path.is_symlink():
        return False
    blobs = _cache_blobs(path.parent)
    return not (blobs and _is_blob(path, blobs))


def contained_file(root: Path, relative: str) -> Path | None:
    """Return ``root / relative`` when it is a file reached without a symbolic link out (None: no such file);
    raises ValueError when ``relative`` leads out of ``root`` (absolute, ``..``, or through a link)."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or ".." in parts or \
            any(is_link_out(root.joinpath(*parts[:i + 1])) for i in range(len(parts))):
        raise ValueError(f"{relative!r} is not a file inside {str(root)!r}")
    path = root.joinpath(*parts)
    return path if path.is_file() else None


def _cache_blobs(directory: Path) -> Path | None:
    """Return ``<repo>/blobs`` when ``directory`` lies in ``<repo>/snapshots/<revision>/`` of a Hugging Face cache."""
    for parent in directory.parents:
        if parent.name == "snapshots":
            blobs = parent.parent / "blobs"
            return blobs if blobs.is_dir() and not blobs.is_symlink() else None
    return None


def _is_blob(link: Path, blobs: Path) -> bool:
    target = link.resolve()
    return target.parent == blobs.resolve() and target.is_file()


def is_full_disk(exc: BaseException) -> bool:
    """True for a write that failed because the disk (or the user's quota) is full: an OSError, or an error of a
    library that carries the system's message (safetensors: "No space left on device (os error 28)")."""
    if isinstance(exc, OSError) and exc.errno in FULL_DISK_ERRNOS:
        return True
    return any(os.strerror(code) in str(exc) for code in FULL_DISK_ERRNOS)


def free_space(path: Path) -> int:
    """Bytes free on the disk holding ``path`` (or its nearest existing parent)."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    return shutil.disk_usage(existing).free


def remove_stale_temporaries(root: Path) -> None:
    """Delete leftovers in ``root``: trash, half-written directories of dead processes (or this one), dead uploads."""
    for entry in root.iterdir():
        if not entry.name.startswith((TRASH_PREFIX, TEMP_PREFIX, STAGING_PREFIX)):
            continue
        pid = entry.name.rsplit("-", 2)[-2] if entry.name.count("-") >= 2 else ""
        owner_alive = pid.isdigit() and _process_alive(int(pid))
        if entry.name.startswith(TRASH_PREFIX) or not owner_alive or (
                entry.name.startswith(TEMP_PREFIX) and int(pid) == os.getpid() and entry.is_dir()):
            _remove(entry)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
