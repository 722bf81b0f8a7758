"""Training texts in files: .txt and .md (a file is one text), .jsonl (a `text` field per line) and .csv (a `text`
column), read a file at a time on every pass instead of held whole.

A corpus of hundreds of MB held as Python strings costs up to four bytes a character (two once a file has one
character outside Latin-1); read a file at a time, a run holds one file's texts while it fingerprints, tokenises
and stores the corpus. A file too large to hold as one text (a .txt or .md over LONG_TEXT_BYTES, or a .jsonl line
that long holding only its text, as a run's stored copy keeps one) is a :class:`LongText`, read in slices. Every
error is a DataError naming the file.
"""
from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from azr.errors import DataError

TEXT_SUFFIXES = (".txt", ".md", ".jsonl", ".csv")
BOM = codecs.BOM_UTF8
LONG_TEXT_BYTES = 2**24  # a .txt or .md file larger than this is a LongText: read in slices, never held whole
READ_BYTES = 2**20  # a LongText's file is read this many bytes at a time
SLICE_CHARS = 2**20  # a long text is handed on in slices of about this many characters (at most twice as many)
LINE_START = re.compile(r"\n(?=\S)")  # after a newline, before a non-space: where byte-level pre-tokenisers split
RECORD_HEAD, RECORD_TAIL = b'{"text": "', b'"}'  # a record of one text alone, as a run's stored corpus writes it
UNESCAPED_QUOTE = re.compile(rb'(\\*)"')  # a double quote and the backslashes before it (unescaped when even)
ESCAPED_NEWLINE = re.compile(rb'(?<!\\)(?:\\\\)*\\n')  # a JSON "\n" escape, not "\\" followed by "n"
CSV_FIELD_LIMIT = 2**31 - 1  # the csv module's default (128 KiB a field) refuses a long text in one cell


class StreamedTexts:
    """Texts read anew on each pass instead of held (iterate it as a list of texts); the first full pass
    (:meth:`summary`) checks them and gives their fingerprint and number, kept for later passes."""

    _summary: tuple[str, int] | None = None

    def __iter__(self) -> Iterator[str | LongText]:
        raise NotImplementedError

    def summary(self) -> tuple[str, int]:
        """The texts' fingerprint and number, from one pass that checks them (then kept)."""
        if self._summary is None:
            self._summary = summarise(self)
        return self._summary


class TextFiles(StreamedTexts):
    """The texts of training files, read a file at a time on each pass (a .txt or .md file over LONG_TEXT_BYTES as a
    :class:`LongText`, read in slices).

    Made from the paths after checking that each is a file of a known type; the first full pass checks their
    content. A file that changes after that pass is a DataError on the next one: the texts a run tokenises and
    stores are the texts it fingerprinted.
    """

    def __init__(self, paths: Iterable[str | Path] | str | Path) -> None:
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        if not self.paths:
            raise DataError("No training files given; pass at least one .txt, .md, .jsonl or .csv file.")
        for path in self.paths:
            _check_path(path)
        self._stamps: list[tuple[int, int]] | None = None

    def __iter__(self) -> Iterator[str | LongText]:
        for index, path in enumerate(self.paths):
            if self._stamps is not None and _stamp(path) != self._stamps[index]:
                raise DataError(f"{str(path)!r} changed while the run started; start it again.")
            yield from read_file(path)

    def summary(self) -> tuple[str, int]:
        if self._summary is None:
            stamps = [_stamp(path) for path in self.paths]
            super().summary()
            self._stamps = stamps
        return self._summary


def load_texts(paths: Iterable[str | Path] | str | Path) -> list[str]:
    """Read training texts from .txt/.md (whole file), .jsonl (`text` field) and .csv (`text` column) files into a
    list (:class:`TextFiles` reads them on each pass instead).

    Raises DataError naming the file for a missing file, a directory, a binary or undecodable file,
    an unsupported suffix or a file with no text.
    """
    return [text if isinstance(text, str) else text.read() for text in TextFiles(paths)]


def summarise(texts: Iterable[str | LongText]) -> tuple[str, int]:
    """A sha256 identifying the texts (order and boundaries included) and their number, in one pass."""
    digest, count = hashlib.sha256(), 0
    for text in texts:
        if isinstance(text, LongText):
            digest.update(text.size.to_bytes(8, "little"))
            read = 0
            for piece in text.slices():
                encoded = piece.encode("utf-8")
                digest.update(encoded)
                read += len(encoded)
            if read != text.size:
                raise DataError(f"{str(text.path)!r} changed while it was read; start again.")
        else:
            encoded = text.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "little"))
            digest.update(encoded)
        count += 1
    return digest.hexdigest(), count


