"""Training texts: the default corpus, token windows, the train/validation split and the resumable sampler."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from azr.data.encoder_process import encode
from azr.data.files import LongText, StreamedTexts, TextFiles, summarise
from azr.errors import DataError

DEFAULT_CORPUS = "tinyshakespeare.txt"
VAL_EVERY_NTH_WINDOW = 10  # every 10th window goes to validation: a 90/10 split


def default_corpus() -> list[str]:
    """Return the embedded default corpus (tiny Shakespeare, in azr/corpus/) as a one-item list."""
    return [resources.files("azr.data.embedded").joinpath(DEFAULT_CORPUS).read_text(encoding="utf-8")]


def check_texts(texts: Any) -> list[str] | StreamedTexts:
    """Return the non-blank ``texts`` as a list (streamed texts as they are: they are checked as they are read);
    raises DataError for no text or non-strings."""
    if isinstance(texts, StreamedTexts):
        return texts
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise DataError("The list of training texts is empty; give at least one text.")
    if not all(isinstance(t, str) for t in texts):
        raise DataError("Training texts must be strings.")
    texts = [t for t in texts if t.strip()]  # as training files are read, so a stored corpus reads back equal
    if not texts:
        raise DataError("The training texts are all empty.")
    return texts


def describe(texts: Iterable[str]) -> tuple[str, int]:
    """The texts' fingerprint (a sha256 identifying them, order and boundaries included) and their number; read
    once for streamed texts."""
    return texts.summary() if isinstance(texts, StreamedTexts) else summarise(texts)


def fingerprint(texts: Iterable[str]) -> str:
    """Return a sha256 identifying the texts (order and boundaries included)."""
    return describe(texts)[0]


class WindowRows:
    """Windows of a token array as rows, read like a (rows, width) int64 tensor: indexing (rows, or rows and a
    column slice) returns an int64 tensor of just those tokens, so a memory-mapped corpus is never copied whole."""

    dtype = torch.long

    def __init__(self, tokens: np.ndarray, starts: torch.Tensor, width: int) -> None:
        self.tokens, self.starts, self.width = tokens, starts, width

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.starts), self.width))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, key) -> torch.Tensor:
        rows, columns = key if isinstance(key, tuple) else (key, slice(None))
        starts, offsets = self.starts[rows], torch.arange(self.width)[columns]
        return read_tokens(self.tokens, starts + offsets if offsets.dim() == 0 else starts.unsqueeze(-1) + offsets)

    def flat(self, limit: int | None = None) -> torch.Tensor:
        """Every row's tokens, in row order, as one 1-D int64 tensor (a copy of the rows); with ``limit``, when the
        rows hold more tokens than that, only evenly spaced rows holding about ``limit`` tokens (a sample read in
        bounded time and memory, the same every time)."""
        take = len(self) if limit is None else max(1, limit // self.width)
        if take >= len(self):
            return self[:].reshape(-1)
        return self[torch.arange(take) * len(self) // take].reshape(-1)


def read_tokens(tokens: np.ndarray, positions: torch.Tensor) -> torch.Tensor:
    """The ids at ``positions`` of ``tokens`` (compact, maybe memory-mapped) as an int64 tensor of their shape."""
    return torch.from_numpy(np.asarray(tokens[positions.numpy()], dtype=np.int64))


@dataclass
class TokenWindows:
    """The corpus as fixed-length token windows, split 90/10 into train and validation.

    ``tokens`` holds the corpus' ids (each text followed by EOS) compactly, in memory or memory-mapped from the
    run's token file; windows are cut from it on use. ``shift_limits`` says per training window how far a
    random-offset sample may move its start (negative: backwards) without reading a validation window's tokens.
    """

    tokens: np.ndarray
    train: WindowRows  # (n_train, seq_len + 1)
    val: WindowRows  # (n_val, seq_len + 1)
    shift_limits: torch.Tensor  # (n_train,) the largest shift, signed

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    @property
    def stream(self) -> torch.Tensor:
        """The windows' tokens in corpus order (the tail too short for a window left out), as an int64 tensor."""
        return read_tokens(self.tokens, torch.arange(len(self.tokens) // self.train.width * self.train.width))

    def max_id(self) -> int:
        """The largest id in the windows."""
        return int(self.tokens[: len(self.tokens) // self.train.width * self.train.width].max())

    def draw(self, sampler: ResumableSampler, batch_size: int, sampling: str = "random_offset") -> torch.Tensor:
        """Return the sampler's next batch of training windows: at random offsets, or as cut ("windows")."""
        indices, shifts = sampler.next_batch(batch_size)
        if sampling == "windows":
            return self.train[indices]
        starts = self.train.starts[indices] + (shifts * self.shift_limits[indices]).long()
        return read_tokens(self.tokens, starts[:, None] + torch.arange(self.train.width))

    @classmethod
    def from_texts(cls, texts: list[str], tokenizer, seq_len: int) -> TokenWindows:
        """Tokenize ``texts`` (each followed by EOS) and cut windows of ``seq_len + 1`` tokens.

        Raises DataError when the corpus is too short for one training window.
        """
        return cls.from_tokens(encode(texts, tokenizer), seq_len)

    @classmethod
    def from_tokens(cls, tokens: np.ndarray, seq_len: int) -> TokenWindows:
        """Cut windows of ``seq_len + 1`` tokens from the corpus' ids; raises DataError when there is not one."""
        window = seq_len + 1
        count = len(tokens) // window
        if count < 1:
            raise DataError(
                f"The corpus has {len(tokens)} tokens but one training window needs {window}; "
                "add more text or use a smaller max_seq_len."
            )
        is_val = (torch.arange(count) % VAL_EVERY_NTH_WINDOW) == VAL_EVERY_NTH_WINDOW - 1
        if count < VAL_EVERY_NTH_WINDOW:
            is_val[:] = False
        starts = torch.arange(count) * window
        after = torch.cat([~is_val[1:], torch.tensor([False])])[~is_val]  # the next window is a training one
        before = torch.cat([torch.tensor([False]), ~is_val[:-1]])[~is_val]
        limits = torch.where(after, window - 1, torch.where(before, -(window - 1), 0))
        return cls(tokens, WindowRows(tokens, starts[~is_val], window), WindowRows(tokens, starts[is_val], window),
                   limits)


class ResumableSampler:
    """Visits training windows in a seeded random order, epoch after epoch, each with a seeded random shift
    (a fraction in [0, 1): how far into its neighbour a random-offset sample starts).

    The position is counted in samples (epoch, offset), so it survives a change of batch size; the order and
    the shifts are functions of (seed, epoch), so the position is all a resume needs.
    """

    def __init__(self, num_samples: int, seed: int, epoch: int = 0, offset: int = 0) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = epoch
        self.offset = offset
        self._order = self._permutation(epoch)

    def _permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.num_samples, generator=generator)
        self._shifts = torch.rand(self.num_samples, generator=generator, dtype=torch.float64)
        return order

    def next_indices(self, batch_size: int) -> torch.Tensor:
        """Return the next ``batch_size`` window indices, crossing into new epochs as needed."""
        return self.next_batch(batch_size)[0]

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the next ``batch_size`` window indices and their shifts, crossing into new epochs as needed."""
        parts, shifts = [], []
        needed = batch_size
        while needed:
            take = min(needed, self.num_samples - self.offset)
            parts.append(self._order[self.offset : self.offset + take])
            shifts.append(self._shifts[self.offset : self.offset + take])
            self.offset += take
            needed -= take
            if self.offset == self.num_samples:
                self.epoch += 1
                self.offset = 0
                self._order = self._permutation(self.epoch)
        return torch.cat(parts), torch.cat(shifts)

    def state_dict(self) -> dict[str, int]:
        """Return the position as plain ints."""
        return {"epoch": self.epoch, "offset": self.offset, "seed": self.seed, "num_samples": self.num_samples}

    def load_state_dict(self, position: dict[str, int]) -> None:
        """Continue from a position returned by :meth:`state_dict` (of a sampler over the same samples)."""
        self.epoch, self.offset = position["epoch"], position["offset"]
        self._order = self._permutation(self.epoch)


Texts = list[str] | StreamedTexts | Callable[[], TextFiles]  # the texts, or a function reading them when needed


def texts_of(texts: Texts) -> list[str] | StreamedTexts:
    """The texts themselves (read now when ``texts`` is a function reading them)."""
    return texts() if callable(texts) else texts


def save_corpus(texts: Texts, directory: str | Path, digest: str | None = None) -> str:
    """Store ``texts`` once under ``directory/corpus/`` (named by fingerprint); return the relative path.

    With their fingerprint ``digest`` known, ``texts`` may be a function reading them, called only when the file is
    not stored yet (a resume in its own run reads nothing)."""
    relative = f"corpus/{(digest or fingerprint(texts))[:16]}.jsonl"
    target = Path(directory) / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_suffix(f".tmp{os.getpid()}")
        try:
            with open(temp, "w", encoding="utf-8") as handle:
                for text in texts_of(texts):
                    _write_record(handle, text)
            temp.replace(target)
        finally:
            temp.unlink(missing_ok=True)
    return relative


def _write_record(handle: IO[str], text: str | LongText) -> None:
    """Write ``text`` as one JSON line ``{"text": ...}``; a LongText a slice at a time (JSON escapes each character
    on its own, so the escaped slices joined are the escaped text)."""
    if isinstance(text, str):
        handle.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        return
    handle.write('{"text": "')
    for piece in text.slices():
        handle.write(json.dumps(piece, ensure_ascii=False)[1:-1])
    handle.write('"}\n')
