"""The background uploader: pushes checkpoints to the Hub while training goes on, with retries."""
from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from pathlib import Path

import httpx2
from huggingface_hub.errors import HfHubHTTPError

from . import hub
from .errors import AZRError

log = logging.getLogger(__name__)

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def _transient(exc: BaseException) -> bool:
    """True for failures worth retrying: connection problems, timeouts, 5xx and 429 answers."""
    cause = exc.__cause__ or exc
    if isinstance(cause, HfHubHTTPError):
        return cause.response is not None and cause.response.status_code in TRANSIENT_STATUS
    return isinstance(cause, (httpx2.TransportError, ConnectionError, TimeoutError))


class HubUploader:
    """Pushes each submitted checkpoint in a worker thread; ``states()`` tells how each push stands.

    States: ``queued``, ``uploading``, ``retrying (…)``, ``pushed <commit>``, ``failed: <reason>``. A failed push leaves the
    local checkpoint untouched. Transient failures are retried with exponential backoff.
    """

    def __init__(self, repo_id: str, token: str | None = None, private: bool = True, push_corpus: bool = True,
                 attempts: int = 5, backoff_s: float = 0.5) -> None:
        self.repo_id = repo_id
        self._token = token
        self._private = private
        self._push_corpus = push_corpus
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._queue: queue.Queue[tuple[str, Path, Path] | None] = queue.Queue()
        self._states: dict[str, str] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="azr-hub-uploader", daemon=True)
        self._thread.start()

    def submit(self, checkpoint: Path, corpus_root: Path) -> None:
        """Queue a checkpoint for pushing (a hard-linked copy, so local rotation cannot remove it)."""
        staged = hub.staging_copy(Path(checkpoint))
        self._set(checkpoint.name, "queued")
        self._queue.put((checkpoint.name, staged, Path(corpus_root)))

    def states(self) -> dict[str, str]:
        """Return each submitted checkpoint's push state."""
        with self._lock:
            return dict(self._states)

    def flush(self, timeout_s: float) -> dict[str, str]:
        """Wait up to ``timeout_s`` for queued pushes to finish; return the states."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.states()

    def close(self) -> None:
        """Stop the worker after the pushes already queued (does not wait for them)."""
        self._queue.put(None)

    def _set(self, name: str, state: str) -> None:
        with self._lock:
            self._states[name] = state
        log.info("push %s to %s: %s", name, self.repo_id, state)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            name, staged, corpus_root = item
            try:
                self._push(name, staged, corpus_root)
            finally:
                shutil.rmtree(staged.parent, ignore_errors=True)
                self._queue.task_done()
        self._queue.task_done()

    def _push(self, name: str, staged: Path, corpus_root: Path) -> None:
        self._set(name, "uploading")
        for attempt in range(1, self._attempts + 1):
            try:
                commit = hub.push(staged, self.repo_id, self._token, self._private, corpus_root, self._push_corpus)
            except AZRError as exc:
                if attempt == self._attempts or not _transient(exc):
                    self._set(name, f"failed: {exc}")
                    return
                self._set(name, f"retrying ({attempt} failed: {exc})")
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
            else:
                self._set(name, f"pushed {commit}")
                return
