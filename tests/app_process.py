"""Run ``python app.py`` as a real process on a free port for the app and browser tests (a plain module).

Use its fixture with ``from app_process import app`` in a test module.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 120
# The small model of the tests (a few thousand parameters), as /train and the Train tab's advanced fields take it.
SMALL_MODEL = dict(d_model=32, num_layers=1, num_heads=2, d_ff=64, max_seq_len=32, vocab_size=300)


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def small_corpus() -> str:
    """About 60 kB of the default corpus: enough for a 300-token vocabulary and quick to tokenize."""
    from azr import default_corpus
    return default_corpus()[0][:60_000]


class PageSession:
    """One browser session of the app without a browser: calls the page's own events (the Download and Refresh
    buttons, which are not API endpoints) by name, as the page's JavaScript does, over Gradio's queue."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = uuid.uuid4().hex  # Gradio keeps the session's dropdown choices under it
        with urllib.request.urlopen(url + "config", timeout=30) as response:
            config = json.load(response)
        self.events = {d["api_name"]: d["id"] for d in config["dependencies"]}
        self.inputs = {d["api_name"]: d["inputs"] for d in config["dependencies"]}
        self.outputs = {d["api_name"]: d["outputs"] for d in config["dependencies"]}
        self.components = {c["id"]: c.get("props", {}) for c in config["components"]}

    def call(self, event: str, *data: object) -> list:
        """Run the page's event ``event`` with the values of its inputs; return its outputs (raises on an error)."""
        body = json.dumps({"data": list(data), "fn_index": self.events[event], "session_hash": self.session,
                           "event_data": None, "trigger_id": None}).encode()
        join = urllib.request.Request(self.url + "gradio_api/queue/join", body, {"Content-Type": "application/json"})
        urllib.request.urlopen(join, timeout=30).close()
        with urllib.request.urlopen(f"{self.url}gradio_api/queue/data?session_hash={self.session}",
                                    timeout=300) as stream:
            for line in stream:
                message = json.loads(line[5:]) if line.startswith(b"data:") else {}
                if message.get("msg") == "process_completed":
                    if not message["success"]:
                        raise RuntimeError(f"{event} failed: {message['output']}")
                    return message["output"]["data"]
        raise RuntimeError(f"{event} did not complete")

    def shown(self, event: str, **values: object) -> dict[str, object]:
        """:meth:`press` ``event``; return its outputs that have an elem_id, by elem_id."""
        names = [self.components[i].get("elem_id") for i in self.outputs[event]]
        return {name: value for name, value in zip(names, self.press(event, **values)) if name}

    def press(self, event: str, **values: object) -> list:
        """Run ``event`` with the page's initial values of its inputs, those named (by elem_id) replaced, as a
        visitor who changes only those fields does."""
        props = [self.components[i] for i in self.inputs[event]]
        data = [values.get(p.get("elem_id"), p.get("value")) for p in props]
        unknown = set(values) - {p.get("elem_id") for p in props}
        assert not unknown, f"{event} has no inputs {unknown}"
        return self.call(event, *data)


@dataclass
class AppProcess:
    """A running ``python app.py`` with its URL, checkpoint directory and log file."""

    process: subprocess.Popen
    url: str
    checkpoint_dir: Path
    log: Path

    @classmethod
    def start(cls, tmp: Path, **env: str) -> AppProcess:
        """Start the app with checkpoints under ``tmp`` and wait until it answers; raises on failure.

        Torch gets one thread: the tiny test models gain nothing from more, and on a busy machine
        oversubscribed threads slow training down many times over.
        """
        port = free_port()
        checkpoint_dir = tmp / "checkpoints"
        log = tmp / "app.log"
        environment = {k: v for k, v in os.environ.items() if k != "AZR_HUB_REPO"}
        environment.update({"GRADIO_SERVER_PORT": str(port), "AZR_CHECKPOINT_DIR": str(checkpoint_dir),
                            "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env})
        with open(log, "wb") as handle:
            process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=environment, stdout=handle,
                                       stderr=subprocess.STDOUT)
        app = cls(process, f"http://127.0.0.1:{port}/", checkpoint_dir, log)
        app._wait_ready()
        return app

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "gradio_api/info", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"app.py did not answer within {STARTUP_TIMEOUT_S} s:\n{self.output()}")

    def output(self) -> str:
        """Return what the app printed so far."""
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 60) -> int:
        """Send SIGTERM and return the exit status once the app has saved and exited."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Terminate the app (killing it when it does not exit in time)."""
        try:
            self.terminate()
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[AppProcess]:
    """The app, running for the tests of one module, with its own checkpoint directory."""
    process = AppProcess.start(tmp_path_factory.mktemp("app"))
    yield process
    process.stop()


def wait_for(client, condition, timeout: float = 120) -> dict:  # client: a gradio_client.Client
    """Poll /status until ``condition(status)`` holds; return that status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.predict(history_since=-1, api_name="/status")
        if condition(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"status did not get there in {timeout} s: {status}")
