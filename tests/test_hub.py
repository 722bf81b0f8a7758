"""Hub pushes, references and errors, with the real huggingface_hub client against the local Hub server."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import FAST

from azr import AZRTrainer, CheckpointError, ConfigError, HubError
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.names import is_hub_reference
from azr.checkpoints.runs import RunLock
from azr.checkpoints.statefile import seal
from azr.hub import publish
from azr.hub import sync as hub
from azr.hub.http import api

REPO = "user/run"


def train_and_push(make_model, tokenizer, texts, directory, target=30, **kwargs):
    """Train a tiny run pushing to REPO; return the trainer and its statuses."""
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = list(trainer.train(texts, target, directory, hub_repo_id=REPO, **{**FAST, **kwargs}))
    return trainer, statuses


@pytest.fixture
def pushed(hub_env, hub_server, make_model, tokenizer, texts, tmp_path):
    """A repo holding model_iter_10/20/30 of a 30-iteration run (and the local run's directory)."""
    trainer, statuses = train_and_push(make_model, tokenizer, texts, tmp_path / "local")
    return tmp_path / "local", statuses


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter (a different machine, as far as the HF cache is concerned)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)


def test_every_checkpoint_is_pushed_while_training_goes_on(hub_env, hub_server, make_model, tokenizer, texts,
                                                           tmp_path):
    hub_server.hang_next(2, 1.5, methods=("POST",))  # slow network: the first pushes take seconds
    trainer, statuses = train_and_push(make_model, tokenizer, texts, tmp_path)
    in_flight = [s for s in statuses if s.state == "running" and any(
        not v.startswith("pushed") for v in s.pushes.values())]
    assert in_flight, "training waited for the network"
    final = statuses[-1]
    assert final.state == "completed" and "All 3 checkpoints pushed" in final.message
    assert set(final.pushes) == {"model_iter_10", "model_iter_20", "model_iter_30"}
    assert all(state.startswith("pushed ") for state in final.pushes.values())
    files = hub_server.files(REPO)
    for name in final.pushes:
        local = {p.name for p in (tmp_path / name).iterdir()}
        assert {f.split("/")[-1] for f in files if f.startswith(f"checkpoints/{name}/")} == local
    assert files["model.safetensors"] == (tmp_path / "model_iter_30" / "model.safetensors").read_bytes()
    assert any(f.startswith("corpus/") for f in files)
    card = files["README.md"].decode()
    assert "text-generation" in card and "model_iter_30" in card and "training_curves.svg" in card
    assert b"<polyline" in files["training_curves.svg"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".push-")]


def test_list_of_a_repo_matches_the_local_list(pushed):
    directory, _ = pushed
    remote = hub.list_checkpoints(f"hf://{REPO}")
    assert [i.name for i in remote] == ["model_iter_30", "model_iter_20", "model_iter_10"]
    assert all(i.valid and i.has_optimizer for i in remote)
    assert remote[0].iteration == 30 and remote[0].loss == Checkpoint.open(directory / "model_iter_30").state["loss"]


RESUME_SCRIPT = """
    import json, sys
    from azr import AZRTrainer
    trainer = AZRTrainer.from_checkpoint(sys.argv[1], device="cpu")
    for status in trainer.train(None, 45, sys.argv[2], resume_from=sys.argv[1], batch_size=4, save_every=10,
                                status_every=5, self_play_every=3, val_every=10):
        pass
    print(json.dumps({"state": status.state, "history": list(trainer.history)}))
"""


def test_another_machine_resumes_from_the_repo_id_alone(pushed, hub_env, tmp_path):
    directory, _ = pushed
    local = run_python(RESUME_SCRIPT, str(directory / "model_iter_30"), str(tmp_path / "local_resume"))
    assert local.returncode == 0, local.stderr
    os.environ["HF_HOME"] = str(tmp_path / "empty_hf_home")  # an empty cache, an empty checkpoint dir
    remote = run_python(RESUME_SCRIPT, f"hf://{REPO}", str(tmp_path / "machine_b"))
    assert remote.returncode == 0, remote.stderr
    local_run, remote_run = json.loads(local.stdout), json.loads(remote.stdout)
    assert remote_run["state"] == "completed"
    assert [r["iteration"] for r in remote_run["history"]] == list(range(1, 46))
    assert [r["loss"] for r in remote_run["history"]] == [r["loss"] for r in local_run["history"]]
    assert (tmp_path / "machine_b" / "model_iter_45").is_dir()


def test_from_pretrained_on_the_repo_gives_the_newest_weights(pushed):
    directory, _ = pushed
    loaded = run_python("""
        import sys, torch
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM, pipeline
        model = AutoModelForCausalLM.from_pretrained("user/run")
        expected = load_file(sys.argv[1])
        assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
        print(pipeline("text-generation", model="user/run")("To be", max_new_tokens=5)[0]["generated_text"])
    """, str(directory / "model_iter_30" / "model.safetensors"))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.startswith("To be")


