"""The ``azr`` command with the Hub: --push-to-hub, resume from hf://, list/inspect/pull/push, errors."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import FAST as FAST_SETTINGS
from test_cli import FAST, TINY

from azr import AZRTrainer, default_corpus
from azr.checkpoints.checkpoint import Checkpoint
from azr.cli.commands import _hub
from azr.cli.main import build_parser, main


def azr(*args: object, cwd=None) -> subprocess.CompletedProcess:
    """Run ``azr ARGS`` with the current environment (pointed at the local Hub server by ``hub_env``)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(["azr", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.fixture
def pushed_run(hub_env, tmp_path):
    """Machine A: `azr train --push-to-hub user/run` to 30 iterations on a small corpus file."""
    corpus = tmp_path / "small.txt"
    corpus.write_text(default_corpus()[0][:60_000], encoding="utf-8")
    result = azr("train", *TINY, *FAST, "--texts", corpus, "--runs-dir", tmp_path, "--run", "a", "--max-iterations",
                 30, "--push-to-hub", "user/run")
    assert result.returncode == 0, result.stderr
    return tmp_path / "a", result


def test_train_pushes_every_checkpoint(pushed_run, hub_server):
    _, result = pushed_run
    for name in ("model_iter_10", "model_iter_20", "model_iter_30"):
        assert f"Push of {name}: pushed " in result.stdout
    assert "All 3 checkpoints pushed to user/run." in result.stdout
    assert "checkpoints/model_iter_30/model.safetensors" in hub_server.files("user/run")


def test_machine_b_resumes_from_the_repo_id(pushed_run, tmp_path, monkeypatch):
    directory, _ = pushed_run
    local = azr("resume", directory / "model_iter_30", "--max-iterations", 45, "--runs-dir", tmp_path, "--run", "l")
    assert local.returncode == 0, local.stderr
    machine_b = tmp_path / "machine_b"
    machine_b.mkdir()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    remote = azr("resume", "hf://user/run", "--max-iterations", 45, cwd=machine_b)  # no texts, empty cache
    assert remote.returncode == 0, remote.stderr
    assert "Resumed at iteration 30" in remote.stdout
    assert "Run directory: checkpoints/run\n" in remote.stdout  # <runs-dir>/<the repo's name>
    resumed = Checkpoint.open(machine_b / "checkpoints" / "run" / "model_iter_45").history()
    assert [r["loss"] for r in resumed] == [r["loss"] for r in Checkpoint.open(tmp_path / "l" / "model_iter_45").history()]


def test_list_inspect_pull_and_push(pushed_run, tmp_path, hub_server):
    listing = azr("list", "hf://user/run", "--json")
    assert listing.returncode == 0, listing.stderr
    assert [c["name"] for c in json.loads(listing.stdout)] == ["model_iter_30", "model_iter_20", "model_iter_10"]
    table = azr("list", "hf://user/run")
    assert "model_iter_20" in table.stdout and "valid" in table.stdout
    inspected = json.loads(azr("inspect", "hf://user/run/model_iter_20", "--json").stdout)
    assert inspected["iteration"] == 20 and inspected["valid"]
    pulled = azr("pull", "hf://user/run/model_iter_10", "--to", tmp_path / "pulled")
    assert pulled.returncode == 0 and Checkpoint.open(tmp_path / "pulled" / "model_iter_10").state["iteration"] == 10
    pulled = azr("pull", "hf://user/run/model_iter_20", cwd=tmp_path)  # into checkpoints/<the repo's name>
    assert pulled.returncode == 0 and Checkpoint.open(tmp_path / "checkpoints" / "run" / "model_iter_20").state["iteration"] == 20
    pushed = azr("push", tmp_path / "pulled" / "model_iter_10", "user/copy")
    assert pushed.returncode == 0, pushed.stderr
    assert "checkpoints/model_iter_10/trainer_state.json" in hub_server.files("user/copy")


def test_hub_errors_are_one_line_with_exit_status_2(pushed_run):
    results = {
        "missing repo": azr("resume", "hf://user/missing", "--max-iterations", 40),
        "missing checkpoint": azr("inspect", "hf://user/run/model_iter_7"),
        "bad revision": azr("list", "hf://user/run@nope"),
    }
    expected = {
        "missing repo": "'user/missing' was not found or you have no access (a token was used)",
        "missing checkpoint": "Checkpoint 'model_iter_7' is not in 'user/run'; it has: model_iter_30",
        "bad revision": "Revision 'nope' was not found in 'user/run'",
    }
    for name, result in results.items():
        assert result.returncode == 2, (name, result.stderr)
        assert result.stderr.startswith("azr: error: ") and expected[name] in result.stderr, name
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, name


def test_space_deploy_command(hub_env, hub_server):
    result = azr("space", "deploy", "user/azr-space", "--set-token-secret")
    assert result.returncode == 0, result.stderr
    assert "Deployed user/azr-space" in result.stdout
    files = hub_server.files("user/azr-space", repo_type="space")
    assert {"app.py", "requirements.txt", "README.md", "azr/training/trainer.py",
            "azr/data/embedded/tinyshakespeare.txt"} <= set(files)
    assert hub_server.space_secrets("user/azr-space") == {"HF_TOKEN": hub_env["token"]}
    assert hub_env["token"] not in result.stdout + result.stderr


def test_push_takes_the_repo_as_hf_url_like_every_other_command(hub_env, hub_server, make_model, tokenizer, texts,
                                                                tmp_path, capsys):
    AZRTrainer(make_model(), tokenizer, device="cpu").train_continuous(texts, 10, tmp_path / "a", **FAST_SETTINGS)
    checkpoint = str(tmp_path / "a" / "model_iter_10")
    assert main(["push", checkpoint, "hf://user/copy"]) == 0, capsys.readouterr().err
    assert "Pushed" in capsys.readouterr().out
    assert main(["push", checkpoint, "user/plain"]) == 0, capsys.readouterr().err  # the documented form still works
    for repo in ("user/copy", "user/plain"):
        assert "checkpoints/model_iter_10/trainer_state.json" in hub_server.files(repo)
    for target in ("hf://user/copy@v1", "hf://user/copy/model_iter_10"):
        assert main(["push", checkpoint, target]) == 2
        error = capsys.readouterr().err
        assert error.startswith("azr: error: ") and "a repo" in error and len(error.splitlines()) == 1, error
    train = build_parser().parse_args(["train", "--push-to-hub", "hf://user/run"])
    assert _hub(train)["hub_repo_id"] == "user/run"  # --push-to-hub takes the same two forms
