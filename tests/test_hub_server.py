"""The local Hub server works with the real `huggingface_hub` client over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
import pytest
from conftest_hub import hub_env, hub_server  # noqa: F401
from hub_server import HubServer
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

REPO = "user/repo"


@pytest.fixture
def api(hub_server: HubServer) -> HfApi:  # noqa: F811
    """Authenticated client bound to the server (in-process: endpoint passed explicitly)."""
    return HfApi(endpoint=hub_server.url, token=hub_server.token)


def _download(server: HubServer, tmp_path: Path, filename: str, **kwargs: object) -> bytes:
    path = hf_hub_download(
        REPO, filename, endpoint=server.url, token=server.token, cache_dir=tmp_path / "cache", **kwargs
    )
    return Path(path).read_bytes()


def _make_folder(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


def test_private_repo_upload_list_and_download(hub_server: HubServer, api: HfApi, tmp_path: Path) -> None:  # noqa: F811
    url = api.create_repo(REPO, private=True)
    assert url.repo_id == REPO and url == f"{hub_server.url}/{REPO}"
    assert api.whoami()["name"] == HubServer.USER
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo(REPO)
    assert exc.value.response.status_code == 409
    api.create_repo(REPO, exist_ok=True)

    folder = _make_folder(tmp_path / "src", {"a.txt": "alpha", "sub/b.json": '{"b": 1}'})
    commit = api.upload_folder(folder_path=folder, repo_id=REPO, path_in_repo="ckpt")

    assert api.list_repo_files(REPO) == [".gitattributes", "ckpt/a.txt", "ckpt/sub/b.json"]
    assert [(b.name, b.target_commit) for b in api.list_repo_refs(REPO).branches] == [("main", commit.oid)]
    info = api.model_info(REPO)
    assert info.private and info.sha == commit.oid
    assert [s.rfilename for s in info.siblings] == [".gitattributes", "ckpt/a.txt", "ckpt/sub/b.json"]
    folders = [e.path for e in api.list_repo_tree(REPO, path_in_repo="ckpt") if not hasattr(e, "size")]
    assert folders == ["ckpt/sub"]
    assert _download(hub_server, tmp_path, "ckpt/sub/b.json") == b'{"b": 1}'
    assert hub_server.files(REPO)["ckpt/a.txt"] == b"alpha"
    # Private: anonymous readers get a 401 that the client reports as RepositoryNotFoundError.
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub_server.url, token=False).model_info(REPO)


def test_snapshot_download_allow_patterns(hub_server: HubServer, api: HfApi, tmp_path: Path) -> None:  # noqa: F811
    api.create_repo(REPO)
    folder = _make_folder(tmp_path / "src", {"config.json": "{}", "w/model.bin": "w", "notes.md": "n"})
    api.upload_folder(folder_path=folder, repo_id=REPO)

    path = snapshot_download(
        REPO, endpoint=hub_server.url, token=False, cache_dir=tmp_path / "cache", allow_patterns=["*.json", "w/*"]
    )

    got = sorted(p.relative_to(path).as_posix() for p in Path(path).rglob("*") if p.is_file())
    assert got == ["config.json", "w/model.bin"]
    assert not any(p.endswith("notes.md") for _, p in hub_server.requests)


def test_revisions_tags_branches_and_deletions(hub_server: HubServer, api: HfApi, tmp_path: Path) -> None:  # noqa: F811
    api.create_repo(REPO, repo_type="dataset")
    api.create_repo(REPO)
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id=REPO).oid
    api.create_tag(REPO, tag="v1", revision=first)
    api.create_branch(REPO, branch="dev", revision="v1")
    second = api.upload_file(path_or_fileobj=b"v2", path_in_repo="f.txt", repo_id=REPO).oid

    assert len(first) == 40 and first != second
    assert _download(hub_server, tmp_path, "f.txt") == b"v2"
    assert _download(hub_server, tmp_path, "f.txt", revision=first) == b"v1"
    assert _download(hub_server, tmp_path, "f.txt", revision="v1") == b"v1"
    assert api.model_info(REPO, revision="dev").sha == first
    refs = api.list_repo_refs(REPO)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": second, "dev": first}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", first)]
    assert [c.commit_id for c in api.list_repo_commits(REPO)][:2] == [second, first]
    with pytest.raises(HfHubHTTPError) as exc:  # stale parent commit
        api.upload_file(path_or_fileobj=b"v3", path_in_repo="f.txt", repo_id=REPO, parent_commit=first)
    assert exc.value.response.status_code == 412

    folder = _make_folder(tmp_path / "src", {"keep.txt": "k", "logs/1.log": "1", "logs/2.log": "2", "old.tmp": "o"})
    api.upload_folder(folder_path=folder, repo_id=REPO)
    api.delete_file("old.tmp", repo_id=REPO)
    api.delete_folder("logs", repo_id=REPO)
    assert sorted(hub_server.files(REPO)) == [".gitattributes", "f.txt", "keep.txt"]
    _make_folder(tmp_path / "new", {"new.txt": "n"})
    api.upload_folder(folder_path=tmp_path / "new", repo_id=REPO, delete_patterns="*.txt")
    assert sorted(hub_server.files(REPO)) == [".gitattributes", "new.txt"]
    assert hub_server.files(REPO, revision=second)["f.txt"] == b"v2"  # history is kept

    api.upload_file(path_or_fileobj=b"d", path_in_repo="data.csv", repo_id=REPO, repo_type="dataset")
    assert hub_server.files(REPO, repo_type="dataset")["data.csv"] == b"d"


def test_pagination(hub_server: HubServer, api: HfApi) -> None:  # noqa: F811
    hub_server.page_size = 2
    api.create_repo(REPO)
    for i in range(4):
        api.upload_file(path_or_fileobj=b"x", path_in_repo=f"d/{i}.txt", repo_id=REPO)

    assert api.list_repo_files(REPO) == [".gitattributes"] + [f"d/{i}.txt" for i in range(4)]
    assert len(api.list_repo_commits(REPO)) == 5
    tree_calls = [p for m, p in hub_server.requests if p == f"/api/models/{REPO}/tree/main"]
    assert len(tree_calls) == 3  # 6 entries (5 files + folder "d") in pages of 2


def test_client_errors(hub_server: HubServer, api: HfApi, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("user/missing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("user/missing", "x", endpoint=hub_server.url, token=False, cache_dir=tmp_path)
    api.create_repo(REPO, private=True)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="nope")
    with pytest.raises(RevisionNotFoundError):
        _download(hub_server, tmp_path, ".gitattributes", revision="nope")
    with pytest.raises(EntryNotFoundError):
        _download(hub_server, tmp_path, "missing.txt")

    wrong = HfApi(endpoint=hub_server.url, token="hf_wrong")
    for call in (lambda: wrong.create_repo("user/other"), lambda: wrong.model_info(REPO)):
        with pytest.raises(HfHubHTTPError) as exc:
            call()
        assert exc.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as exc:  # anonymous write
        HfApi(endpoint=hub_server.url, token=False).create_repo("user/other")
    assert exc.value.response.status_code == 401


def test_503_retry_behaviour(hub_server: HubServer, api: HfApi) -> None:  # noqa: F811
    api.create_repo(REPO)
    preupload = ("POST", f"/api/models/{REPO}/preupload/main")

    # preupload goes through http_backoff: two 503s are retried (after 1 s + 2 s) and the upload succeeds.
    hub_server.fail_next(2, 503, methods=("POST",))
    api.upload_file(path_or_fileobj=b"ok", path_in_repo="f.txt", repo_id=REPO)
    assert hub_server.requests.count(preupload) == 3
    assert hub_server.files(REPO)["f.txt"] == b"ok"

    # create_commit posts the commit itself without retry: a 503 there surfaces as HfHubHTTPError.
    hub_server.fail_next(1, 503, methods=("POST",))
    with pytest.raises(HfHubHTTPError) as exc:
        api.delete_file("f.txt", repo_id=REPO)
    assert exc.value.response.status_code == 503
    assert "f.txt" in hub_server.files(REPO)


def test_hang_exceeds_client_timeouts(hub_server: HubServer, api: HfApi, tmp_path: Path) -> None:  # noqa: F811
    api.create_repo(REPO)
    hub_server.hang_next(1, 5.0, methods=("GET",))
    with pytest.raises(httpx2.TimeoutException):
        api.model_info(REPO, timeout=0.3)

    # hf_hub_download: a HEAD timing out (etag_timeout) with nothing cached is retried once
    # with a 60 s timeout and backoff, so a single hang does not make the download fail.
    hub_server.hang_next(1, 5.0, methods=("HEAD",))
    assert _download(hub_server, tmp_path, ".gitattributes", etag_timeout=0.3).startswith(b"*.bin")
    assert hub_server.requests.count(("HEAD", f"/{REPO}/resolve/main/.gitattributes")) == 2


def test_space_secrets_and_files(hub_server: HubServer, api: HfApi, tmp_path: Path) -> None:  # noqa: F811
    api.create_repo(REPO, repo_type="space", space_sdk="docker", space_secrets=[{"key": "A", "value": "1"}])
    api.add_space_secret(REPO, "HF_TOKEN", "secret")
    api.add_space_secret(REPO, "B", "2")
    api.delete_space_secret(REPO, "B")
    assert hub_server.space_secrets(REPO) == {"A": "1", "HF_TOKEN": "secret"}

    commit = api.upload_file(path_or_fileobj=b"FROM python", path_in_repo="Dockerfile", repo_id=REPO, repo_type="space")
    info = api.space_info(REPO)
    assert info.sha == commit.oid and info.sdk == "docker"
    assert _download(hub_server, tmp_path, "Dockerfile", repo_type="space") == b"FROM python"


def test_transformers_from_pretrained(
    hub_server: HubServer,  # noqa: F811
    hub_env: dict[str, str],  # noqa: F811
    api: HfApi,
    tmp_path: Path,
) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    config = LlamaConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=64,
        max_position_embeddings=32,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp_path / "model")
    vocab = {f"w{i}": i for i in range(63)} | {"[UNK]": 63}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]").save_pretrained(tmp_path / "model")
    api.create_repo(REPO, private=True)
    api.upload_folder(folder_path=tmp_path / "model", repo_id=REPO)
    assert api.get_safetensors_metadata(REPO).parameter_count == {"F32": model.num_parameters()}  # Range request

    # transformers has no endpoint argument: load in a fresh interpreter configured by `hub_env`.
    script = (
        "import sys, torch; from transformers import AutoModelForCausalLM, AutoTokenizer;"
        f"m = AutoModelForCausalLM.from_pretrained({REPO!r}); t = AutoTokenizer.from_pretrained({REPO!r});"
        "torch.save(m.state_dict(), sys.argv[1]); print(t('w1 w2 zz')['input_ids'])"
    )
    out = tmp_path / "loaded.pt"
    result = subprocess.run(
        [sys.executable, "-c", script, str(out)], env=os.environ, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [1, 2, 63]
    loaded = torch.load(out, weights_only=True)
    assert loaded.keys() == model.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert ("GET", f"/api/models/{REPO}") in hub_server.requests
    assert Path(hub_env["home"], "hub", "models--user--repo").is_dir()


def test_range_requests(hub_server: HubServer, api: HfApi) -> None:  # noqa: F811
    api.create_repo(REPO)
    api.upload_file(path_or_fileobj=b"0123456789", path_in_repo="f.bin", repo_id=REPO)
    url = f"{hub_server.url}/{REPO}/resolve/main/f.bin"
    for header, status, body in (("bytes=2-5", 206, b"2345"), ("bytes=-3", 206, b"789"), ("bytes=7-", 206, b"789")):
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": header})) as response:
            assert (response.status, response.read()) == (status, body)
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=20-"}))
    assert exc.value.code == 416