def test_named_checkpoints_and_revisions_resolve(pushed, hub_server):
    directory, _ = pushed
    path = hub.download_checkpoint(f"hf://{REPO}/model_iter_20").path
    assert Checkpoint.open(path).state["iteration"] == 20
    assert hub.download_checkpoint(f"hf://{REPO}").state["iteration"] == 30
    first_commit = [c.commit_id for c in api().list_repo_commits(REPO)][-2]  # the push of model_iter_10
    path = hub.download_checkpoint(f"hf://{REPO}@{first_commit}").path
    assert Checkpoint.open(path).state["iteration"] == 10
    api().create_tag(REPO, tag="v1", revision=first_commit)
    assert hub.download_checkpoint(f"hf://{REPO}@v1/model_iter_10").state["iteration"] == 10


def test_pull_and_push_commands(pushed, tmp_path):
    pulled = hub.pull(f"hf://{REPO}/model_iter_20", to=tmp_path / "pulled")
    assert pulled == tmp_path / "pulled" / "model_iter_20"
    assert Checkpoint.open(pulled).state["iteration"] == 20
    corpus = Checkpoint.open(pulled).state["corpus"]["file"]
    assert (tmp_path / "pulled" / corpus).is_file()  # resumable here without the original files
    commit = publish.push(pulled, "user/copy", private=False)
    assert len(commit) == 40
    assert [i.name for i in hub.list_checkpoints("hf://user/copy")] == ["model_iter_20"]


def test_a_pull_into_a_run_being_trained_is_refused_and_changes_nothing(pushed, tmp_path):
    target = tmp_path / "pulled"
    target.mkdir()
    training = RunLock(target)  # what a training of that run holds
    with pytest.raises(ConfigError, match=r"is being trained by .* Pull into another directory \(--to\)"):
        hub.pull(f"hf://{REPO}/model_iter_20", to=target)
    assert [p.name for p in target.iterdir()] == [".lock"]
    training.release()
    assert hub.pull(f"hf://{REPO}/model_iter_20", to=target) == target / "model_iter_20"


def test_a_pulled_corpus_name_leading_out_of_the_run_is_refused(pushed, hub_server, tmp_path):
    state = json.loads(hub_server.files(REPO)["checkpoints/model_iter_20/trainer_state.json"])
    state["corpus"]["file"] = "../planted.txt"  # a state file sealed anew: only the name is wrong
    state.pop("state_sha256")
    api().upload_file(path_or_fileobj=seal(state), repo_id=REPO,
                          path_in_repo="checkpoints/model_iter_20/trainer_state.json")
    with pytest.raises(CheckpointError, match="corpus '../planted.txt' is not a file of its run"):
        hub.download_checkpoint(f"hf://{REPO}/model_iter_20")  # opening it refuses it
    [snapshots] = (Path(os.environ["HF_HOME"]) / "hub").glob("models--*/snapshots")
    (snapshots / "planted.txt").write_text("not the corpus")  # where the name leads from a snapshot's root
    with pytest.raises(CheckpointError, match="corpus '../planted.txt' is not a file of its run"):
        hub.pull(f"hf://{REPO}/model_iter_20", to=tmp_path / "pulled")
    assert not (tmp_path / "planted.txt").exists() and not (tmp_path / "pulled" / "model_iter_20").exists()


def test_transient_server_errors_are_retried_until_every_checkpoint_is_pushed(hub_env, hub_server, make_model,
                                                                              tokenizer, texts, tmp_path):
    hub_server.fail_next(4, 503, methods=("POST",))
    trainer, statuses = train_and_push(make_model, tokenizer, texts, tmp_path)
    final = statuses[-1]
    assert final.state == "completed"
    assert all(state.startswith("pushed ") for state in final.pushes.values()), final.pushes
    assert ("POST", "/api/repos/create") in hub_server.requests
    assert {i.name for i in hub.list_checkpoints(REPO)} == {"model_iter_10", "model_iter_20", "model_iter_30"}
    assert {p.name for p in tmp_path.iterdir() if p.name.startswith("model_")} == set(final.pushes)


