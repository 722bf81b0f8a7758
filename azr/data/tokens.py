"""The corpus as one compact token file: texts tokenised once, in batches, and read back memory-mapped.

A file holds the token ids of the texts, each followed by EOS, as uint16 (a vocabulary of at most 65536) or
uint32, after a fixed header (magic, item size, token count, key). Its key is a hash of the corpus fingerprint,
the tokenizer's serialised form and the format, so another corpus or tokenizer never reads it; a file whose
header or size does not match is not trusted (it is tokenised again). Files are written whole (temporary file,
fsync, rename), so a crash leaves either no file or a complete one.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from azr.data.files import LINE_START, LongText, slices_of
from azr.utils.files import fsync_dir

FORMAT = b"AZRTOK01"
HEADER_BYTES = 64  # magic (8), item size (8), token count (8), key (32), padding
BATCH_TEXTS = 1024  # texts per call to the tokenizer
BATCH_CHARS = 2 * 2**20  # ... or fewer, when they are long (a batch's encodings take about 60 bytes a character)
PIECE_CHARS = 2**18  # a longer text is tokenised in pieces of about this size, cut at line starts
CUT_CONTEXT = 256  # characters each side of a cut that are tokenised to check it
TOKENS_DIR = "tokens"
SUFFIX = ".tokens"


def token_dtype(tokenizer) -> np.dtype:
    """uint16 when every id of ``tokenizer`` fits, else uint32."""
    return np.dtype(np.uint16 if len(tokenizer) <= 2**16 else np.uint32)


def tokenizer_identity(tokenizer) -> str:
    """A sha256 of what decides the ids ``tokenizer`` gives (its serialised model, normaliser, pre-tokeniser and
    special tokens); truncation and padding, which the batch call turns off, are left out."""
    if getattr(tokenizer, "is_fast", False):
        spec = json.loads(tokenizer.backend_tokenizer.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
    else:
        spec = {"class": type(tokenizer).__name__, "vocab": sorted(tokenizer.get_vocab().items())}
    spec["eos_token_id"] = tokenizer.eos_token_id
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def cache_key(corpus_fingerprint: str, tokenizer) -> bytes:
    """The 32-byte key of a token file: the corpus, the tokenizer and the format."""
    parts = (FORMAT.decode(), corpus_fingerprint, tokenizer_identity(tokenizer), token_dtype(tokenizer).str)
    return hashlib.sha256("\n".join(parts).encode()).digest()


def _batches(items: Iterator[tuple[str, bool]]) -> Iterator[list[tuple[str, bool]]]:
    """``items`` in consecutive batches of at most BATCH_TEXTS items and about BATCH_CHARS characters."""
    batch: list[tuple[str, bool]] = []
    chars = 0
    for item in items:
        if batch and (len(batch) == BATCH_TEXTS or chars + len(item[0]) > BATCH_CHARS):
            yield batch
            batch, chars = [], 0
        batch.append(item)
        chars += len(item[0])
    if batch:
        yield batch


def _cuts(text: str) -> list[int]:
    """Where to cut a text longer than PIECE_CHARS: about every PIECE_CHARS characters, each cut at the start of a
    line that begins with a non-space character (after a newline, where byte-level pre-tokenisers split anyway)."""
    cuts: list[int] = []
    while len(text) - (cuts[-1] if cuts else 0) > PIECE_CHARS:
        found = LINE_START.search(text, (cuts[-1] if cuts else 0) + PIECE_CHARS)
        if found is None or found.end() >= len(text):
            break
        cuts.append(found.end())
    return cuts


def _clean_cuts(text: str, cuts: list[int], encode_batch: Callable[[list[str]], list[list[int]]]) -> bool:
    """Whether tokenising each cut's neighbourhood in two pieces gives the ids of tokenising it whole, for every
    cut (a tokenizer that adds a prefix space or strips text does not; its texts are then tokenised whole)."""
    contexts = [(text[max(0, cut - CUT_CONTEXT):cut], text[cut:cut + CUT_CONTEXT]) for cut in cuts]
    ids = encode_batch([piece for left, right in contexts for piece in (left + right, left, right)])
    return all(ids[i] == ids[i + 1] + ids[i + 2] for i in range(0, len(ids), 3))


def _pieces(texts: Iterable[Iterable[str]], encode_batch: Callable[[list[str]], list[list[int]]]
            ) -> Iterator[tuple[str, bool]]:
    """The texts, each given as its slices (:func:`azr.data.files.line_slices`), as pieces to tokenise, each with
    whether it ends its text. A long text is tokenised in pieces of about PIECE_CHARS characters, cut at line
    starts, where each cut gives the ids of one call (so it is tokenised in parallel, and never held whole nor as one
    call's encoding); slices whose boundary does not are joined, and a slice whose cuts do not is kept whole."""
    for slices in texts:
        held: list[str] = []
        for piece in slices:
            left = held[-1][-CUT_CONTEXT:] if held else ""
            if held and _clean_cuts(left + piece[:CUT_CONTEXT], [len(left)], encode_batch):
                yield from _cut("".join(held), False, encode_batch)
                held = []
            held.append(piece)
        yield from _cut("".join(held), True, encode_batch)


def _cut(text: str, ends: bool, encode_batch: Callable[[list[str]], list[list[int]]]) -> Iterator[tuple[str, bool]]:
    """``text`` (``ends``: the end of its text) in pieces cut where that gives the ids of one call, else whole."""
    cuts = _cuts(text)
    if not cuts or not _clean_cuts(text, cuts, encode_batch):
        yield text, ends
        return
    bounds = [0, *cuts, len(text)]
    for index in range(len(bounds) - 1):
        yield text[bounds[index]:bounds[index + 1]], ends and index == len(bounds) - 2


def encoder_spec(tokenizer) -> dict[str, Any]:
    """What a fast ``tokenizer``'s batch encoding needs, as JSON-able values (another process rebuilds the encoder
    from them): its serialised backend, whether special tokens written in a text are split, its EOS id and id type."""
    return {"backend": tokenizer.backend_tokenizer.to_str(), "eos_token_id": tokenizer.eos_token_id,
            "split_special_tokens": bool(getattr(tokenizer, "split_special_tokens", False)),
            "dtype": token_dtype(tokenizer).str}


def fast_encoder(spec: dict[str, Any]) -> Callable[[list[str]], list[list[int]]]:
    """The tokenizers library's batch encoder of :func:`encoder_spec`'s ``spec``, without offsets, set as
    ``tokenizer(texts, add_special_tokens=False)`` sets it: no truncation or padding."""
    backend = Tokenizer.from_str(spec["backend"])
    backend.no_truncation()
    backend.no_padding()
    backend.encode_special_tokens = spec["split_special_tokens"]
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return lambda batch: [encoding.ids for encoding in encode(batch, add_special_tokens=False)]


def batch_encoder(tokenizer) -> Callable[[list[str]], list[list[int]]]:
    """A function giving the ids ``tokenizer(texts, add_special_tokens=False)`` gives: :func:`fast_encoder` for a
    fast tokenizer, else that call."""
    if not getattr(tokenizer, "is_fast", False):
        return lambda batch: tokenizer(batch, add_special_tokens=False)["input_ids"]
    return fast_encoder(encoder_spec(tokenizer))


def encode_chunks(texts: Iterable[str | LongText], tokenizer) -> Iterator[np.ndarray]:
    """The ids of ``texts``, each followed by EOS, as compact arrays, one per batch of texts."""
    return ids_chunks(map(slices_of, texts), batch_encoder(tokenizer), tokenizer.eos_token_id, token_dtype(tokenizer))


def ids_chunks(texts: Iterable[Iterable[str]], encode_batch: Callable[[list[str]], list[list[int]]], eos: int,
               dtype: np.dtype) -> Iterator[np.ndarray]:
    """The ids ``encode_batch`` gives ``texts`` (each given as its slices), each text's followed by ``eos``, as
    ``dtype`` arrays, one per batch."""
    for batch in _batches(_pieces(texts, encode_batch)):
        pieces = encode_batch([piece for piece, _ in batch])
        for piece, (_, last) in zip(pieces, batch):
            if last:
                piece.append(eos)
        count = sum(map(len, pieces))
        yield np.fromiter(itertools.chain.from_iterable(pieces), dtype=dtype, count=count)


def encode(texts: Iterable[str | LongText], tokenizer) -> np.ndarray:
    """The ids of ``texts``, each followed by EOS, as one compact array (the batch tokenizer's ids), tokenised in
    this process (:func:`azr.data.encoder_process.encode` tokenises a run's corpus in another).

    The chunks are appended to one growing buffer as they come (not kept and then concatenated), so the corpus'
    ids are held once, not twice, at the end."""
    buffer = io.BytesIO()
    for chunk in encode_chunks(texts, tokenizer):
        buffer.write(memoryview(chunk).cast("B"))
    return np.frombuffer(buffer.getbuffer(), dtype=token_dtype(tokenizer))


class TokenFile:
    """The token file of one corpus and tokenizer in ``directory`` (named by its key)."""

    def __init__(self, directory: Path, key: bytes, dtype: np.dtype) -> None:
        self.directory, self.key, self.dtype = Path(directory), key, np.dtype(dtype)
        self.path = self.directory / f"{key.hex()[:24]}{SUFFIX}"

    @classmethod
    def of(cls, directory: Path, corpus_fingerprint: str, tokenizer) -> TokenFile:
        """The file for ``tokenizer``'s ids of the corpus with ``corpus_fingerprint``."""
        return cls(directory, cache_key(corpus_fingerprint, tokenizer), token_dtype(tokenizer))

    def read(self) -> np.ndarray | None:
        """The ids, memory-mapped read-only; None when there is no file or it is not a whole one of this key."""
        try:
            with open(self.path, "rb") as handle:
                header = handle.read(HEADER_BYTES)
                size = os.fstat(handle.fileno()).st_size
        except OSError:
            return None
        if len(header) < HEADER_BYTES or header[:8] != FORMAT or header[24:56] != self.key:
            return None
        itemsize, count = int.from_bytes(header[8:16], "little"), int.from_bytes(header[16:24], "little")
        if itemsize != self.dtype.itemsize or size != HEADER_BYTES + count * itemsize or count == 0:
            return None
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=HEADER_BYTES, shape=(count,))

    def write(self, ids: np.ndarray) -> None:
        """Store ``ids`` whole (temporary file, fsync, rename) and remove the directory's other token files."""
        self.directory.mkdir(parents=True, exist_ok=True)
        temp = self.directory / f".tmp-{self.path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        header = FORMAT + self.dtype.itemsize.to_bytes(8, "little") + len(ids).to_bytes(8, "little") + self.key
        try:
            with open(temp, "xb") as handle:
                handle.write(header.ljust(HEADER_BYTES, b"\0"))
                handle.write(memoryview(np.ascontiguousarray(ids, dtype=self.dtype)).cast("B"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        finally:
            temp.unlink(missing_ok=True)
        for other in self.directory.glob(f"*{SUFFIX}"):
            if other != self.path:
                other.unlink(missing_ok=True)
        fsync_dir(self.directory)
