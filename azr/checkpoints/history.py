"""A run's per-iteration history, kept as columns and stored in immutable, content-addressed chunks.

The history grows by one record per iteration. A checkpoint must not rewrite it all (a million iterations would
make every save slower than the last), so it is stored as full chunks of :data:`CHUNK_RECORDS` records, each a
safetensors file named by its sha256 under the run's ``history/`` folder and shared by every checkpoint of the
run, plus the records after the last full chunk (the *tail*) in the checkpoint itself. A save writes the tail and
at most the one chunk that filled up since the previous save. numpy and safetensors are imported by the two methods
that encode and decode chunks, so that listing and verifying checkpoints (``azr list``) does without them.
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
from array import array
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

COLUMNS = ("iteration", "loss", "val_loss", "reward", "lr", "time", "seq_rep_4", "distinct_2", "heldout_reward")
REQUIRED = COLUMNS[:6]  # older histories lack the later columns: those read as missing
CHUNK_RECORDS = 4096
CHUNK_DIR = "history"
CHUNK_SUFFIX = ".safetensors"


class History(Sequence):
    """Records ``{"iteration", "loss", "val_loss", "reward", "lr", "time"}``; missing values are None.

    Behaves as a read-only sequence of dicts; :meth:`append` and :meth:`set_last` change it.
    """

    def __init__(self) -> None:
        self._columns = {name: array("d") for name in COLUMNS}
        self._digests: list[str] = []  # sha256 of each full chunk, computed once

    def __len__(self) -> int:
        return len(self._columns["iteration"])

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._record(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("history index out of range")
        return self._record(index)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self._record(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def _record(self, index: int) -> dict[str, Any]:
        record = {name: _value(column[index]) for name, column in self._columns.items()}
        record["iteration"] = int(record["iteration"])
        return record

    def append(self, record: dict[str, Any]) -> None:
        """Add one iteration's record (keys of :data:`COLUMNS`; absent or None values are stored as missing)."""
        for name, column in self._columns.items():
            value = record.get(name)
            column.append(math.nan if value is None else float(value))

    def set_last(self, name: str, value: float | None) -> None:
        """Set one field of the newest record."""
        self._columns[name][-1] = math.nan if value is None else float(value)
        del self._digests[(len(self) - 1) // CHUNK_RECORDS:]

    def since(self, iteration: int) -> list[dict[str, Any]]:
        """Return the records after ``iteration`` (those with a larger iteration number)."""
        iterations = self._columns["iteration"]
        start = len(iterations)
        while start and iterations[start - 1] > iteration:
            start -= 1
        return self[start:]

    # ------------------------------------------------------------------ storage

    def encode(self, start: int, stop: int) -> bytes:
        """Return records ``start:stop`` as a safetensors file (one float64 column per field)."""
        import numpy as np  # noqa: PLC0415 - see the module docstring
        from safetensors.numpy import save as save_columns  # noqa: PLC0415

        return save_columns({name: np.frombuffer(column[start:stop], dtype=np.float64)  # a slice copies
                             for name, column in self._columns.items()})  # (no view: appends stay possible)

    def extend_encoded(self, data: bytes) -> None:
        """Append the records of a file made by :meth:`encode`; raises ValueError when it is not one."""
        import numpy as np  # noqa: PLC0415 - see the module docstring
        from safetensors.numpy import load as load_columns  # noqa: PLC0415

        columns = load_columns(data)
        if not set(REQUIRED) <= set(columns) <= set(COLUMNS) or len({len(c) for c in columns.values()}) != 1:
            raise ValueError("not a history file")
        if any(values.dtype != np.float64 or values.ndim != 1 for values in columns.values()):
            raise ValueError("not a history file")
        length = len(columns["iteration"])
        for name in COLUMNS:
            values = columns.get(name, np.full(length, math.nan))
            self._columns[name].frombytes(values.tobytes())

    def chunk_digests(self) -> list[str]:
        """Return the sha256 of every full chunk (each is computed once: full chunks never change)."""
        for number in range(len(self._digests), len(self) // CHUNK_RECORDS):
            self._digests.append(hashlib.sha256(self.chunk(number)).hexdigest())
        return list(self._digests)

    def chunk(self, number: int) -> bytes:
        """Return full chunk ``number``, encoded."""
        return self.encode(number * CHUNK_RECORDS, (number + 1) * CHUNK_RECORDS)

    def tail(self) -> bytes:
        """Return the records after the last full chunk, encoded."""
        return self.encode(len(self) // CHUNK_RECORDS * CHUNK_RECORDS, len(self))

    def frozen(self) -> FrozenHistory:
        """Return the history as it is now, for a save written while the run goes on (see :class:`FrozenHistory`)."""
        return FrozenHistory(self, len(self), self.chunk_digests())

    @classmethod
    def from_chunks(cls, chunks: list[bytes], digests: list[str], tail: bytes) -> History:
        """Rebuild a history from its full chunks (whose sha256 are ``digests``) and its tail."""
        history = cls()
        for data in [*chunks, tail]:
            history.extend_encoded(data)
        history._digests = list(digests)
        return history


class FrozenHistory:
    """A history as it is at one moment (its first ``length`` records), read later while the live one grows.

    Its records are read from the live history when they are written: records never change once a newer one is
    appended (only the newest one does, and a save takes place between steps), and :meth:`History.encode` copies
    them without locking the columns.
    """

    def __init__(self, live: History, length: int, digests: list[str]) -> None:
        self._live, self._length, self._digests = live, length, digests

    def __len__(self) -> int:
        return self._length

    def chunk_digests(self) -> list[str]:
        """Return the sha256 of every full chunk."""
        return list(self._digests)

    def chunk(self, number: int) -> bytes:
        """Return full chunk ``number``, encoded."""
        return self._live.chunk(number)

    def tail(self) -> bytes:
        """Return the records after the last full chunk, encoded."""
        return self._live.encode(self._length // CHUNK_RECORDS * CHUNK_RECORDS, self._length)

    def encoded(self, chunks: list[int]) -> EncodedHistory:
        """Return this history for another process: encoded, with the full chunks of these numbers (the ones its
        writer has to store)."""
        return EncodedHistory(self._length, self._digests, self.tail(),
                              {number: self.chunk(number) for number in chunks})


@dataclass
class EncodedHistory:
    """A frozen history as bytes, with the full chunks its writer has to store (the others are stored already)."""

    length: int
    digests: list[str]
    tail_bytes: bytes
    chunks: dict[int, bytes]

    def __len__(self) -> int:
        return self.length

    def chunk_digests(self) -> list[str]:
        return list(self.digests)

    def chunk(self, number: int) -> bytes:
        return self.chunks[number]

    def tail(self) -> bytes:
        return self.tail_bytes


_chunk_digests: dict[tuple[int, int, int, int], Future] = {}  # (device, inode, size, mtime) -> its sha256
_chunk_lock = threading.Lock()
WORKERS = 8


def chunk_problem(chunk_dir: Path, digests: list[str]) -> str | None:
    """Return what is wrong with the stored chunks ``digests`` (one missing, or not matching its sha256), or None.

    Each unchanged chunk file is hashed once per process, even when several threads ask at the same time: the
    chunks of a run are shared by all its checkpoints, so a listing would otherwise hash them once per checkpoint.
    """
    if not digests:
        return None
    present = set(os.listdir(chunk_dir)) if chunk_dir.is_dir() else set()
    for digest in digests:
        if digest + CHUNK_SUFFIX not in present:
            return f"history chunk {digest} is missing"
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:  # only the chunks not hashed yet are submitted
        actual = [_chunk_sha256(os.path.join(chunk_dir, digest + CHUNK_SUFFIX), pool) for digest in digests]
        for digest, future in zip(digests, actual):
            if future.result() != digest:
                return f"checksum mismatch in history chunk {digest[:12]}"
    return None


def _chunk_sha256(path: str, pool: ThreadPoolExecutor) -> Future:
    stat = os.stat(path)
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _chunk_lock:
        if key not in _chunk_digests:
            _chunk_digests[key] = pool.submit(_file_sha256, path, key)
        return _chunk_digests[key]


def _file_sha256(path: str, key: tuple[int, int, int, int]) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:  # not remembered: the next verification tries again
        with _chunk_lock:
            _chunk_digests.pop(key, None)
        return None


def forget_chunk_digests() -> None:
    """Forget the chunks hashed so far in this process (the next verification hashes them again)."""
    _chunk_digests.clear()


def chunk_path(chunk_dir: Path, digest: str) -> Path:
    """Return where the chunk with this sha256 is stored."""
    return chunk_dir / f"{digest}{CHUNK_SUFFIX}"


def _value(number: float) -> float | None:
    return None if math.isnan(number) else number
