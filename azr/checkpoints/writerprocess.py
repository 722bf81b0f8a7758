"""A process that writes background checkpoints, so that writing takes neither the training process's GIL nor
its CPU priority (cf. PyTorch DCP's process-based ``async_save``).

The training process stages a save into a :class:`~azr.checkpoints.sharedarena.SharedArena` and sends the writer the
arena's file descriptor once, then per save a pickle of the checkpoint's contents in which every staged tensor is only
its place in the arena. The writer builds the model's skeleton on the meta device (``save_pretrained`` needs a model
object, not its weights), writes the checkpoint atomically with :func:`azr.checkpoints.writing.write_contents`, verifies
it and answers with its path. It runs at a lower CPU priority, ignores Ctrl+C (its parent decides when to stop) and
exits as soon as its parent does, mid-write or not: a temporary is all that is left, as with a thread.

Kept rather than torch.distributed.checkpoint's ``async_save``, which blocked longer, used more memory, writes
neither atomically nor pickle-free state, and needs a process group: BENCHMARKS.md, "DCP async_save against the
project's writer".

Writers are pooled per process: a run takes an idle one (or starts one, which imports torch and transformers in
the background), and gives it back at its end.
"""
from __future__ import annotations

import io
import itertools
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe
from multiprocessing.reduction import recv_handle, send_handle
from pathlib import Path
from typing import Any

import torch

from azr.checkpoints.sharedarena import SharedArena, supported
from azr.errors import ConfigError

LAUNCHER = "azr.checkpoints.writerlaunch"  # the module a writer process runs: it watches its parent first

WRITERS = ("auto", "process", "thread", "pagecache")  # the values of AZR_SAVE_WRITER
NICENESS = 10  # below training, so that on a busy CPU the write takes what training leaves


def lower_priority(who: int, niceness: int = NICENESS) -> None:
    """Run process or thread ``who`` at ``niceness``, or at its own where that is lower still (never above a
    training process the user niced further: raising a priority also needs privileges a user lacks)."""
    os.setpriority(os.PRIO_PROCESS, who, max(niceness, os.getpriority(os.PRIO_PROCESS, who)))

_idle: list[WriterProcess] = []
_idle_lock = threading.Lock()


def background_writer(model, device: torch.device) -> str:
    """Who writes ``model``'s background saves, as ``AZR_SAVE_WRITER`` says: ``process`` (a writer process takes a
    copy staged in shared memory), ``thread`` (a thread of this process takes a copy staged in its memory),
    ``pagecache`` (the training thread writes the files, a thread makes them durable), or ``auto`` (the default: what
    :func:`automatic_choice` picks for ``device``).

    A process needs shared memory files (Linux) and a transformers model (a LoRA model gets the thread: peft saves
    only the adapter).
    """
    from azr.models.lora import is_peft_model  # noqa: PLC0415

    choice = chosen_writer(device)
    if choice == "process" and not (supported() and hasattr(model, "config") and not is_peft_model(model)):
        return "thread"
    return choice


def chosen_writer(device: torch.device) -> str:
    """``AZR_SAVE_WRITER`` with ``auto`` resolved for ``device``; raises ConfigError for a value it cannot be."""
    choice = os.environ.get("AZR_SAVE_WRITER", "auto")
    if choice not in WRITERS:
        raise ConfigError(f"AZR_SAVE_WRITER must be auto, process, thread or pagecache, got {choice!r}.")
    return automatic_choice(device) if choice == "auto" else choice


def stages_a_copy(device: torch.device) -> bool:
    """True when background saves on ``device`` copy the weights and AdamW state before writing them (every writer
    but the page cache's), so that a run holds them twice while a save is written."""
    return chosen_writer(device) != "pagecache"


def automatic_choice(device: torch.device) -> str:
    """``process`` on an accelerator (its state must be copied off the device anyway, and the copy is staged where
    a writer process can write it); ``pagecache`` on a CPU, where a staged copy would double the state in memory
    and writing the files costs the training thread about what copying them would."""
    return "process" if device.type != "cpu" else "pagecache"


