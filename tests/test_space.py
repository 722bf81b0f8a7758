"""The Space files: the card's YAML header, and deploying to the local Hub-compatible server."""
from __future__ import annotations

import re

import pytest
import yaml
from conftest_hub import hub_env, hub_server  # noqa: F401

from azr.errors import AZRError
from azr.hub.http import api
from azr.hub.space import CARD, PROJECT_ROOT, deploy_space, space_files

SPACE = "user/azr-trainer"


def card_header() -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", (PROJECT_ROOT / CARD).read_text(encoding="utf-8"), re.DOTALL)
    assert match, "the Space card must start with a YAML header between --- lines"
    return yaml.safe_load(match.group(1))


def pinned(package: str) -> str:
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.strip()
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def test_the_space_card_header_matches_the_project():
    header = card_header()
    assert header["sdk"] == "gradio"
    assert header["sdk_version"] == pinned("gradio")
    assert (PROJECT_ROOT / header["app_file"]).is_file()
    assert header["python_version"] == "3.11"
    assert header["title"]
    assert header["hf_oauth"] is True  # the owners sign in with Hugging Face (azr.app.owners)


def test_deploy_creates_the_space_with_the_app(hub_server, hub_env):
    url = deploy_space(SPACE, token=hub_env["token"], set_token_secret=True)
    assert url.endswith(f"/spaces/{SPACE}")
    files = hub_server.files(SPACE, repo_type="space")
    for name in ("app.py", "requirements.txt", "README.md", "azr/__init__.py", "azr/app/jobs.py", "azr/app/ui.py",
                 "azr/data/embedded/tinyshakespeare.txt"):
        assert name in files
    assert files["README.md"] == (PROJECT_ROOT / CARD).read_bytes()
    assert files["app.py"] == (PROJECT_ROOT / "app.py").read_bytes()
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    assert set(files) - {".gitattributes"} == set(space_files())
    assert hub_server.space_secrets(SPACE) == {"HF_TOKEN": hub_env["token"]}


def test_no_secret_unless_asked_and_a_redeploy_removes_stale_package_files(hub_server, hub_env):
    deploy_space(SPACE)
    assert hub_server.space_secrets(SPACE) == {}
    api().upload_file(path_or_fileobj=b"old = 1\n", path_in_repo="azr/removed_module.py", repo_id=SPACE,
                      repo_type="space")
    deploy_space(SPACE)
    assert "azr/removed_module.py" not in hub_server.files(SPACE, repo_type="space")


def test_deploy_refuses_a_directory_that_is_no_checkout(tmp_path):
    with pytest.raises(AZRError, match="not an AZR Trainer source checkout"):
        deploy_space(SPACE, root=tmp_path)
