"""Pytest fixtures around `hub_server.HubServer` (a plain module, not a conftest).

Use them with ``from conftest_hub import hub_env, hub_server  # noqa: F401`` from
``tests/conftest.py`` or a test module: pytest's default ("prepend") import mode puts the
``tests/`` directory (it has no ``__init__.py``) on ``sys.path``, for both ``pytest`` and
``python -m pytest``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import HubServer

# Variables that would override HF_HOME-derived paths or disable network access.
_CLEARED_VARS = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[HubServer]:
    """A running `HubServer` storing its blobs under the test's tmp dir."""
    with HubServer(root=tmp_path / "hub_storage") as server:
        yield server


@pytest.fixture
def hub_env(hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point `os.environ` at `hub_server` with a fresh HF_HOME (and azr's push retries at short intervals).

    Subprocesses (and anything reading the variables at call time, like ``HF_TOKEN``) see the
    server; an already imported ``huggingface_hub`` keeps its import-time endpoint, so in-process
    calls must pass ``endpoint=`` (see hub_server.py). Returns ``url``, ``token`` and ``home``.
    """
    home = tmp_path / "hf_home"
    env = {
        "HF_ENDPOINT": hub_server.url,
        "HF_HOME": str(home),
        "HF_TOKEN": hub_server.token,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "AZR_HUB_BACKOFF_S": "0.1",  # azr's retries of failed pushes: a local server comes back fast
        "AZR_HUB_BACKOFF_MAX_S": "1",
    }
    for name in _CLEARED_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {"url": hub_server.url, "token": hub_server.token, "home": str(home)}