class LongText:
    """The text of a .txt or .md file too large to hold (over LONG_TEXT_BYTES): read again on each use, decoded
    as it is read, and handed on in slices cut at line starts (:func:`line_slices`). ``size``: its UTF-8 bytes."""

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = path, size

    def slices(self, size: int | None = None) -> Iterator[str]:
        """The text in consecutive slices of about ``size`` characters (SLICE_CHARS when not given)."""
        return line_slices(self._chunks(), size or SLICE_CHARS)

    def read(self) -> str:
        """The whole text, held (as :func:`load_texts` gives it)."""
        return "".join(self.slices())

    def _chunks(self) -> Iterator[str]:
        decoder, offset, text_seen = codecs.getincrementaldecoder("utf-8")(), 0, False
        with open(self.path, "rb") as handle:
            while raw := handle.read(READ_BYTES):
                skip = len(BOM) if offset == 0 and raw.startswith(BOM) else 0
                chunk = _decoded(self.path, raw[skip:], offset + skip - len(decoder.getstate()[0]), decoder.decode)
                offset += len(raw)
                text_seen = text_seen or bool(chunk.strip())
                yield chunk
        _decoded(self.path, b"", offset - len(decoder.getstate()[0]), lambda data: decoder.decode(data, True))
        if not text_seen:
            raise DataError(f"{str(self.path)!r} contains no text.")


def line_slices(chunks: Iterable[str], size: int) -> Iterator[str]:
    """The text made of ``chunks`` in consecutive slices of ``size`` to ``2 * size`` characters (the last one
    shorter), each cut at a line start (LINE_START) where one falls in that range, else at ``2 * size``; an empty
    text is one empty slice."""
    buffer, start, sent = "", 0, False
    for chunk in chunks:
        buffer, start = buffer[start:] + chunk, 0
        while len(buffer) - start > 2 * size:
            found = LINE_START.search(buffer, start + size, start + 2 * size)
            end = found.end() if found else start + 2 * size
            yield buffer[start:end]
            start, sent = end, True
    if len(buffer) > start or not sent:
        yield buffer[start:]


def slices_of(text: str | LongText) -> Iterator[str]:
    """A text (held, or a LongText) as :func:`line_slices` cuts it."""
    return text.slices() if isinstance(text, LongText) else line_slices((text,), SLICE_CHARS)


