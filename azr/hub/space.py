"""Deploy the app as a Hugging Face Space: app.py, the azr package, requirements.txt and the Space card.

The card is ``space_config/README.md`` (uploaded as the Space's README.md). Hub settings come from the
environment as for :mod:`azr.hub.http` (``HF_ENDPOINT``, ``HF_TOKEN``).
"""
from __future__ import annotations

from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, get_token

from azr.errors import AZRError, HubError
from azr.hub.http import HUB_EXCEPTIONS, api, hub_error

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # azr/hub/space.py: the checkout holds azr/
PACKAGE = "azr"
ROOT_FILES = ("app.py", "requirements.txt")
CARD = Path("space_config") / "README.md"
PACKAGE_SUFFIXES = (".py", ".txt")  # the code and the embedded default corpus
TOKEN_SECRET = "HF_TOKEN"


def space_files(root: str | Path = PROJECT_ROOT) -> dict[str, Path]:
    """Return the Space's files: path in the Space repo -> local file.

    Raises AZRError when ``root`` is not a source checkout of the project (no app.py, card or package).
    """
    root = Path(root)
    files = {name: root / name for name in ROOT_FILES}
    files["README.md"] = root / CARD
    missing = [str(path) for path in (*files.values(), root / PACKAGE) if not path.exists()]
    if missing:
        raise AZRError(f"{root} is not an AZR Trainer source checkout ({', '.join(missing)} missing); "
                       "deploy from the project's directory.")
    for path in sorted((root / PACKAGE).rglob("*")):
        if path.is_file() and path.suffix in PACKAGE_SUFFIXES and "__pycache__" not in path.parts:
            files[path.relative_to(root).as_posix()] = path
    return files


def deploy_space(space_id: str, token: str | None = None, private: bool = False, set_token_secret: bool = False,
                 root: str | Path = PROJECT_ROOT) -> str:
    """Create or update the Gradio Space ``space_id`` with the app, in one commit; return the Space's URL.

    Package files the Space has but this checkout no longer has are deleted. With ``set_token_secret`` the
    token (``token``, else ``HF_TOKEN`` / the saved login) becomes the Space's ``HF_TOKEN`` secret, so that the
    app can push checkpoints. Raises HubError for Hub problems, AZRError when ``root`` is no checkout.
    """
    files = space_files(root)
    secret = (token or get_token()) if set_token_secret else None
    if set_token_secret and not secret:
        raise HubError(f"Setting the {TOKEN_SECRET} secret needs a token; pass one or set {TOKEN_SECRET}.")
    hf = api(token)
    try:
        url = hf.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        stale = [name for name in hf.list_repo_files(space_id, repo_type="space")
                 if name.startswith(f"{PACKAGE}/") and name not in files]
        operations = [CommitOperationAdd(name, str(path)) for name, path in files.items()]
        operations += [CommitOperationDelete(name) for name in stale]
        hf.create_commit(space_id, operations, repo_type="space", commit_message="Deploy AZR Trainer")
        if secret:
            hf.add_space_secret(space_id, TOKEN_SECRET, secret, description="Pushes checkpoints to the Hub.")
    except HUB_EXCEPTIONS as exc:
        raise hub_error(exc, space_id, token) from exc
    return str(url)