@dataclass
class ModelSpec:
    """What builds a model's skeleton in the writer: its class, config, generation config and dtype."""

    model_class: type
    config: Any
    generation_config: Any
    dtype: torch.dtype

    @classmethod
    def of(cls, model) -> ModelSpec:
        return cls(type(model), model.config, getattr(model, "generation_config", None), model.dtype)


@dataclass
class SaveJob:
    """One save for the writer: the checkpoint's contents (tensors staged) and its other files."""

    contents: Any
    files: dict[str, bytes]


class WriterFailed(Exception):
    """The writer process could not write a save (or is gone); the message says why."""


class WriterProcess:
    """The training process's end of one writer process."""

    def __init__(self) -> None:
        ours, theirs = Pipe()
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                         os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen([sys.executable, "-m", LAUNCHER, str(theirs.fileno())],
                                         pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)  # a terminal's Ctrl+C goes to its parent alone
        lower_priority(self._process.pid)  # for its imports too (it starts at its parent's niceness)
        theirs.close()
        self._connection = ours
        self._arena: SharedArena | None = None  # the arena the writer has mapped
        self._requests = itertools.count()  # each answer names its request: one left unread is skipped later
        self._awaited: int | None = None  # the model request whose answer is still to come

    @property
    def pid(self) -> int:
        return self._process.pid

    @classmethod
    def take(cls) -> WriterProcess:
        """An idle writer of this process, or a new one."""
        with _idle_lock:
            while _idle:
                writer = _idle.pop()
                if writer.alive():
                    return writer
        return cls()

    def give_back(self) -> None:
        """Return the writer to the pool, once it has let go of its arena (an idle writer maps no memory of a
        run's state)."""
        if not self.alive():
            return
        if self._arena is not None:
            try:
                self._send("release", None)
            except WriterFailed:
                return
            self._arena = None
        with _idle_lock:
            _idle.append(self)

    def alive(self) -> bool:
        return self._process.poll() is None

    def prepare(self, model) -> None:
        """Have the writer build ``model``'s skeleton (importing its class); :meth:`ready` says when it is done."""
        self._awaited = self._send("model", pickle.dumps(ModelSpec.of(model)))

    def ready(self, timeout: float = 0) -> bool:
        """True once the writer is ready for the prepared model, waiting up to ``timeout`` seconds; raises
        WriterFailed when it cannot write that model's saves."""
        if self._awaited is not None:
            outcome, detail = self._reply(self._awaited, timeout)
            if outcome is None:
                return False
            if outcome != "ready":
                raise WriterFailed(detail)
            self._awaited = None
        return True

    def write(self, job: SaveJob, arena: SharedArena) -> Path:
        """Have the writer write, verify and name the checkpoint of ``job``, whose staged tensors are in
        ``arena``; raises WriterFailed."""
        if self._arena is not arena:
            self._send("arena", arena.nbytes)
            try:
                send_handle(self._connection, arena.fd, self.pid)
            except OSError as exc:
                raise self._ended(exc) from exc
            self._arena = arena
        outcome, detail = self._reply(self._send("save", _dumps(job, arena)), None)
        if outcome != "saved":
            raise WriterFailed(detail)
        return Path(detail)

    def _send(self, kind: str, value: Any) -> int:
        """Send a request; return its number."""
        number = next(self._requests)
        try:
            self._connection.send((number, kind, value))
        except OSError as exc:
            raise self._ended(exc) from exc
        return number

    def _reply(self, request: int, timeout: float | None) -> tuple[str | None, str | None]:
        """The writer's answer to ``request``, waiting up to ``timeout`` seconds (None: for as long as it takes);
        (None, None) when it has not come by then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while deadline is None or self._connection.poll(max(0.0, deadline - time.monotonic())):
                number, outcome, detail = self._connection.recv()
                if number == request:
                    return outcome, detail
        except (OSError, EOFError) as exc:
            raise self._ended(exc) from exc
        return None, None

    def _ended(self, exc: BaseException) -> WriterFailed:
        self.stop()
        return WriterFailed(f"the writer process ended ({type(exc).__name__}; exit code {self._process.poll()})")

    def stop(self) -> None:
        """End the writer (it exits once its connection closes) and reap it."""
        self._connection.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class _Pickler(pickle.Pickler):
    """Pickles staged tensors as their place in the arena."""

    def __init__(self, file: io.BytesIO, arena: SharedArena) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.arena = arena

    def persistent_id(self, obj: Any) -> tuple | None:
        if isinstance(obj, torch.Tensor) and (offset := self.arena.offset_of(obj)) is not None:
            return offset, str(obj.dtype).removeprefix("torch."), tuple(obj.shape)
        return None


class _Unpickler(pickle.Unpickler):
    """Rebuilds staged tensors as tensors in the writer's mapping of the arena."""

    def __init__(self, file: io.BytesIO, arena: SharedArena | None) -> None:
        super().__init__(file)
        self.arena = arena

    def persistent_load(self, pid: tuple) -> torch.Tensor:
        offset, dtype, shape = pid
        return self.arena.tensor(offset, getattr(torch, dtype), shape)