def _stamp(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns


def _check_path(path: Path) -> None:
    if not path.exists():
        raise DataError(f"Training file {str(path)!r} does not exist.")
    if path.is_dir():
        raise DataError(f"{str(path)!r} is a directory; pass the text files inside it.")
    if path.suffix.lower() not in TEXT_SUFFIXES:
        raise DataError(f"{str(path)!r} has an unsupported type; use one of {', '.join(TEXT_SUFFIXES)}.")


def read_file(path: Path) -> Iterator[str | LongText]:
    """The non-blank texts of one training file, in order; raises DataError for a binary, undecodable or
    malformed file, or one with no text (after its last text, so each text is read once)."""
    suffix = path.suffix.lower()
    reader = _jsonl_texts if suffix == ".jsonl" else _csv_texts if suffix == ".csv" else _whole_text
    found = False
    for text in reader(path):
        if isinstance(text, LongText) or text.strip():  # a long text file says so itself when it is blank
            found = True
            yield text
    if not found:
        raise DataError(f"{str(path)!r} contains no text.")


def _decoded(path: Path, raw: bytes, offset: int, decode=lambda data: data.decode("utf-8")) -> str:
    """``raw`` (the file's bytes from ``offset``) as text; raises DataError for NUL bytes or bad UTF-8."""
    if b"\x00" in raw:
        raise DataError(f"{str(path)!r} looks like a binary file, not text.")
    try:
        return decode(raw)
    except UnicodeDecodeError as exc:
        raise DataError(f"{str(path)!r} is not valid UTF-8 text (byte {offset + exc.start}).") from exc


def _whole_text(path: Path) -> Iterator[str | LongText]:
    size = path.stat().st_size
    if size > LONG_TEXT_BYTES:
        with open(path, "rb") as handle:
            bom = handle.read(len(BOM)) == BOM
        yield LongText(path, size - (len(BOM) if bom else 0))
        return
    raw = path.read_bytes()
    skip = len(BOM) if raw.startswith(BOM) else 0
    yield _decoded(path, raw[skip:], skip)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """The file's lines, split at "\\n" only (str.splitlines() also breaks at U+2028, U+2029 and U+0085, which JSON
    keeps raw), numbered from 1 and decoded one at a time."""
    offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            skip = len(BOM) if number == 1 and raw.startswith(BOM) else 0
            yield number, _decoded(path, raw[skip:], offset + skip)
            offset += len(raw)


def _jsonl_texts(path: Path) -> Iterator[str | LongText]:
    for number, line in _jsonl_lines(path):
        if isinstance(line, LongText):
            yield line
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{str(path)!r} line {number} is not valid JSON: {exc.msg}.") from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f"{str(path)!r} line {number} has no string field 'text'.")
        yield record["text"]


def _jsonl_lines(path: Path) -> Iterator[tuple[int, str | LongRecord]]:
    """The lines of a .jsonl file as :func:`_lines` gives them, but a line over LONG_TEXT_BYTES that holds only
    ``{"text": "..."}`` (a run's stored copy of a long text) as a LongRecord, never read whole."""
    offset = 0
    with open(path, "rb") as handle:
        number = 0
        while raw := handle.readline(LONG_TEXT_BYTES):
            number += 1
            skip = len(BOM) if number == 1 and raw.startswith(BOM) else 0
            if raw.endswith(b"\n") or len(raw) < LONG_TEXT_BYTES:
                yield number, _decoded(path, raw[skip:], offset + skip)
                offset += len(raw)
                continue
            length, quotes, ending = _scan_long_line(handle, raw)
            newline = len(ending) - len(ending.rstrip(b"\r\n"))
            start, end = offset + skip, offset + length - newline
            if raw[skip:].startswith(RECORD_HEAD) and ending.rstrip(b"\r\n").endswith(RECORD_TAIL) and quotes == 4:
                yield number, LongRecord(path, start + len(RECORD_HEAD), end - len(RECORD_TAIL), number)
            else:  # another shape of record: read whole
                yield number, _decoded(path, _read_range(path, start, end), start)
            offset += length


def _scan_long_line(handle, part: bytes) -> tuple[int, int, bytes]:
    """Read to the end of a long line whose first part is ``part``: its length in bytes, its unescaped double
    quotes, and its last bytes."""
    length, quotes, backslashes, ending = 0, 0, 0, b""
    while part:
        for match in UNESCAPED_QUOTE.finditer(part):
            quotes += (len(match.group(1)) + (backslashes if match.start() == 0 else 0)) % 2 == 0
        trailing = len(part) - len(part.rstrip(b"\\"))
        backslashes = trailing + (backslashes if trailing == len(part) else 0)
        length, ending = length + len(part), (ending + part)[-16:]
        part = b"" if part.endswith(b"\n") else handle.readline(LONG_TEXT_BYTES)
    return length, quotes, ending


def _read_range(path: Path, start: int, end: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(start)
        return handle.read(end - start)


class LongRecord(LongText):
    """A .jsonl line too long to hold that holds only ``{"text": "..."}``, as a run's stored corpus keeps a long
    text: the JSON string's bytes (``start`` to ``end``) decoded a slice at a time, each slice ending after an
    escaped newline (never inside an escape)."""

    def __init__(self, path: Path, start: int, end: int, number: int) -> None:
        self.path, self.start, self.end, self.number = path, start, end, number

    @functools.cached_property
    def size(self) -> int:
        """The text's UTF-8 bytes (read once to count them)."""
        return sum(len(piece.encode("utf-8")) for piece in self.slices())

    def _chunks(self) -> Iterator[str]:
        carry, left = b"", self.end - self.start
        with open(self.path, "rb") as handle:
            handle.seek(self.start)
            while left:
                raw = handle.read(min(READ_BYTES, left))
                left -= len(raw)
                data = carry + raw
                cut = max((match.end() for match in ESCAPED_NEWLINE.finditer(data)), default=0) if left else len(data)
                carry = data[cut:]
                if cut:
                    yield self._decoded(data[:cut])

    def _decoded(self, escaped: bytes) -> str:
        try:
            return json.loads(b'"' + escaped + b'"')
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{str(self.path)!r} line {self.number} is not valid JSON text: {exc}.") from exc


def _csv_texts(path: Path) -> Iterator[str]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))  # raised, never lowered: it is per process
    reader = csv.DictReader(line for _, line in _lines(path))
    try:
        if not reader.fieldnames or "text" not in reader.fieldnames:
            raise DataError(f"{str(path)!r} has no 'text' column (columns: {', '.join(reader.fieldnames or [])}).")
        for row in reader:
            yield row["text"] or ""
    except csv.Error as exc:
        raise DataError(f"{str(path)!r} line {reader.line_num} is not valid CSV: {exc}.") from exc
