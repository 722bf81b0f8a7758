"""Sizes as every front-end shows them: in MiB (2**20 bytes), so the app, the CLI and the messages agree."""
from __future__ import annotations

MIB = 2**20


def mib_text(count: float) -> str:
    """``count`` bytes in MiB with its unit: ``0.12 MiB``, ``6.25 MiB``, ``1,234.5 MiB``."""
    value = count / MIB
    return f"{value:,.2f} MiB" if value < 10 else f"{value:,.1f} MiB"
