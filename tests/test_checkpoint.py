"""The checkpoint format: atomic, verified, listed honestly, loadable by plain transformers."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import blake3
import pytest
import torch
from conftest import FAST, temporaries
from safetensors.torch import load as safetensors_load
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from azr import AZRTrainer, CheckpointError, list_checkpoints
from azr.checkpoints import storage, tensorfile
from azr.checkpoints.checkpoint import Checkpoint, verify_checkpoint
from azr.checkpoints.names import HISTORY_FILE, OPTIMIZER_FILE, RNG_FILE, WEIGHTS_FILE
from azr.checkpoints.runs import rotate_checkpoints
from azr.checkpoints.statefile import FORMAT_VERSION, STATE_FILE, seal


@pytest.fixture
def trained(texts, tokenizer, make_model, tmp_path):
    """A directory with model_iter_10 and model_iter_20 of a tiny run, and its trainer."""
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    for _ in trainer.train(texts, 20, tmp_path, **FAST):
        pass
    return tmp_path, trainer


def test_a_checkpoint_holds_the_promised_files_and_state(trained):
    directory, _ = trained
    checkpoint = directory / "model_iter_20"
    names = {p.name for p in checkpoint.iterdir()}
    assert {WEIGHTS_FILE, "config.json", "tokenizer.json", OPTIMIZER_FILE, "scheduler.json", RNG_FILE,
            HISTORY_FILE, STATE_FILE} <= names
    assert not {"self_play.safetensors", "optimizer.pt", "rng_state.pt"} & names  # nothing the run does not use
    state = json.loads((checkpoint / STATE_FILE).read_text())
    assert state["format_version"] == FORMAT_VERSION == 3
    for name in state["files"]:  # format 3 records each file's BLAKE3
        assert state["files"][name] == blake3.blake3((checkpoint / name).read_bytes()).hexdigest(), name
    assert state["iteration"] == 20 and state["max_iterations"] == 20 and state["history"]["length"] == 20
    for key in ("timestamp", "train_config", "model_config", "data_position", "corpus", "versions", "run_id"):
        assert state[key], key
    assert set(state["versions"]) >= {"torch", "transformers", "azr"}
    assert set(state["files"]) == names - {STATE_FILE}
    assert not temporaries(directory)  # no temporaries left behind


def test_sidecars_are_safetensors_and_round_trip(trained):
    directory, trainer = trained
    checkpoint = Checkpoint.open(directory / "model_iter_20")
    saved = checkpoint.optimizer_state()
    live = trainer.optimizer.state_dict()
    assert saved["param_groups"] == live["param_groups"]
    for index, values in live["state"].items():
        for key, value in values.items():
            assert torch.equal(saved["state"][index][key], value), (index, key)
    assert set(checkpoint.rng_state()) >= {"torch_cpu", "python", "numpy"}
    assert [r["loss"] for r in checkpoint.history()] == [r["loss"] for r in trainer.history]
    assert load_file(checkpoint.path / OPTIMIZER_FILE) and load_file(checkpoint.path / RNG_FILE)  # plain safetensors


def test_state_files_keep_every_dtype_and_refuse_truncation(tmp_path):
    state = {"a": torch.randn(3, 2), "b": [torch.ones(3, dtype=torch.bool), torch.empty(0)], "c": (torch.tensor(5),),
             "d": {1: torch.arange(4, dtype=torch.int16).half(), "lr": 0.1, "none": None}}
    tensorfile.write(tmp_path / "state.safetensors", state)
    data = (tmp_path / "state.safetensors").read_bytes()
    assert set(safetensors_load(data)) == {"0", "1", "2", "3", "4"}
    back = tensorfile.decode(tmp_path / "state.safetensors")
    assert torch.equal(back["a"], state["a"]) and back["b"][0].dtype == torch.bool and back["b"][1].numel() == 0
    assert isinstance(back["c"], tuple) and torch.equal(back["c"][0], torch.tensor(5)) and back["d"]["lr"] == 0.1 and back["d"]["none"] is None
    assert torch.equal(back["d"][1], state["d"][1]) and back["d"][1].dtype == torch.float16
    (tmp_path / "cut.safetensors").write_bytes(data[:-2])
    with pytest.raises(ValueError):
        tensorfile.decode(tmp_path / "cut.safetensors")



def test_a_checkpoint_loads_with_plain_transformers(trained, tokenizer):
    directory, trainer = trained
    model = AutoModelForCausalLM.from_pretrained(directory / "model_iter_20")
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    loaded = AutoTokenizer.from_pretrained(directory / "model_iter_20")
    assert loaded("To be or not")["input_ids"] == tokenizer("To be or not")["input_ids"]


def test_list_reports_newest_first_with_details(trained):
    directory, _ = trained
    infos = list_checkpoints(directory)
    assert [i.name for i in infos] == ["model_iter_20", "model_iter_10"]
    newest = infos[0]
    assert newest.kind == "iter" and newest.iteration == 20 and newest.valid and newest.has_optimizer
    assert newest.loss is not None and newest.timestamp and newest.size_bytes > 0


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, reason", [
    (truncate, "checksum mismatch in model.safetensors"),
    (flip_byte, "checksum mismatch in model.safetensors"),
    (lambda p: p.unlink(), "model.safetensors is missing"),
])
def test_damaged_weights_are_listed_invalid_and_refused(trained, tokenizer, make_model, texts, damage, reason):
    directory, _ = trained
    damage(directory / "model_iter_20" / WEIGHTS_FILE)
    infos = {i.name: i for i in list_checkpoints(directory)}
    assert not infos["model_iter_20"].valid and infos["model_iter_20"].reason == reason
    assert infos["model_iter_10"].valid
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    with pytest.raises(CheckpointError, match=reason):
        trainer.train(texts, 30, directory, resume_from=directory / "model_iter_20")
    with pytest.raises(CheckpointError, match=reason):
        AZRTrainer.from_checkpoint(directory / "model_iter_20")


def as_format_2(checkpoint: Path) -> None:
    """Rewrite a checkpoint's state as format 2 wrote it: the same files, each recorded by its sha256."""
    state = json.loads((checkpoint / STATE_FILE).read_text())
    state["files"] = {name: hashlib.sha256((checkpoint / name).read_bytes()).hexdigest() for name in state["files"]}
    state["format_version"] = 2
    (checkpoint / STATE_FILE).write_bytes(seal(state))


