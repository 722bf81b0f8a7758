"""AZR Trainer web app: ``python app.py`` (locally on 127.0.0.1:7860; on 0.0.0.0 in a Hugging Face Space).

Honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, AZR_CHECKPOINT_DIR, AZR_HUB_REPO, AZR_MAX_UPLOAD_MB and HF_TOKEN,
and the owner settings of :mod:`azr.app.owners` (AZR_OWNER_PASSWORD, AZR_OWNERS, AZR_PRIVATE, AZR_VISITORS_GENERATE).
SIGTERM or Ctrl+C saves the running job as ``model_interrupted_<N>`` (and pushes it when pushing is on) and exits.
At start, what earlier runs could not push (the Hub was down, or the app stopped) is pushed in the background.
"""
from __future__ import annotations

import atexit
import gc
import os
import sys
import threading

from transformers.utils import logging as transformers_logging

from azr.app.api import max_upload_bytes
from azr.app.jobs import TrainingJob
from azr.app.owners import Access
from azr.app.ui import CSS, THEME, build_ui
from azr.hub.uploader import start_pending
from azr.training.signals import graceful_stop


def main() -> int:
    """Serve the app until SIGTERM/SIGINT; return the shell's exit status for the signal.

    A signal during start-up is handled as later; with no job running the app exits at once.
    """
    atexit.register(gc.freeze)  # at exit, the interpreter's final collections skip what is left: seconds saved
    transformers_logging.disable_progress_bar()
    job = TrainingJob()
    host = os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1")
    access = Access.from_environment(host)
    demo = build_ui(job, access)
    signalled = threading.Event()
    with graceful_stop(lambda: (job.interrupt(), signalled.set())) as signals:
        demo.launch(
            server_name=host, server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)), auth=access.gradio_auth(),
            max_file_size=max_upload_bytes(), run_history=False, ssr_mode=False, prevent_thread_lock=True,
            theme=THEME, css=CSS,
        )
        start_pending(job.runs_root)  # pushes earlier runs left pending, in the background
        signalled.wait()
        if job.status(history_since=None)["is_training"]:
            print("Stopping: saving the running job before exiting…", flush=True)
        job.wait()
    demo.close()
    return signals.exit_code or 0


if __name__ == "__main__":
    sys.exit(main())
