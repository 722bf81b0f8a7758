"""How azr talks to the Hub: the endpoint, cache and token settings, a timeout on every request, repo ids checked
before anything is sent, and the library's exceptions turned into one clear HubError.

Settings come from the environment at call time (``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HOME`` /
``HF_HUB_CACHE``, ``AZR_HUB_TIMEOUT_S``) and the token from the argument, ``HF_TOKEN`` or ``huggingface-cli
login``. The token is never written, logged or put in a message: errors only say whether one was used.

huggingface_hub's shared HTTP client has no timeout of its own (a hanging Hub would hang a push for ever); it gets
``AZR_HUB_TIMEOUT_S`` seconds (default 60: the longest a request may go without progress, not a limit on large
transfers) through the library's ``set_client_factory`` hook, the first time azr makes a Hub call.
"""
from __future__ import annotations

import math
import os
import threading

import httpx2
from huggingface_hub import HfApi, get_token
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
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


def endpoint() -> str:
    """Return the Hub's URL (``HF_ENDPOINT``, read now)."""
    return os.environ.get("HF_ENDPOINT", hf_constants.ENDPOINT).rstrip("/")


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` asks for the cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def cache_dir() -> str:
    """Return the Hub cache directory (``HF_HUB_CACHE``, else ``HF_HOME/hub``, read now)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return hf_constants.HF_HUB_CACHE


def api(token: str | None = None) -> HfApi:
    """Return an HfApi for the current endpoint and token (its requests time out, see :func:`request_timeout`)."""
    use_timeout()
    return HfApi(endpoint=endpoint(), token=token)


def _token_note(token: str | None) -> str:
    return "a token was used" if (token or get_token()) else "no token was used"


def hub_error(exc: Exception, repo_id: str, token: str | None, revision: str | None = None) -> HubError:
    """Translate a huggingface_hub/httpx exception into one clear HubError (never containing the token)."""
    if isinstance(exc, RepositoryNotFoundError):
        return HubError(f"Repository {repo_id!r} was not found or you have no access ({_token_note(token)}).")
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"Revision {revision!r} was not found in {repo_id!r}.")
    if isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
        return HubError(f"Cannot reach {repo_id!r}: offline (or the Hub is unreachable) and nothing is cached.")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        if status in (401, 403):
            return HubError(f"Access to {repo_id!r} was refused (HTTP {status}; {_token_note(token)}).")
        return HubError(f"The Hub answered HTTP {status} for {repo_id!r}; try again later.")
    if isinstance(exc, (httpx2.TransportError, ConnectionError, TimeoutError)):
        return HubError(f"Cannot reach the Hub at {endpoint()} for {repo_id!r} ({type(exc).__name__}).")
    return HubError(f"Hub operation on {repo_id!r} failed: {type(exc).__name__}.")


HUB_EXCEPTIONS = (HfHubHTTPError, OfflineModeIsEnabled, LocalEntryNotFoundError, httpx2.TransportError,
                  ConnectionError, TimeoutError)