def test_a_format_2_checkpoint_is_verified_by_its_sha256_and_resumes(trained, tokenizer, make_model, texts):
    directory, _ = trained
    as_format_2(directory / "model_iter_20")
    assert Checkpoint.open(directory / "model_iter_20").format_version == 2
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    for status in trainer.train(texts, 22, directory, resume_from=directory / "model_iter_20", **FAST):
        pass
    assert status.iteration == 22 and Checkpoint.open(directory / "model_iter_22").format_version == FORMAT_VERSION
    flip_byte(directory / "model_iter_20" / OPTIMIZER_FILE)
    with pytest.raises(CheckpointError, match=f"checksum mismatch in {OPTIMIZER_FILE}"):
        verify_checkpoint(directory / "model_iter_20")


def test_an_unreadable_state_is_listed_invalid(trained):
    directory, _ = trained
    (directory / "model_iter_20" / STATE_FILE).write_text("{not json")
    info = {i.name: i for i in list_checkpoints(directory)}["model_iter_20"]
    assert not info.valid and "unreadable" in info.reason


def test_a_newer_format_is_refused_with_a_clear_message(trained):
    directory, _ = trained
    state_file = directory / "model_iter_20" / STATE_FILE
    state = json.loads(state_file.read_text())
    state["format_version"] = FORMAT_VERSION + 1
    state_file.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="newer than this azr supports"):
        verify_checkpoint(directory / "model_iter_20")


