"""The checkpoint writer process: background saves staged in shared memory and written by another process are the
checkpoints a synchronous save writes (tied weights too); a writer that dies or cannot take the model leaves the
saves to the training process; a writer exits with its parent; ``AZR_SAVE_WRITER`` chooses."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST
from safetensors.torch import save
from test_async_save import digests

from azr import AZRTrainer, ConfigError, list_checkpoints
from azr.checkpoints import history, writerlaunch
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.staging import Stager
from azr.checkpoints.writerprocess import WriterProcess, automatic_choice
from azr.training import saving

WRITER_START_S = 120  # a writer imports torch and transformers before it is ready: seconds on a loaded machine


@pytest.fixture
def process_writer(monkeypatch):
    monkeypatch.setenv("AZR_SAVE_WRITER", "process")


def wait_for_the_writer(trainer: AZRTrainer):
    """A status callback that, at the run's start, waits until its writer process is ready."""
    def on_status(status):
        if status.iteration == 0:
            assert trainer._saver._writer.ready(WRITER_START_S)
    return on_status


def spy(monkeypatch) -> dict[str, list[str]]:
    """Record the background saves the writer process returned and the ones this process wrote."""
    seen: dict[str, list[str]] = {"writer": [], "here": []}
    write, write_here = WriterProcess.write, saving.write_contents

    def written_by_the_writer(self, job, arena):
        path = write(self, job, arena)
        seen["writer"].append(path.name)
        return path

    def written_here(contents, *args, **kwargs):
        if threading.current_thread().name == "azr-checkpoint-save":
            seen["here"].append(contents.name)
        return write_here(contents, *args, **kwargs)
    monkeypatch.setattr(WriterProcess, "write", written_by_the_writer)
    monkeypatch.setattr(saving, "write_contents", written_here)
    return seen


def train_both_ways(model, other, tokenizer, texts, root: Path, **settings) -> AZRTrainer:
    """Train ``model`` with background saves (through the writer) and ``other``, its copy, with synchronous ones."""
    trainer = AZRTrainer(model, tokenizer, device="cpu")
    trainer.status_callback = wait_for_the_writer(trainer)
    for _ in trainer.train(texts, 20, root / "async", **{**FAST, "status_every": 1, **settings}):
        pass
    for _ in AZRTrainer(other, tokenizer, device="cpu").train(texts, 20, root / "sync",
                                                              **{**FAST, "async_save": False, **settings}):
        pass
    return trainer


def test_the_writer_process_writes_what_a_synchronous_save_writes(texts, tokenizer, make_model, tmp_path,
                                                                  process_writer, monkeypatch):
    seen = spy(monkeypatch)
    train_both_ways(make_model(), make_model(), tokenizer, texts, tmp_path)
    assert seen["writer"] == ["model_iter_10", "model_iter_20"] and seen["here"] == []
    for name in ("model_iter_10", "model_iter_20"):
        assert digests(tmp_path / "async" / name) == digests(tmp_path / "sync" / name), name
    assert [i.name for i in list_checkpoints(tmp_path / "async") if i.valid] == ["model_iter_20", "model_iter_10"]


def test_a_writer_given_back_before_it_answered_serves_the_next_run(texts, tokenizer, make_model, tmp_path,
                                                                    process_writer, monkeypatch):
    """The first run pauses at once: its writer goes back to the pool with its "ready" answer unread."""
    first = AZRTrainer(make_model(), tokenizer, device="cpu", status_callback=lambda s: first.stop_training())
    assert list(first.train(texts, 20, tmp_path / "first", **FAST))[-1].state == "paused"
    seen = spy(monkeypatch)
    train_both_ways(make_model(), make_model(), tokenizer, texts, tmp_path)
    assert seen["writer"] == ["model_iter_10", "model_iter_20"] and seen["here"] == []


def test_the_writer_stores_the_history_chunks_that_filled_up_since_the_last_save(
        texts, tokenizer, make_model, tmp_path, process_writer, monkeypatch):
    """With chunks of 4 records, each save brings new full chunks, which only the parent can encode."""
    monkeypatch.setattr(history, "CHUNK_RECORDS", 4)
    seen = spy(monkeypatch)
    train_both_ways(make_model(), make_model(), tokenizer, texts, tmp_path)
    assert seen["writer"] == ["model_iter_10", "model_iter_20"]
    for name in ("model_iter_10", "model_iter_20"):
        written = {mode: Checkpoint.open(tmp_path / mode / name) for mode in ("async", "sync")}  # chunks verified
        assert len(written["async"].history_chunks) == int(name.rsplit("_", 1)[1]) // 4
        records = {mode: [(r["iteration"], r["loss"]) for r in written[mode].history()] for mode in written}
        assert records["async"] == records["sync"]


