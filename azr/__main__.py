"""``python -m azr``: the ``azr`` command."""
from __future__ import annotations

from azr.cli.main import main

raise SystemExit(main())