def test_a_server_gone_mid_run_is_reported_and_training_completes(hub_env, hub_server, make_model, tokenizer,
                                                                  texts, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = []
    for status in trainer.train(texts, 30, tmp_path, hub_repo_id=REPO, hub_flush_timeout_s=3, **FAST):
        statuses.append(status)
        if status.iteration == 5:  # before the first checkpoint: with background saves its push could be done by 10
            hub_server.stop()
    final = statuses[-1]
    assert final.state == "completed"
    assert not any(state.startswith("pushed") for state in final.pushes.values())
    assert "Not pushed to user/run: model_iter_10 (" in final.message and "model_iter_30 (" in final.message
    assert "pending: Cannot reach the Hub" in final.pushes["model_iter_10"]  # kept in the run for later
    assert {p.name for p in tmp_path.iterdir() if p.name.startswith("model_")} == {
        "model_iter_10", "model_iter_20", "model_iter_30"}


@pytest.mark.parametrize("reference, message", [
    ("hf://user/missing", "'user/missing' was not found or you have no access (a token was used)"),
    ("hf://user/run/model_iter_999", "Checkpoint 'model_iter_999' is not in 'user/run'; it has: model_iter_30"),
    ("hf://user/run@nope", "Revision 'nope' was not found in 'user/run'"),
    ("hf://user/empty", "Repository 'user/empty' has no checkpoints"),
])
def test_each_hub_error_has_its_message(pushed, reference, message):
    api().create_repo("user/empty", exist_ok=True)
    with pytest.raises(HubError) as error:
        hub.download_checkpoint(reference)
    assert message in str(error.value)


def test_no_access_without_a_token_says_so(pushed, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", os.environ["HF_HOME"] + "-anonymous")
    with pytest.raises(HubError, match="no access \\(no token was used\\)"):
        hub.download_checkpoint(f"hf://{REPO}")  # the repo is private by default


def test_offline_with_nothing_cached(pushed, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    with pytest.raises(HubError, match="offline .* nothing is cached"):
        hub.download_checkpoint(f"hf://{REPO}/model_iter_20")


def test_offline_uses_what_is_cached(pushed, monkeypatch):
    hub.download_checkpoint(f"hf://{REPO}/model_iter_20")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.download_checkpoint(f"hf://{REPO}/model_iter_20").state["iteration"] == 20


def test_a_corrupted_download_fails_its_checksums(pushed, hub_server):
    state = json.loads(hub_server.files(REPO)["checkpoints/model_iter_20/trainer_state.json"])
    state["files"]["model.safetensors"] = "0" * 64
    state.pop("state_sha256")
    api().upload_file(path_or_fileobj=seal(state), repo_id=REPO,
                          path_in_repo="checkpoints/model_iter_20/trainer_state.json")
    with pytest.raises(CheckpointError, match="failed verification: checksum mismatch in model.safetensors"):
        hub.download_checkpoint(f"hf://{REPO}/model_iter_20")


def test_the_token_is_written_nowhere(hub_env, hub_server, make_model, tokenizer, texts, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    trainer, statuses = train_and_push(make_model, tokenizer, texts, tmp_path / "run", hub_token=hub_env["token"])
    token = hub_env["token"]
    assert all(token not in json.dumps(s.as_dict()) for s in statuses)
    assert token not in caplog.text
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    for name, content in hub_server.files(REPO).items():
        assert token.encode() not in content, name


@pytest.mark.parametrize("ref, expected", [
    ("hf://user/run", True), ("hf://user/run@v1/model_iter_10", True), ("user/run", False),
    ("checkpoints/model_iter_999", False), ("./user/run", False), ("/abs/path", False), ("model_iter_5", False),
])
def test_only_hf_urls_are_hub_references(tmp_path, monkeypatch, ref, expected):
    monkeypatch.chdir(tmp_path)  # nothing exists here: a missing path is still a path
    assert is_hub_reference(ref) is expected


def test_history_chunks_travel_with_their_checkpoints(hub_env, hub_server, make_model, tokenizer, texts, tmp_path,
                                                      monkeypatch):
    monkeypatch.setattr("azr.checkpoints.history.CHUNK_RECORDS", 8)  # 30 iterations make three full chunks and a tail
    trainer, statuses = train_and_push(make_model, tokenizer, texts, tmp_path / "local")
    assert statuses[-1].state == "completed" and "All 3 checkpoints pushed" in statuses[-1].message
    local = Checkpoint.open(tmp_path / "local" / "model_iter_30")
    assert len(local.history_chunks) == 3
    files = hub_server.files(REPO)
    assert {f"checkpoints/history/{d}.safetensors" for d in local.history_chunks} <= set(files)
    os.environ["HF_HOME"] = str(tmp_path / "empty_hf_home")  # another machine: nothing cached
    remote = hub.open_checkpoint(f"hf://{REPO}")
    assert remote.name == "model_iter_30" and list(remote.history()) == list(trainer.history)
    pulled = Checkpoint.open(hub.pull(f"hf://{REPO}/model_iter_20", to=tmp_path / "pulled"))
    assert len(pulled.history()) == 20 and list(pulled.history()) == list(trainer.history)[:20]
