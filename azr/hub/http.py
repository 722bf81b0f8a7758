"""How azr talks HTTP to the Hub: a timeout on every request, and repo ids checked before anything is sent.

huggingface_hub's shared HTTP client has no timeout of its own (a hanging Hub would hang a push for ever); it gets
``AZR_HUB_TIMEOUT_S`` seconds (default 60: the longest a request may go without progress, not a limit on large
transfers) through the library's ``set_client_factory`` hook, the first time azr makes a Hub call.
"""
from __future__ import annotations

import math
import os
import threading

import httpx2
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import set_client_factory, validate_repo_id
from huggingface_hub.utils._http import default_client_factory  # the library's own client, given a timeout

from azr.errors import HubError

TIMEOUT_ENV = "AZR_HUB_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 60.0

_client_timeout: list[float] = []  # the timeout the shared client was given (set again only when it changes)
_client_lock = threading.Lock()


def env_seconds(name: str, default: float) -> float:
    """Return the positive number of seconds in the environment variable ``name`` (``default`` when unset).

    Raises HubError for a value that is not a positive number."""
    text = os.environ.get(name, "").strip()
    try:
        value = float(text) if text else default
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise HubError(f"{name} must be a positive number of seconds, got {text!r}.")
    return value


def request_timeout() -> float:
    """Return the seconds a Hub request may go without progress (``AZR_HUB_TIMEOUT_S``, default 60)."""
    return env_seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)


def use_timeout() -> float:
    """Give huggingface_hub's shared HTTP client the request timeout (again only when it changed); return it."""
    seconds = request_timeout()
    with _client_lock:
        if _client_timeout != [seconds]:
            set_client_factory(lambda: _client(seconds))
            _client_timeout[:] = [seconds]
    return seconds


def _client(seconds: float) -> httpx2.Client:
    client = default_client_factory()
    client.timeout = httpx2.Timeout(seconds)
    return client


def check_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` when huggingface_hub accepts it as a repo id; raises HubError (one sentence) otherwise."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise HubError(f"{repo_id!r} is not a Hub repo id; write user/run with letters, digits, '-', '_' and '.' "
                       "only.") from None
    return repo_id
