"""Checkpoint format 2: version-1 checkpoints still resume, a resume reads everything once, and a checkpoint's
size and cost do not grow with the length of the run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import FAST

from azr import AZRTrainer, list_checkpoints
from azr.checkpoints import names, runs, storage
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.history import CHUNK_DIR, CHUNK_RECORDS, History, forget_chunk_digests
from azr.checkpoints.statefile import STATE_FILE
from azr.checkpoints.writing import save_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def v1_run(tmp_path):
    """A copy of the version-1 run made by the previous release (see fixtures/make_v1_fixture.py)."""
    return Path(shutil.copytree(FIXTURES / "v1_run", tmp_path / "run"))


def test_a_version_1_checkpoint_resumes_bit_identically(v1_run):
    expected = json.loads((FIXTURES / "v1_expected.json").read_text())
    checkpoint = Checkpoint.open(v1_run / expected["checkpoint"])
    assert checkpoint.format_version == 1 and checkpoint.run_id is None
    trainer = AZRTrainer.from_checkpoint(checkpoint.path, device="cpu")
    for status in trainer.train(None, expected["max_iterations"], v1_run):  # its own stored corpus and settings
        pass
    assert status.state == "completed"
    assert [r["iteration"] for r in trainer.history] == [r["iteration"] for r in expected["history"]]
    # Weights, optimizer, LR plan, RNG and data position load exactly: the steps up to the first self-play round
    # after the resume (iteration 9) are the previous main's to the bit. From there on they differ by design: the
    # self-play estimator became GRPO (issue 10), so the old continuation is not today's algorithm.
    before_self_play = [r for r in expected["history"] if r["iteration"] < 9]
    for key in ("loss", "reward", "lr"):  # val_loss is now token-weighted, so it is not compared
        assert [r[key] for r in trainer.history[:len(before_self_play)]] == [r[key] for r in before_self_play], key
    assert [r["lr"] for r in trainer.history] == [r["lr"] for r in expected["history"]]
    # the run directory was adopted: a run.json, and the new checkpoints carry its id next to the old one
    run_id = runs.read_run(v1_run).id
    infos = {i.name: i for i in list_checkpoints(v1_run)}
    assert infos["model_paused_6"].valid and infos["model_iter_12"].valid
    assert Checkpoint.open(v1_run / "model_iter_12").run_id == run_id


def test_a_resume_verifies_each_file_once_and_loads_the_weights_once(texts, tokenizer, make_model, tmp_path,
                                                                     monkeypatch):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    for status in trainer.train(texts, 20, tmp_path, **FAST):
        pass
    path = tmp_path / "model_iter_20"
    hashed, loads = [], []
    original_hash, original_file_hash, original_load = storage.checksum, storage.file_checksum, Checkpoint.load_weights
    monkeypatch.setattr(storage, "checksum", lambda data, *a: hashed.append(len(data)) or original_hash(data, *a))
    monkeypatch.setattr(storage, "file_checksum",
                        lambda path, *a: hashed.append(path.stat().st_size) or original_file_hash(path, *a))
    monkeypatch.setattr(Checkpoint, "load_weights", lambda *a, **k: loads.append(1) or original_load(*a, **k))
    resumed = AZRTrainer.from_checkpoint(path, device="cpu")  # as `azr resume` and the app do
    resumed.train(None, 21, tmp_path, resume_from=path, **FAST).close()  # prepared: everything is read
    files = json.loads((path / STATE_FILE).read_text())["files"]
    assert sorted(hashed) == sorted((path / name).stat().st_size for name in files)  # each file hashed once
    assert loads == []  # from_pretrained loaded the weights; nothing loads them a second time


def long_history(length: int) -> History:
    history = History()
    for i in range(1, length + 1):
        history.append({"iteration": i, "loss": 5.0 - i * 1e-6, "lr": 3e-4, "time": 1.7e9 + i,
                        "reward": 0.5 if i % 10 == 0 else None})
    return history


@pytest.fixture
def saving(texts, tokenizer, make_model, tmp_path):
    """``save(run_dir, name, history)``: a checkpoint of a 5-iteration run's model, saved with any history."""
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    for _ in trainer.train(texts, 5, tmp_path / "run", **FAST):
        pass
    source = Checkpoint.open(tmp_path / "run" / "model_iter_5")
    model_files = (STATE_FILE, names.HISTORY_FILE, names.WEIGHTS_FILE, names.CONFIG_FILE, "generation_config.json")
    files = {p.name: p.read_bytes() for p in source.path.iterdir() if p.name not in model_files}

    def save(run_dir, name, history):
        return save_checkpoint(run_dir, name, model=trainer.model, files=files, state=dict(source.state),
                               history=history)
    return save


def chunk_times(run_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (run_dir / CHUNK_DIR).glob("*")}


def test_the_state_file_and_a_save_do_not_grow_with_the_history(saving, tmp_path):
    sizes = {}
    for length in (1_000, 3 * CHUNK_RECORDS + 17):
        history = long_history(length)
        run_dir = tmp_path / f"long{length}"
        saving(run_dir, "model_iter_1", history)
        written = chunk_times(run_dir)
        saving(run_dir, "model_iter_2", history)
        assert chunk_times(run_dir) == written  # the shared chunks are written once, never again
        assert len(written) == length // CHUNK_RECORDS
        saved = Checkpoint.open(run_dir / "model_iter_2")
        assert saved.history() == history
        sizes[length] = (saved.path / STATE_FILE).stat().st_size, (saved.path / names.HISTORY_FILE).stat().st_size
    short, long = sizes[1_000], sizes[3 * CHUNK_RECORDS + 17]
    assert long[0] < short[0] + 500  # three chunk digests more in trainer_state.json
    assert long[1] < short[1]  # the tail holds only the records after the last full chunk


def test_a_damaged_history_chunk_makes_the_checkpoint_invalid(saving, tmp_path):
    run_dir = tmp_path / "long"
    saving(run_dir, "model_iter_1", long_history(CHUNK_RECORDS + 1))
    chunk = next((run_dir / CHUNK_DIR).iterdir())
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF
    chunk.write_bytes(bytes(data))
    forget_chunk_digests()  # a new process would hash it afresh
    info = list_checkpoints(run_dir)[0]
    assert not info.valid and "history chunk" in info.reason


def test_history_records_round_trip_with_missing_values():
    history = long_history(25)
    history.set_last("val_loss", 4.25)
    copy = History.from_chunks([], [], history.encode(0, len(history)))
    assert list(copy) == list(history)
    assert copy[-1]["val_loss"] == 4.25 and copy[0]["val_loss"] is None and copy[9]["reward"] == 0.5
    assert [r["iteration"] for r in history.since(20)] == [21, 22, 23, 24, 25]
    assert torch.tensor([r["loss"] for r in history[:3]]).shape == (3,)
