"""Nothing outside a checkpoint leaves the machine: a checkpoint that is, or holds, a symbolic link is refused with
one sentence by listing, verifying, zipping, pushing (the real client against the local Hub server) and deleting,
and nothing outside it is opened or listed; leftovers (``.tmp-*``, ``.trash-*``, ``.push-*``) go at the next start.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import FAST

from azr import AZRTrainer, build_model
from azr.app.jobs import HubSettings, TrainingJob
from azr.checkpoints import storage
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.statefile import SEAL, STATE_FILE, seal
from azr.cli.main import main
from azr.errors import CheckpointError
from azr.hub import publish

RUN, NAME = "linked", "model_iter_10"
REPO = "user/leak"
_watched: list[tuple[str, list[str]]] = []  # (folder, paths opened or listed under it) while a test watches
_inside = threading.local()


def _audit(event: str, args: tuple) -> None:
    """Record every file opened and folder listed (in any thread) that lies, links resolved, in a watched folder."""
    if not _watched or event not in ("open", "os.listdir", "os.scandir", "os.link") or getattr(_inside, "on", False):
        return
    if not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    _inside.on = True
    try:
        real = os.path.realpath(os.fsdecode(args[0]))
        for folder, seen in _watched:
            if real == folder or real.startswith(folder + os.sep):
                seen.append(real)
    finally:
        _inside.on = False


sys.addaudithook(_audit)


@pytest.fixture
def outside(tmp_path) -> list[str]:
    """A folder outside every checkpoint (holding a secret); yields the paths under it opened or listed so far (a
    test clears the list after its own setup)."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("root:x:0:0:the password file\n")
    seen: list[str] = []
    _watched.append((str(folder.resolve()), seen))
    yield seen
    _watched.clear()


@pytest.fixture(scope="module")
def trained(texts, tokenizer, model_config, tmp_path_factory) -> Path:
    """The run ``linked`` holding model_iter_10 and its corpus, trained once for the module."""
    directory = tmp_path_factory.mktemp("trained") / RUN
    trainer = AZRTrainer(build_model(model_config, seed=0), tokenizer, device="cpu")
    for _ in trainer.train(texts, 10, directory, **FAST):
        pass
    return directory


@pytest.fixture
def root(trained, tmp_path) -> Path:
    """A runs root of its own holding a copy of the trained run."""
    shutil.copytree(trained, tmp_path / "root" / RUN)
    return tmp_path / "root"


def refused_everywhere(root: Path, name: str, hub_server, message: str) -> None:
    """Listing marks the checkpoint invalid; opening, zipping, pushing (app and uploader) and deleting refuse it."""
    job = TrainingJob(root, hub_repo="")
    [entry] = [e for e in job.list_checkpoints(verify=True)[0] if e["name"] == name]
    assert not entry["valid"] and re.match(f"it {message}", entry["reason"])
    path = root / name
    for attempt in (lambda: Checkpoint.open(path), lambda: job.archive(name), lambda: job.delete(name),
                    lambda: job.push(name, HubSettings(REPO)), lambda: publish.push(path, REPO, corpus_root=root / RUN),
                    lambda: publish.staging_copy(path)):
        with pytest.raises(CheckpointError, match=f"is invalid: it {message}.*nothing outside a checkpoint"):
            attempt()
    with pytest.raises(KeyError):
        hub_server.files(REPO)  # not even created: nothing was sent


def test_a_checkpoint_holding_a_link_is_refused_and_nothing_outside_is_read(root, outside, hub_env, hub_server,
                                                                            tmp_path):
    link = root / RUN / NAME / "leak.txt"
    link.symlink_to(tmp_path / "outside" / "secret.txt")
    outside.clear()
    refused_everywhere(root, f"{RUN}/{NAME}", hub_server, r"holds a symbolic link \(leak.txt\)")
    assert link.is_symlink() and (tmp_path / "outside" / "secret.txt").is_file()
    assert outside == []


def test_a_checkpoint_that_is_a_link_is_refused_and_its_target_kept(root, outside, hub_env, hub_server, tmp_path):
    target = tmp_path / "outside" / "model_iter_9"
    shutil.copytree(root / RUN / NAME, target)  # a valid checkpoint's files: only the link is wrong
    (root / RUN / "model_iter_9").symlink_to(target, target_is_directory=True)
    outside.clear()
    refused_everywhere(root, f"{RUN}/model_iter_9", hub_server, "is a symbolic link")
    [entry] = [e for e in TrainingJob(root, hub_repo="").list_checkpoints()[0] if e["name"] == f"{RUN}/model_iter_9"]
    assert entry["size_bytes"] == 0
    assert (target / "model.safetensors").is_file() and (root / RUN / "model_iter_9").is_symlink()
    assert outside == []