def test_tied_weights_are_written_once_as_the_model_writes_them(texts, tokenizer, make_model, tmp_path,
                                                               process_writer, monkeypatch):
    seen = spy(monkeypatch)
    tied = [make_model(), make_model()]
    for model in tied:
        model.config.tie_word_embeddings = True
        model.tie_weights()
    assert tied[0].lm_head.weight.data_ptr() == tied[0].model.embed_tokens.weight.data_ptr()
    train_both_ways(*tied, tokenizer, texts, tmp_path, self_play_every=0)
    assert seen["writer"] == ["model_iter_10", "model_iter_20"]
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "async/model_iter_20" / name).read_bytes() == (tmp_path / "sync/model_iter_20" /
                                                                           name).read_bytes()


def test_a_run_whose_writer_dies_writes_its_saves_itself(texts, tokenizer, make_model, tmp_path, process_writer,
                                                         monkeypatch, caplog):
    seen = spy(monkeypatch)
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    waiting = wait_for_the_writer(trainer)

    def on_status(status):
        waiting(status)
        if status.state == "checkpoint" and status.iteration < 20:  # model_iter_10 is written: kill the writer
            os.kill(trainer._saver._writer.pid, signal.SIGKILL)
    trainer.status_callback = on_status
    with caplog.at_level(logging.WARNING, logger="azr.training.saving"):
        final = list(trainer.train(texts, 30, tmp_path, **{**FAST, "status_every": 1}))[-1]
    assert final.state == "completed"
    assert seen["writer"] == ["model_iter_10"] and seen["here"] == ["model_iter_20", "model_iter_30"]
    assert "the checkpoint writer process failed (the writer process ended" in caplog.text
    assert [i.name for i in list_checkpoints(tmp_path) if i.valid] == ["model_iter_30", "model_iter_20",
                                                                        "model_iter_10"]


def test_a_writer_sent_what_it_cannot_read_exits_and_the_run_writes_its_saves(texts, tokenizer, make_model, tmp_path,
                                                                              process_writer, monkeypatch, caplog):
    """As a writer started from a newer version of this code would: it must not linger while its parent waits."""
    seen = spy(monkeypatch)
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")

    def on_status(status):
        if status.iteration == 0:
            writer = trainer._saver._writer
            assert writer.ready(WRITER_START_S)
            writer._connection.send(("a message of another version",))
            writer._process.wait(30)  # raises TimeoutExpired while it lingers
    trainer.status_callback = on_status
    with caplog.at_level(logging.WARNING, logger="azr.training.saving"):
        final = list(trainer.train(texts, 20, tmp_path, **FAST))[-1]
    assert final.state == "completed" and "the checkpoint writer process failed" in caplog.text
    assert seen["writer"] == [] and seen["here"] == ["model_iter_10", "model_iter_20"]


def test_a_model_the_writer_cannot_rebuild_is_saved_by_the_training_process(texts, tokenizer, make_model, tmp_path,
                                                                            process_writer, caplog):
    model = make_model()

    class LocalModel(type(model)):  # defined here: no other process can import it
        pass
    model.__class__ = LocalModel
    trainer = AZRTrainer(model, tokenizer, device="cpu")
    with caplog.at_level(logging.WARNING, logger="azr.training.saving"):
        final = list(trainer.train(texts, 10, tmp_path, **FAST))[-1]
    assert final.state == "completed" and "no checkpoint writer process" in caplog.text
    assert [i.name for i in list_checkpoints(tmp_path) if i.valid] == ["model_iter_10"]


PARENT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from conftest import FAST, TINY_VOCAB
    from azr import AZRTrainer, ModelConfig, build_model, default_corpus, train_tokenizer
    texts = [default_corpus()[0][:20_000]]
    tokenizer = train_tokenizer(texts, TINY_VOCAB)
    model = build_model(ModelConfig(vocab_size=len(tokenizer), d_model=32, num_layers=1, num_heads=2, d_ff=64,
                                    max_seq_len=32), seed=0)
    trainer = AZRTrainer(model, tokenizer, device="cpu")
    def on_status(status):
        if status.iteration == 0:
            assert trainer._saver._writer.ready(120)
            print(trainer._saver._writer.pid, flush=True)
    trainer.status_callback = on_status
    for _ in trainer.train(texts, 10**6, sys.argv[2], **{**FAST, "status_every": 1}):
        pass
