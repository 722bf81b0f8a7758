"""Owners and visitors: visitors watch, only owners control (train, stop, resume, delete, push).

A real ``python app.py`` with ``AZR_OWNER_PASSWORD`` driven with gradio_client; the Space's sign-in wiring in
process, as far as it runs without the Hub: the page's button, and API calls carrying a signed session of a signed-in
Hugging Face user (what Gradio's OAuth callback stores) are allowed or refused by the Space's owners.
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
import zipfile

import gradio.oauth
import itsdangerous
import pytest
from app_process import SMALL_MODEL, AppProcess, PageSession, free_port, small_corpus
from gradio_client import Client
from gradio_client.exceptions import AppError

from azr.app.jobs import TrainingJob
from azr.app.owners import Access, Caller
from azr.app.ui import build_ui
from azr.checkpoints.checkpoint import Checkpoint
from azr.errors import AccessError

PASSWORD = "correct horse battery staple"
REFUSED = "Only the app's owner can {}"
SETTINGS = ("SYSTEM", "SPACE_ID", "SPACE_AUTHOR_NAME", "OAUTH_CLIENT_ID", "AZR_OWNERS", "AZR_OWNER_PASSWORD",
            "AZR_PRIVATE", "AZR_VISITORS_GENERATE")


@pytest.fixture(scope="module")
def owned(tmp_path_factory):
    """The app with an owner password, bound to 127.0.0.1."""
    process = AppProcess.start(tmp_path_factory.mktemp("owned"), AZR_OWNER_PASSWORD=PASSWORD)
    yield process
    process.stop()


def wait_idle(client: Client, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.predict(history_since=-1, api_name="/status")
        if not status["is_training"]:
            return status
        time.sleep(0.1)
    raise AssertionError(f"still training after {timeout} s")


def test_a_visitor_watches_and_only_the_owner_controls(owned):
    client = Client(owned.url, verbose=False)
    assert client.predict(api_name="/status")["state"] == "idle"  # watching needs no password
    assert client.predict(api_name="/list_checkpoints")["checkpoints"] == []
    for password in ("", "wrong"):
        with pytest.raises(AppError, match=REFUSED.format("start training")):
            client.predict(corpus_text=small_corpus(), max_iterations=20, owner_password=password,
                           api_name="/train", **SMALL_MODEL)
    assert client.predict(api_name="/status")["launch"] == 0 and not list(owned.checkpoint_dir.glob("*"))

    started = client.predict(corpus_text=small_corpus(), max_iterations=100_000, batch_size=4, save_every=100_000,
                             owner_password=PASSWORD, api_name="/train", **SMALL_MODEL)
    assert started["is_training"]
    with pytest.raises(AppError, match=REFUSED.format("stop training")):
        client.predict(api_name="/stop_training")
    assert client.predict(api_name="/status")["is_training"]
    assert client.predict(owner_password=PASSWORD, api_name="/stop_training")["status"] == "stopping"
    paused = wait_idle(client)
    assert paused["state"] == "paused"

    name = paused["checkpoint"]
    with pytest.raises(AppError, match=REFUSED.format("delete checkpoints")):
        client.predict(checkpoint=name, api_name="/delete_checkpoint")
    with pytest.raises(AppError, match=REFUSED.format("resume training")):
        client.predict(checkpoint=name, max_iterations=10, api_name="/resume_training")
    with pytest.raises(AppError, match=REFUSED.format("push checkpoints")):
        client.predict(checkpoint=name, hub_repo_id="visitor/repo", api_name="/push_checkpoint")
    listed = [e["name"] for e in client.predict(api_name="/list_checkpoints")["checkpoints"]]
    assert name in listed  # a visitor sees the run's checkpoints (its model_best as well)
    assert client.predict(checkpoint=name, prompt="ROMEO:", max_new_tokens=5, api_name="/generate")["text"]
    for each in listed:
        assert client.predict(checkpoint=each, owner_password=PASSWORD, api_name="/delete_checkpoint") == {"deleted": each}
    assert client.predict(api_name="/list_checkpoints")["checkpoints"] == []


def trained(app: AppProcess, run: str) -> str:
    """Train a short run on an uploaded corpus as the owner; return its checkpoint's listed name."""
    client = Client(app.url, verbose=False)
    client.predict(corpus_text=small_corpus(), max_iterations=10, batch_size=4, save_every=100_000, run_name=run,
                   owner_password=PASSWORD, api_name="/train", **SMALL_MODEL)
    return wait_idle(client)["checkpoint"]


def download(app: AppProcess, name: str, password: str) -> tuple[list[str] | None, str]:
    """Press the Checkpoints tab's Download for ``name`` with ``password``; return the zip's names and the message."""
    page = PageSession(app.url)
    page.call("poll", None, password, "", "", None, None, None)  # lists the checkpoints in this session's dropdowns
    archive, message = page.call("download", name, password, "", "")
    if not archive.get("visible"):
        return None, message
    with zipfile.ZipFile(archive["value"]["path"]) as zipped:
        return zipped.namelist(), message