def test_links_in_the_history_or_a_corpus_out_of_the_run_are_refused(root, outside, hub_env, hub_server, tmp_path):
    history = root / RUN / "history"
    shutil.copytree(history, tmp_path / "outside" / "history") if history.is_dir() else None
    shutil.rmtree(history, ignore_errors=True)
    history.symlink_to(tmp_path / "outside" / "history", target_is_directory=True)
    outside.clear()
    with pytest.raises(CheckpointError, match=r"holds a symbolic link \(history\)"):
        TrainingJob(root, hub_repo="").archive(f"{RUN}/{NAME}")
    with pytest.raises(CheckpointError, match="symbolic link"):
        publish.push(root / RUN / NAME, REPO)
    assert outside == []
    history.unlink()

    state_file = root / RUN / NAME / STATE_FILE
    state = json.loads(state_file.read_text())
    state["corpus"]["file"] = "../outside/secret.txt"  # a state file sealed anew: only the name is wrong
    shutil.copytree(tmp_path / "outside", root / "outside")  # the name would lead there from the runs root
    state_file.write_bytes(seal({k: v for k, v in state.items() if k != SEAL}))
    outside.clear()
    with pytest.raises(CheckpointError, match="corpus '../outside/secret.txt' is not a file of its run"):
        TrainingJob(root, hub_repo="").archive(f"{RUN}/{NAME}")
    with pytest.raises(CheckpointError, match="is not a file of its run"):
        publish.push(root / RUN / NAME, REPO, corpus_root=root / RUN)
    with pytest.raises(KeyError):
        hub_server.files(REPO)
    assert outside == []


def test_leftovers_and_their_links_are_removed_at_the_next_start(root, outside, tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    dead = ended.pid
    run = root / RUN
    folder = tmp_path / "outside"
    (run / f".trash-model_iter_5-{os.getpid()}-0a0a0a0a").symlink_to(folder, target_is_directory=True)
    (run / f".tmp-model_iter_7-{dead}-0b0b0b0b").symlink_to(folder / "secret.txt")
    (run / f".push-model_iter_8-{dead}-0c0c0c0c" / NAME).mkdir(parents=True)
    (run / f".push-model_iter_8-{dead}-0c0c0c0c" / NAME / "leak").symlink_to(folder)
    (run / "history").mkdir(exist_ok=True)
    (run / "history" / f".tmp-chunk-{dead}-0d0d0d0d").symlink_to(folder)
    (root / f".trash-old-run-{dead}-0e0e0e0e").symlink_to(folder, target_is_directory=True)
    linked = run / "model_iter_3"
    linked.symlink_to(folder, target_is_directory=True)
    outside.clear()
    storage.discard(linked)  # deleting a link removes the link, not what it points to

    TrainingJob(root, hub_repo="")  # the app's start
    assert outside == []
    leftovers = [p for p in (*root.iterdir(), *run.iterdir(), *(run / "history").iterdir())
                 if p.name.startswith((".tmp-", ".trash-", ".push-"))]
    assert leftovers == [] and not linked.is_symlink()
    assert (folder / "secret.txt").read_text().startswith("root:x")
    assert Checkpoint.open(run / NAME).iteration == 10


def test_a_corpus_that_is_a_link_is_refused_alike_by_listing_resume_download_and_push(root, outside, hub_env,
                                                                                     hub_server, tmp_path, capsys):
    run, name = root / RUN, f"{RUN}/{NAME}"
    [corpus] = (run / "corpus").iterdir()
    shutil.copy(corpus, tmp_path / "outside" / "corpus.txt")  # the same text: only the link is wrong
    corpus.unlink()
    corpus.symlink_to(tmp_path / "outside" / "corpus.txt")
    outside.clear()
    reason = f"its corpus 'corpus/{corpus.name}' is not a file of its run"
    job = TrainingJob(root, hub_repo="")
    for verify in (False, True):
        [entry] = [e for e in job.list_checkpoints(verify=verify)[0] if e["name"] == name]
        assert (entry["valid"], entry["reason"]) == (False, reason)
    for attempt in (lambda: job.resume(name, 12), lambda: job.archive(name), lambda: job.push(name, HubSettings(REPO)),
                    lambda: publish.push(run / NAME, REPO, corpus_root=run),
                    lambda: AZRTrainer.from_checkpoint(run / NAME, device="cpu")):
        with pytest.raises(CheckpointError) as refused:
            attempt()
        assert str(refused.value).endswith(f" is invalid: {reason}.")
    assert main(["resume", str(run / NAME), "--max-iterations", "12"]) == 2
    assert capsys.readouterr().err.strip().endswith(f" is invalid: {reason}.")
    with pytest.raises(KeyError):
        hub_server.files(REPO)
    assert outside == [] and sorted(p.name for p in run.glob("model_*")) == [NAME]