def test_rotation_keeps_the_last_iterations_and_every_pause(texts, tokenizer, make_model, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    for status in trainer.train(texts, 100, tmp_path, **{**FAST, "keep_last": 2}):
        if status.iteration == 35 and status.state == "running":
            trainer.stop_training()
    resumed = AZRTrainer(make_model(), tokenizer, device="cpu")
    for _ in resumed.train(texts, 70, tmp_path, resume_from=tmp_path / "model_paused_35", **{**FAST, "keep_last": 2}):
        pass
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("model_"))
    assert names == ["model_iter_60", "model_iter_70", "model_paused_35"]


def test_rotation_never_deletes_the_newest_checkpoint(trained):
    directory, _ = trained
    os.utime(directory / "model_iter_10")
    state_file = directory / "model_iter_10" / STATE_FILE
    state = json.loads(state_file.read_text())
    state["timestamp"] = "2999-01-01T00:00:00+00:00"  # model_iter_10 is now the newest by time
    state.pop("state_sha256")
    state_file.write_bytes(seal(state))
    assert rotate_checkpoints(directory, keep_last=1) == []


KILLER_SCRIPT = textwrap.dedent("""
    import os, sys
    from azr import AZRTrainer, ModelConfig, list_checkpoints, build_model, default_corpus, train_tokenizer
    texts = [default_corpus()[0][:40000]]
    tokenizer = train_tokenizer(texts, 300)
    model = build_model(ModelConfig(vocab_size=len(tokenizer), d_model=256, num_layers=4, num_heads=4,
                                    d_ff=1024, max_seq_len=16))
    trainer = AZRTrainer(model, tokenizer, device="cpu")
    valid = [i.path for i in list_checkpoints(sys.argv[1])] if os.path.isdir(sys.argv[1]) else []
    for status in trainer.train(texts, 10_000, sys.argv[1], resume_from=valid[0] if valid else None, batch_size=2,
                                save_every=1, keep_last=2, self_play_every=0, val_every=0):
        if status.state == "checkpoint" and status.message.startswith("Saved"):
            print("saving", flush=True)
""")


def test_replacing_a_checkpoint_deletes_the_old_one_only_once_the_new_one_has_its_name(tmp_path, monkeypatch):
    """A crash while the old directory of a name is deleted (it can take seconds) must leave the new one there."""
    final, temp = tmp_path / "model_iter_10", tmp_path / ".tmp-model_iter_10-1-x"
    for directory, text in ((final, "old"), (temp, "new")):
        directory.mkdir()
        (directory / "model.safetensors").write_text(text)
    seen_while_deleting, remove = [], storage._remove
    monkeypatch.setattr(storage, "_remove", lambda path: (
        seen_while_deleting.append((final / "model.safetensors").read_text()), remove(path)))
    storage.publish(temp, final)
    assert seen_while_deleting == ["new"]
    assert (final / "model.safetensors").read_text() == "new" and sorted(os.listdir(tmp_path)) == [final.name]