def test_a_visitors_zip_holds_the_checkpoint_but_never_the_corpus_and_only_the_owner_verifies(owned):
    name = trained(owned, "shared")
    corpus = f"shared/{Checkpoint.open(owned.checkpoint_dir / name).corpus['file']}"
    weights = f"{name}/model.safetensors"
    visitor, _ = download(owned, name, "")
    assert weights in visitor and corpus not in visitor
    owner, _ = download(owned, name, PASSWORD)
    assert weights in owner and corpus in owner

    page = PageSession(owned.url)
    page.call("poll", None, "", "", "", None, None, None)
    *listing, message = page.call("refresh", "", "", "", None, None, None)
    assert REFUSED.format("verify checkpoint files") in message
    client = Client(owned.url, verbose=False)
    with pytest.raises(AppError, match=REFUSED.format("verify checkpoint files")):
        client.predict(verify=True, api_name="/list_checkpoints")
    verified = client.predict(verify=True, owner_password=PASSWORD, api_name="/list_checkpoints")["checkpoints"]
    assert all(e["valid"] for e in verified) and name in [e["name"] for e in verified]


def test_without_visitors_generate_only_the_owner_downloads(tmp_path):
    closed = AppProcess.start(tmp_path, AZR_OWNER_PASSWORD=PASSWORD, AZR_VISITORS_GENERATE="0")
    try:
        name = trained(closed, "closed")
        visitor, message = download(closed, name, "")
        assert visitor is None and REFUSED.format("download checkpoints") in message
        owner, _ = download(closed, name, PASSWORD)
        assert f"{name}/model.safetensors" in owner
    finally:
        closed.stop()


def test_owners_come_from_the_environment(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert Access.from_environment("127.0.0.1").is_owner(None)  # nothing set, this machine only: as before
    nobody = Access.from_environment("0.0.0.0")
    assert not nobody.is_owner(Caller(password="anything")) and "this app has no owner" in nobody.how()

    monkeypatch.setenv("AZR_OWNER_PASSWORD", PASSWORD)
    locked = Access.from_environment("127.0.0.1")
    assert locked.is_owner(Caller(password=PASSWORD)) and not locked.is_owner(Caller(password="guess"))
    assert locked.gradio_auth() is None and PASSWORD not in repr(locked)
    monkeypatch.setenv("AZR_PRIVATE", "1")
    assert Access.from_environment("0.0.0.0").gradio_auth() == [("owner", PASSWORD)]

    monkeypatch.delenv("AZR_PRIVATE")
    monkeypatch.setenv("AZR_VISITORS_GENERATE", "0")
    owners_only = Access.from_environment("0.0.0.0")
    with pytest.raises(AccessError, match=REFUSED.format("generate text here")):
        owners_only.check_use(Caller(), "generate text here")
    owners_only.check_use(Caller(password=PASSWORD), "generate text here")


def signed_session(secret: str, user: str, orgs: tuple[str, ...] = ()) -> str:
    """The session cookie Gradio's OAuth callback leaves for a signed-in user (Starlette's SessionMiddleware)."""
    userinfo = {"preferred_username": user, "name": user, "profile": "", "picture": "",
                "orgs": [{"preferred_username": org} for org in orgs]}
    session = {"oauth_info": {"access_token": "token", "scope": "openid profile", "expires_at": time.time() + 3600,
                              "userinfo": userinfo}}
    signer = itsdangerous.TimestampSigner(hashlib.sha256(f"{secret}-v4".encode()).hexdigest())
    return signer.sign(base64.b64encode(json.dumps(session).encode())).decode()


def test_on_a_space_the_owners_sign_in_with_hugging_face(monkeypatch, tmp_path):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in dict(SYSTEM="spaces", SPACE_ID="team/azr", SPACE_AUTHOR_NAME="team", OAUTH_CLIENT_ID="id",
                            AZR_OWNERS="Carol").items():
        monkeypatch.setenv(name, value)
    for name, value in dict(OAUTH_CLIENT_ID="id", OAUTH_CLIENT_SECRET="secret", OAUTH_SCOPES="openid profile",
                            OPENID_PROVIDER_URL="http://127.0.0.1:9").items():  # read by Gradio at import
        monkeypatch.setattr(gradio.oauth, name, value)
    access = Access.from_environment("0.0.0.0")
    assert (access.oauth, access.owners, access.open) == (True, {"team", "carol"}, False)
    demo = build_ui(TrainingJob(tmp_path, hub_repo=""), access)
    assert demo.expects_oauth  # the page has the sign-in button
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, ssr_mode=False, prevent_thread_lock=True, quiet=True)
    try:
        assert {"/login/huggingface", "/login/callback"} <= {getattr(r, "path", "") for r in demo.app.routes}
        for user, orgs, allowed in (("", (), False), ("mallory", ("others",), False), ("bob", ("team",), True),
                                    ("carol", (), True)):
            headers = {"Cookie": f"session={signed_session('secret', user, orgs)}"} if user else {}
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, headers=headers)
            if allowed:
                assert client.predict(api_name="/stop_training")["status"] == "not training"
            else:
                with pytest.raises(AppError, match=REFUSED.format("stop training") + ".*sign in with Hugging Face"):
                    client.predict(api_name="/stop_training")
    finally:
        demo.close()
