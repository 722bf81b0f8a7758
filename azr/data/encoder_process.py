"""A run's corpus tokenised in a child process: ``encode`` here, ``python -m azr.data.encoder_process`` there.

Tokenising makes millions of small allocations (each encoding's tokens, offsets and masks, made in the tokenizers
library's worker threads, each with its own heap). Freed, they leave the heaps fragmented: about 60 MB of a long-lived
process (the app, a notebook) stays resident after a 1 MB corpus, and more after each run. In a child process that
memory goes away with it; the child costs about 0.2 s to start (tokenizers and numpy, not torch).

The parent writes the encoder's spec (one JSON line) and then the texts, each as its slices cut at line starts
(:func:`azr.data.files.line_slices`, so that neither side holds a long text whole), as frames of an 8-byte
little-endian header (the slice's byte count shifted left by one, its lowest bit set on a text's last slice) and
UTF-8 bytes; the child
answers with frames of an 8-byte byte count and the ids, a frame of 0 bytes at the end. A subprocess, not
``multiprocessing``: its spawn would import the parent's ``__main__`` (``app.py``) again in the child.
"""
from __future__ import annotations

import io
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from azr.data import tokens
from azr.data.files import LongText, slices_of
from azr.errors import DataError

HEADER = 8
LAST = 1  # the header's lowest bit: the slice ends its text


def encode(texts: Iterable[str | LongText], tokenizer) -> np.ndarray:
    """The ids of ``texts``, each followed by EOS, as one compact array: :func:`azr.data.tokens.encode`'s ids,
    tokenised in a child process for a fast tokenizer (in this one for a slow tokenizer, which has no serialised
    form to send). Raises DataError when the child fails (its last line of error says why)."""
    if not getattr(tokenizer, "is_fast", False):
        return tokens.encode(texts, tokenizer)
    spec = tokens.encoder_spec(tokenizer)
    with subprocess.Popen([sys.executable, "-P", "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=_child_environment()) as child:
        errors: list[bytes] = []
        failures: list[BaseException] = []
        feeding = _start(_send, child.stdin, spec, texts, failures)
        draining = _start(lambda: errors.append(child.stderr.read()))
        try:
            ids = _receive(child.stdout)
            child.wait()
        except BaseException:  # Ctrl+C or a stop while it tokenises: the child goes too
            child.kill()
            raise
        finally:
            feeding.join()
            draining.join()
    if failures:
        raise failures[0]
    if child.returncode != 0 or ids is None:
        raise DataError(f"Tokenising the corpus failed: {_reason(child.returncode, b''.join(errors))}")
    return np.frombuffer(ids, dtype=np.dtype(spec["dtype"]))


def _child_environment() -> dict[str, str]:
    """This environment with this azr's folder first on the child's import path (``-P`` leaves the working folder
    off it, so a file there named like a module cannot run)."""
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def _start(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name="azr-tokenising", daemon=True)
    thread.start()
    return thread


def _send(pipe: IO[bytes], spec: dict[str, Any], texts: Iterable[str | LongText], failures: list[BaseException]
          ) -> None:
    """Write the spec and the texts to the child. A child gone early ends it quietly (its exit status says why);
    any other failure is kept in ``failures`` for the caller to raise, after ending the child."""
    try:
        with pipe:
            pipe.write(json.dumps(spec).encode() + b"\n")
            for text in texts:
                slices = slices_of(text)
                piece = next(slices)
                for following in itertools.chain(slices, [None]):
                    data = piece.encode("utf-8", "surrogatepass")
                    pipe.write(((len(data) << 1) | (LAST if following is None else 0)).to_bytes(HEADER, "little")
                               + data)
                    piece = following
    except BrokenPipeError:
        pass
    except BaseException as error:  # noqa: BLE001 (raised by the caller, in its thread)
        failures.append(error)


def _receive(pipe: IO[bytes]) -> memoryview | None:
    """The ids the child sends, appended to one buffer as they come; None when it stops before its end frame."""
    buffer = io.BytesIO()
    while True:
        header = pipe.read(HEADER)
        if len(header) < HEADER:
            return None
        size = int.from_bytes(header, "little")
        if size == 0:
            return buffer.getbuffer()
        chunk = pipe.read(size)
        if len(chunk) < size:
            return None
        buffer.write(chunk)


def _reason(returncode: int, stderr: bytes) -> str:
    """Why the child failed, in one line: its last line of error, else how it ended."""
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    if lines:
        return lines[-1]
    if returncode < 0:
        return f"the tokenising process was ended by signal {-returncode} (out of memory?)."
    return f"the tokenising process ended with status {returncode} before sending every id."


# ---------------------------------------------------------------------------- the child


def _texts(pipe: IO[bytes]) -> Iterator[Iterator[str]]:
    """The texts the parent sends, each as its slices, read from the pipe as they are taken (each text's slices are
    to be taken before the next text)."""
    while len(header := pipe.read(HEADER)) == HEADER:
        yield _slices(pipe, header)


def _slices(pipe: IO[bytes], header: bytes) -> Iterator[str]:
    while True:
        value = int.from_bytes(header, "little")
        yield pipe.read(value >> 1).decode("utf-8", "surrogatepass")
        if value & LAST or len(header := pipe.read(HEADER)) < HEADER:
            return


def main() -> None:
    """Tokenise the texts on stdin with the spec on its first line; write the ids' frames to stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle; it ends this process
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    spec = json.loads(source.readline())
    encode_batch = tokens.fast_encoder(spec)
    for chunk in tokens.ids_chunks(_texts(source), encode_batch, spec["eos_token_id"], np.dtype(spec["dtype"])):
        sink.write(chunk.nbytes.to_bytes(HEADER, "little") + memoryview(chunk).cast("B"))
    sink.write(bytes(HEADER))
    sink.flush()


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 (reported to the parent in one line, which raises it as a DataError)
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
