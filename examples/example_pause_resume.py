"""The seed guide's demo through the Python API: train 100 iterations, resume to 250, stop from another thread after
3 seconds, resume the paused checkpoint with a new target, list the checkpoints.

    python examples/example_pause_resume.py [DIRECTORY]

The steps are in ``azr/demo.py`` and use only the public API (``AZRTrainer``, ``train_continuous``,
``stop_training``, ``AZRTrainer.from_checkpoint``, ``list_checkpoints``); ``azr demo`` runs them with progress bars.
"""
from __future__ import annotations

import sys
import tempfile

from transformers.utils import logging as transformers_logging

from azr import TrainingStatus
from azr.cli.demo import run_demo


def show(status: TrainingStatus) -> None:
    """The seed trainer's status_callback: here, one line per checkpoint saved."""
    if status.state == "checkpoint":
        print(f"    iteration {status.iteration}/{status.max_iterations}: loss {status.loss:.4f}, {status.message}")


def main() -> None:
    transformers_logging.disable_progress_bar()  # transformers would draw a bar for every checkpoint written
    directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="azr-demo-")
    checkpoints = run_demo(directory, on_status=show)
    print(f"\nCheckpoints in {directory}:")
    for info in checkpoints:
        print(f"  {info.name}: iter {info.iteration}, loss {info.loss:.4f}, valid {info.valid}")


if __name__ == "__main__":
    main()
