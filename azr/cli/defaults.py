"""The command line's defaults and exit statuses, shared by the parser and the commands."""
from __future__ import annotations

EXIT_USAGE = 2  # a bad argument or any user error (AZRError)
EXIT_INTERRUPTED = 130  # stopped by Ctrl+C, as a shell reports SIGINT
DEFAULT_RUNS_DIR = "checkpoints"
DEFAULT_PRESET = "tiny"
