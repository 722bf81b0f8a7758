"""Ctrl+C of ``python app.py`` with no job running: it exits at once, saying nothing about saving a job."""
from __future__ import annotations

import signal
import time

from app_process import AppProcess

# It takes about half a second; the bound leaves room for a busy machine, and the interpreter's own teardown of
# torch, transformers and gradio (skipped now) took 4 to 10 s.
IDLE_EXIT_S = 4.0


def test_ctrl_c_of_an_idle_app_exits_promptly_without_saving_talk(tmp_path):
    app = AppProcess.start(tmp_path)
    try:
        began = time.monotonic()
        app.process.send_signal(signal.SIGINT)
        status = app.process.wait(timeout=30)
        took = time.monotonic() - began
    finally:
        app.stop()
    assert status == 130, app.output()
    assert took < IDLE_EXIT_S, f"took {took:.1f} s:\n{app.output()}"
    assert "Stopping" not in app.output() and "saving" not in app.output()