""")


def test_the_writer_exits_when_its_parent_is_killed(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(Path(__file__).parent), str(tmp_path / "run")],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "AZR_SAVE_WRITER": "process"})
    try:
        writer = int(parent.stdout.readline())
        time.sleep(1)  # training goes on, saving every 10 iterations
        assert running(writer)
    finally:
        parent.kill()
        parent.wait()
    assert_ends(writer)


def assert_ends(pid: int, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(pid)


def running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_the_writer_is_chosen_by_the_device_and_by_azr_save_writer(tokenizer, make_model, monkeypatch):
    """On a CPU a background save goes through the page cache (no staged copy), whatever the CPUs; a GPU's goes to
    a writer process; ``AZR_SAVE_WRITER`` chooses any of them."""
    monkeypatch.delenv("AZR_SAVE_WRITER", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})  # a 4-CPU machine
    threads = torch.get_num_threads()
    try:
        for count in (4, 1):  # with every CPU training, or with CPUs free
            torch.set_num_threads(count)
            assert AZRTrainer(make_model(), tokenizer, device="cpu")._saver._mode == "pagecache"
    finally:
        torch.set_num_threads(threads)
    assert automatic_choice(torch.device("cpu")) == "pagecache"
    assert automatic_choice(torch.device("cuda")) == "process"
    for writer, mode, shared in (("thread", "thread", False), ("process", "process", True),
                                 ("pagecache", "pagecache", False)):
        monkeypatch.setenv("AZR_SAVE_WRITER", writer)
        saver = AZRTrainer(make_model(), tokenizer, device="cpu")._saver
        assert (saver._mode, saver._stager.shared) == (mode, shared)
    monkeypatch.setenv("AZR_SAVE_WRITER", "sometimes")
    with pytest.raises(ConfigError, match="AZR_SAVE_WRITER must be auto, process, thread or pagecache, got "
                                          "'sometimes'"):
        AZRTrainer(make_model(), tokenizer, device="cpu")


def test_shared_staging_keeps_tied_tensors_tied_and_every_other_tensor_in_a_storage_of_its_own():
    weight, bias, step = torch.randn(4, 3), torch.randn(3), torch.tensor(7.0)
    stager = Stager(shared=True)
    staged = stager.stage({"a": weight, "tied": weight, "b": bias, "step": step, "empty": torch.empty(0), "n": 5})
    assert staged["a"] is staged["tied"] and staged["n"] == 5 and staged["empty"].shape == (0,)
    assert torch.equal(staged["a"], weight) and torch.equal(staged["b"], bias) and staged["step"].item() == 7.0
    assert all(stager.arena.offset_of(staged[key]) is not None for key in ("a", "b", "step"))
    assert staged["a"].untyped_storage().data_ptr() != staged["b"].untyped_storage().data_ptr()
    save({"a": staged["a"], "b": staged["b"]})  # safetensors refuses tensors that share a storage
    weight += 1
    again = stager.stage({"a": weight, "tied": weight, "b": bias, "step": step, "empty": torch.empty(0), "n": 5})
    assert again["a"].data_ptr() == staged["a"].data_ptr() and torch.equal(staged["a"], weight)  # refilled



WATCHES_FIRST = textwrap.dedent("""
    import sys, threading
    from azr.checkpoints import writerlaunch
    writerlaunch.exit_with_parent()
    print("torch" in sys.modules, "azr-parent-watch" in [t.name for t in threading.enumerate()], flush=True)
""")


def test_a_writer_watches_its_parent_before_its_slow_imports():
    """The writer's launcher starts watching its parent before torch is imported (seconds): a writer whose parent
    is killed while it starts up ends at once."""
    done = subprocess.run([sys.executable, "-c", WATCHES_FIRST], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "True"], done.stderr
    from azr.checkpoints import writerprocess
    assert writerprocess.LAUNCHER == writerlaunch.__name__


STARTS_A_WRITER = textwrap.dedent("""
    import time
    from azr.checkpoints.writerprocess import WriterProcess
    print(WriterProcess().pid, flush=True)
    time.sleep(600)
""")


def test_a_writer_still_starting_exits_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", STARTS_A_WRITER], stdout=subprocess.PIPE, text=True)
    try:
        writer = int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait()
    assert_ends(writer)


NICED_PARENT = """
import os
from azr.checkpoints.writerprocess import WriterProcess
os.setpriority(os.PRIO_PROCESS, 0, 15)  # a user's `nice -n 15 azr train`
writer = WriterProcess()
try:
    print(os.getpriority(os.PRIO_PROCESS, writer._process.pid))
finally:
    writer.stop()
"""


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="process priorities are POSIX")
def test_a_writer_never_runs_above_its_niced_parent():
    """The writer runs below training (niceness 10), or at training's own niceness where that is lower still: set
    to 10 under a parent at 15 it would take the CPU from training (as root) or fail to start (as a user)."""
    done = subprocess.run([sys.executable, "-c", NICED_PARENT], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) == 15
