"""The writer process's first lines: watch the parent, then import the writer (torch and transformers take
seconds), so that a writer whose parent is gone ends at once, even while it is still starting up.

Run as ``python -m azr.checkpoints.writerlaunch FD`` by :class:`azr.checkpoints.writerprocess.WriterProcess`.
"""
from __future__ import annotations

import os
import sys
import threading
import time

POLL_S = 0.1


def exit_with_parent() -> None:
    """End this process as soon as its parent is gone (it is then re-parented, and ``getppid`` changes)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        os._exit(0)
    threading.Thread(target=watch, name="azr-parent-watch", daemon=True).start()


if __name__ == "__main__":
    exit_with_parent()
    from azr.checkpoints.writerprocess import main

    main(sys.argv[1:])