def _dumps(job: SaveJob, arena: SharedArena) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, arena).dump(job)
    return buffer.getvalue()


# ---------------------------------------------------------------------- the writer's side


def _serve(connection: Connection) -> None:
    """Build each model's skeleton and write each save that arrives; exit when the parent closes the connection
    (or dies)."""
    messages: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_receive, args=(connection, messages), daemon=True).start()  # before the slow imports:
    from transformers.utils import logging as hf_logging  # noqa: PLC0415 (a parent killed meanwhile ends it at once)

    hf_logging.set_verbosity_error()
    arena, model = None, None
    while True:
        number, kind, value = messages.get()
        if kind in ("arena", "release"):
            if arena is not None:
                arena.close()
            arena = value
            continue
        try:
            if kind == "model":
                model, reply = _skeleton(pickle.loads(value)), ("ready", None)
            else:
                reply = "saved", str(_write(value, arena, model))
        except Exception as exc:  # noqa: BLE001 - the parent writes the save itself and reports what fails there
            reply = "failed", f"{type(exc).__name__}: {exc}"
        connection.send((number, *reply))


def _write(value: bytes, arena: SharedArena, model) -> Path:
    """Write and verify the save a request carries; nothing of it (whose tensors map the arena) outlives the call."""
    from azr.checkpoints.checkpoint import Checkpoint  # noqa: PLC0415
    from azr.checkpoints.writing import write_contents  # noqa: PLC0415

    job = _Unpickler(io.BytesIO(value), arena).load()
    path = write_contents(job.contents, model, job.files, workers=1)
    Checkpoint.open(path)  # verifies every file; raises CheckpointError
    return path


def _receive(connection: Connection, messages: queue.SimpleQueue) -> None:
    """Pass on what the parent sends (an arena arrives with its descriptor); end the process the moment the parent
    is gone, or when what it sends cannot be read (a parent of another version)."""
    try:
        while True:
            number, kind, value = connection.recv()
            messages.put((number, kind, SharedArena(value, fd=recv_handle(connection)) if kind == "arena" else value))
    except (EOFError, OSError):
        os._exit(0)
    except BaseException:  # noqa: BLE001 - a writer that cannot read would leave its parent waiting for an answer
        traceback.print_exc()
        os._exit(1)  # the parent sees the writer end and writes its saves itself


def _skeleton(spec: ModelSpec) -> torch.nn.Module:
    """The model of ``spec`` built on the meta device: what ``save_pretrained`` needs besides the weights."""
    with torch.device("meta"):
        model = spec.model_class(spec.config)
    model = model.to(spec.dtype)
    model.generation_config = spec.generation_config
    return model


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _serve(Connection(int(argv[0])))