def test_sigkill_during_checkpoint_writes_never_leaves_a_valid_looking_broken_checkpoint(tmp_path):
    """Kill a process that saves a checkpoint every iteration at random moments (in the background through the page
    cache: while the training thread writes the files or while a thread makes them durable); whatever is listed
    valid loads, and once the next process has saved, nothing of a killed one is left."""
    rng = random.Random(0)
    directory, killed = tmp_path / "checkpoints", []
    for attempt in range(5):
        process = subprocess.Popen([sys.executable, "-c", KILLER_SCRIPT, str(directory)], stdout=subprocess.PIPE,
                                   text=True, env={**os.environ, "AZR_SAVE_WRITER": "pagecache"})
        assert process.stdout.readline().strip() == "saving"
        left = [name for folder in (directory, directory / "history") if folder.is_dir()
                for name in temporaries(folder) if any(f"-{pid}-" in name for pid in killed)]
        assert left == [], f"attempt {attempt}: the killed processes' temporaries are still there"
        time.sleep(rng.random())
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed.append(process.pid)
        infos = list_checkpoints(directory)
        assert infos, f"attempt {attempt}: nothing saved"
        for info in infos:
            if info.valid:
                AutoModelForCausalLM.from_pretrained(info.path)
                Checkpoint.open(info.path).optimizer_state()
                assert json.loads((directory / info.name / STATE_FILE).read_text())["iteration"] == info.iteration
            else:
                pytest.fail(f"attempt {attempt}: a half-written checkpoint is listed: {info}")
    leftovers = temporaries(directory)
    assert len(leftovers) <= 1  # at most the temporary of the last kill; the next save removes it


@pytest.mark.parametrize("async_save", [False, True], ids=["now", "background"])
def test_saving_prints_nothing_and_leaves_transformers_progress_bars_as_they_were(texts, tokenizer, make_model,
                                                                                    tmp_path, capfd, async_save):
    """A library's checkpoint writes show no "Writing model shards" bar (in a notebook, one per save)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.enable_progress_bar()
    for _ in AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 20, tmp_path,
                                                                       **{**FAST, "async_save": async_save}):
        pass
    assert [n for n in os.listdir(tmp_path) if n.startswith("model_iter_")]
    captured = capfd.readouterr()
    assert "Writing model shards" not in captured.err + captured.out
    assert transformers_logging.is_progress_bar_enabled()


@pytest.mark.parametrize("exchange", [True, False], ids=["atomic exchange", "two renames"])
def test_an_interrupt_while_a_name_is_replaced_leaves_it_a_complete_version(tmp_path, monkeypatch, exchange):
    """A second Ctrl+C right after the old version was renamed aside must not cost the name both versions."""
    final, temp = tmp_path / "model_iter_10", tmp_path / ".tmp-model_iter_10-1-x"
    for directory, text in ((final, "old"), (temp, "new")):
        directory.mkdir()
        (directory / "model.safetensors").write_text(text)
    if not exchange:
        monkeypatch.setattr(storage, "_exchange", lambda first, second: False)
    rename = os.rename

    def interrupted(source, target):
        if Path(source) == temp and Path(target) == final:
            raise KeyboardInterrupt
        rename(source, target)
    monkeypatch.setattr(os, "rename", interrupted)
    try:
        storage.publish(temp, final)
    except KeyboardInterrupt:
        storage.discard(temp)  # what a writer does with its temporary when interrupted
    assert (final / "model.safetensors").read_text() == ("new" if exchange else "old")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(storage.TRASH_PREFIX)]


CHECKSUM_RSS = textwrap.dedent("""
    import sys
    from pathlib import Path
    from azr.checkpoints import storage
    def peak_mb():
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
    before = peak_mb()
    digest = storage.file_checksum(Path(sys.argv[1]))
    print(digest, peak_mb() - before)
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc (Linux)")
def test_checking_a_large_file_does_not_make_it_resident(tmp_path):
    """A save checks files of gigabytes (a 135M model's optimizer state is 1 GB): hashing maps the file a window at
    a time, so the process's peak memory grows by a window, not by the file."""
    big = tmp_path / "big.bin"
    chunk = os.urandom(1 << 20)
    with open(big, "wb") as handle:
        for _ in range(256):
            handle.write(chunk)
    result = subprocess.run([sys.executable, "-c", CHECKSUM_RSS, str(big)], capture_output=True, text=True,
                            check=True)
    digest, growth_mb = result.stdout.split()
    assert digest == blake3.blake3(big.read_bytes()).hexdigest()
    assert float(growth_mb) < 96, f"hashing a 256 MB file raised the peak RSS by {growth_mb} MB"
