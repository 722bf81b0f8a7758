"""The library never prints: progress bars of the libraries it calls are off while it calls them."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType


@contextlib.contextmanager
def progress_bars_off(library_logging: ModuleType) -> Iterator[None]:
    """Turn off the progress bars of ``library_logging`` (``transformers.utils.logging``,
    ``datasets.utils.logging``) inside the block; a setting that had them on is restored after it."""
    shown = library_logging.is_progress_bar_enabled()
    library_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            library_logging.enable_progress_bar()
