"""The background uploader: pushes checkpoints to the Hub while training goes on, and loses none.

Every push is recorded in its run before it starts (:mod:`azr.hub.pending`) and forgotten once the Hub has the
checkpoint. Failures the Hub may get over (no connection, a timeout, 408, 429, 5xx) are retried with exponential
backoff — ``AZR_HUB_BACKOFF_S`` (default 1 s) first, doubling up to ``AZR_HUB_BACKOFF_MAX_S`` (default 60 s) —
for as long as the uploader runs, the newest checkpoint first. At the end of a run (:meth:`HubUploader.finish`) a
push waiting out its backoff is tried again at once, the backoff starts over, and no wait is longer than a quarter
of the time left, so a Hub that comes back within the window gets its pushes. What is still not pushed when the
uploader stops stays pending in the run, for the next resume, ``azr push --pending`` or the app's next start. Every
request has a timeout (:mod:`azr.hub.http`).

A push is one checkpoint name to one repo: a newer save of the name replaces a waiting push of older content (its
staged copy is removed), and pushes of one name to two repos are two pushes.

A thread of our own rather than ``create_commit(run_as_future=True)``: the library's futures run in a
ThreadPoolExecutor, whose threads Python joins at exit, so a hanging Hub would hold up Ctrl+C; and a push is
several requests (repo, head, index, commit), which one ``http_backoff`` call cannot retry as a whole. The
library's own per-request retries (preupload, listings) stay in place under ours.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub.errors import HfHubHTTPError

from azr.errors import AZRError, HubError
from azr.hub import pending, publish
from azr.hub.http import env_seconds
from azr.hub.pending import PendingPush, PushTarget

log = logging.getLogger(__name__)

BACKOFF_ENV, MAX_BACKOFF_ENV = "AZR_HUB_BACKOFF_S", "AZR_HUB_BACKOFF_MAX_S"
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
LATER = "stay recorded in the run and are pushed at its next resume, by `azr push --pending` or when the app starts"


def transient(exc: BaseException) -> bool:
    """True for failures worth retrying: connection problems, timeouts, 408, 429 and 5xx answers."""
    cause = exc.__cause__ or exc
    if isinstance(cause, HfHubHTTPError):
        return cause.response is not None and cause.response.status_code in TRANSIENT_STATUS
    return isinstance(cause, (httpx2.TransportError, ConnectionError, TimeoutError))


def push_once(push: PendingPush, token: str | None, source: Path | None = None) -> tuple[bool, str]:
    """Push a pending checkpoint (from ``source``, a staged copy, when given) once; return ``(settled, state)``.

    Settled pushes are forgotten by the run, except one the Hub refused (no access…), which stays pending for a
    later try with another token; an unsettled one failed transiently. Never raises for a failed push.
    """
    try:
        commit = publish.push(source or push.path, push.target.repo_id, token, push.target.private, push.run_dir,
                          push.target.push_corpus)
    except Exception as exc:  # noqa: BLE001 - an upload thread must never die: every failure becomes a state
        reason = str(exc) if isinstance(exc, AZRError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, AZRError):
            log.exception("push of %s to %s failed", push.checkpoint, push.target.repo_id)
        if transient(exc):
            return False, reason
        if not isinstance(exc, HubError):  # the checkpoint is gone or damaged: it can never be pushed
            pending.forget(push)
        return True, f"failed: {reason}"
    pending.forget(push)
    return True, f"pushed {commit}"


def push_pending(where: str | Path, token: str | None = None):
    """Push the pending pushes of a run (or of every run in a runs root), newest first, each once; yield
    ``(push, state)``. After a transient failure the rest stay pending untried (the Hub is not answering)."""
    down = None  # why the Hub is not answering, once it is not
    for run_dir in pending.runs_with_pending(where):
        for push in pending.pending(run_dir):
            if down:
                yield push, f"pending: {down}"
            elif not push.path.is_dir():
                pending.forget(push)
                yield push, "failed: the checkpoint no longer exists locally"
            else:
                settled, state = push_once(push, token)
                down = None if settled else state
                yield push, state if settled else f"pending: {state}"


@dataclass
class _Job:
    push: PendingPush
    staged: Path
    failure: str = "not pushed yet"

    @property
    def key(self) -> tuple[str, str]:
        """What one push is: a checkpoint name to a repo (the content is the newest saved under the name)."""
        return self.push.target.repo_id, self.push.checkpoint

    def discard(self) -> None:
        """Remove the staged copy."""
        shutil.rmtree(self.staged.parent, ignore_errors=True)


class HubUploader:
    """Pushes submitted checkpoints in a worker thread, newest first; ``states()`` tells how each push stands.

    States: ``queued``, ``uploading``, ``retrying in Ns (…)``, ``pushed <commit>``, ``failed: <reason>`` and,
    once the uploader has stopped, ``pending: <reason>`` for what stays recorded in the run.
    """

    def __init__(self, token: str | None = None) -> None:
        self._token = token
        self._backoff_s = env_seconds(BACKOFF_ENV, 1.0)
        self._max_backoff_s = env_seconds(MAX_BACKOFF_ENV, 60.0)
        self.repos: set[str] = set()
        self._jobs: list[_Job] = []  # waiting; the newest checkpoint is pushed first
        self._current: _Job | None = None
        self._states: dict[str, str] = {}
        self._closed = False
        self._deadline: float | None = None  # set by finish(): the end of the run's flush window
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="azr-hub-uploader", daemon=True)
        self._thread.start()

    def submit(self, checkpoint: Path, target: PushTarget) -> None:
        """Record a checkpoint's push in its run and queue it (a hard-linked copy is pushed, so local rotation
        cannot remove it mid-upload)."""
        push = PendingPush.of(Path(checkpoint), target)
        pending.record(push)
        self._queue(push)

    def submit_pending(self, run_dir: str | Path) -> int:
        """Queue the pushes a run has pending; return how many (one whose checkpoint is gone is forgotten: a push of
        a checkpoint that local rotation removed before the Hub came back cannot be made)."""
        queued = 0
        for push in pending.pending(run_dir):
            if push.path.is_dir():
                self._queue(push)
                queued += 1
            else:
                pending.forget(push)
        return queued

    def states(self) -> dict[str, str]:
        """Return each submitted checkpoint's push state."""
        with self._changed:
            return dict(self._states)

    def finish(self, timeout_s: float) -> dict[str, str]:
        """Wait up to ``timeout_s`` for the queued pushes, retrying within that window, stop, and return the states
        (what is left is pending)."""
        with self._changed:
            self._deadline = time.monotonic() + max(timeout_s, 0)
            self._changed.notify_all()  # a push waiting out its backoff is tried again now
            self._changed.wait_for(lambda: not self._jobs and self._current is None, max(timeout_s, 0))
        self.close()
        return self.states()

    def close(self) -> None:
        """Stop now: pushes not done stay pending in their runs (one in flight may still land)."""
        with self._changed:
            self._closed = True
            for job in [*self._jobs, *filter(None, [self._current])]:
                self._states[job.push.checkpoint] = f"pending: {job.failure}"
            waiting, self._jobs = self._jobs, []
            self._changed.notify_all()
        for job in waiting:
            job.discard()

    def _queue(self, push: PendingPush) -> None:
        try:
            staged = publish.staging_copy(push.path)
        except (AZRError, OSError) as exc:  # damaged or gone: it can never be pushed
            pending.forget(push)
            with self._changed:
                self._set(push.checkpoint, f"failed: {exc}")
            return
        job = _Job(push, staged)
        with self._changed:
            current = self._current
            if self._closed or (current and current.key == job.key and current.push.content == push.content):
                job.discard()  # stopped, or this very content is being pushed now
                return
            self.repos.add(push.target.repo_id)
            self._wait_in_line(job, replace=True)
            self._set(push.checkpoint, "queued")

    def _wait_in_line(self, job: _Job, replace: bool) -> bool:
        """Queue ``job`` (the caller holds the lock) and return True, unless a push of the same name and repo waits
        and ``job`` is a retry (the name was saved over while it was in flight): then ``job`` is discarded. A new
        save (``replace``) discards the waiting one instead."""
        older = [j for j in self._jobs if j.key == job.key]
        if older and not replace:
            job.discard()
            return False
        for replaced in older:
            replaced.discard()
        self._jobs = [j for j in self._jobs if j.key != job.key] + [job]
        self._jobs.sort(key=lambda j: j.push.newness())
        self._changed.notify_all()
        return True

    def _set(self, name: str, state: str) -> None:
        self._states[name] = state
        log.info("push of %s: %s", name, state)

    def _work(self) -> None:
        failures = 0
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._closed or self._jobs)
                if self._closed:
                    return
                job = self._current = self._jobs.pop()
                self._set(job.push.checkpoint, "uploading")
            settled, state = push_once(job.push, self._token, job.staged)
            with self._changed:
                self._current = None
                if settled:
                    job.discard()
                    failures = 0
                    self._set(job.push.checkpoint, state)
                    self._changed.notify_all()
                    continue
                if self._closed:  # stopped while this push was in flight: it stays pending
                    job.discard()
                    return
                failures += 1
                delay = self._delay(failures)
                job.failure = state
                if self._wait_in_line(job, replace=False):
                    self._set(job.push.checkpoint, f"retrying in {delay:g}s (attempt {failures} failed: {state})")
                window = self._deadline
                self._changed.wait_for(lambda: self._closed or self._deadline != window, delay)
                if self._deadline != window:  # the run's end has come: try at once, and the backoff starts over
                    failures = 0

    def _delay(self, failures: int) -> float:
        """The backoff after ``failures`` failures in a row; while finishing, at most a quarter of the time left
        (but at least the first backoff), so that the window holds several more tries."""
        delay = min(self._backoff_s * 2 ** (failures - 1), self._max_backoff_s)
        if self._deadline is None:
            return delay
        return min(delay, max((self._deadline - time.monotonic()) / 4, self._backoff_s))


def start_pending(root: str | Path, token: str | None = None) -> HubUploader | None:
    """Start pushing in the background what the runs under ``root`` have pending (e.g. when the app starts);
    return the uploader, or None when nothing is pending."""
    runs = pending.runs_with_pending(root)
    if not runs:
        return None
    uploader = HubUploader(token)
    for run_dir in runs:
        uploader.submit_pending(run_dir)
    return uploader
