"""``python -m azr``: the ``azr`` command."""
from __future__ import annotations

from .cli import main

raise SystemExit(main())
