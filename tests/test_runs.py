"""Runs: one directory and one identity per run, so no front-end can overwrite or rotate away another run."""
from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys

import pytest
from conftest import FAST

from azr import AZRTrainer, CheckpointError, ConfigError, list_checkpoints
from azr.checkpoints import runs
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.statefile import STATE_FILE, seal


def drain(trainer, *args, **kwargs):
    for status in trainer.train(*args, **{**FAST, **kwargs}):
        pass
    return status


def test_a_new_run_is_refused_in_a_directory_holding_another_run(texts, tokenizer, make_model, tmp_path):
    drain(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 20, tmp_path, seed=1)
    first = Checkpoint.open(tmp_path / "model_iter_20")
    with pytest.raises(ConfigError, match="already holds run"):
        AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 20, tmp_path, seed=2)
    again = Checkpoint.open(tmp_path / "model_iter_20")  # untouched: same loss, same run
    assert (again.state["loss"], again.run_id) == (first.state["loss"], first.run_id)


def test_checkpoints_without_run_json_still_protect_their_directory(texts, tokenizer, make_model, tmp_path):
    drain(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 10, tmp_path)
    (tmp_path / runs.RUN_FILE).unlink()
    with pytest.raises(ConfigError, match="checkpoints of another run"):
        AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 10, tmp_path)


def test_each_run_has_an_identity_recorded_in_every_checkpoint(texts, tokenizer, make_model, tmp_path):
    drain(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 20, tmp_path / "a", seed=4)
    info = runs.read_run(tmp_path / "a")
    assert info.name == "a" and info.seed == 4 and info.corpus["num_texts"] == len(texts) and info.created
    assert {Checkpoint.open(i.path).run_id for i in list_checkpoints(tmp_path / "a")} == {info.id}
    drain(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 20, tmp_path / "b", seed=4)
    assert runs.read_run(tmp_path / "b").id != info.id
    assert [p.name for p in runs.list_runs(tmp_path)] in (["b", "a"], ["a", "b"])


def test_resuming_continues_the_same_run_and_rotates_only_its_own_checkpoints(texts, tokenizer, make_model,
                                                                              tmp_path):
    drain(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 20, tmp_path / "a", seed=1)
    drain(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 20, tmp_path / "b", seed=2)
    resumed = AZRTrainer.from_checkpoint(tmp_path / "a" / "model_iter_20", device="cpu")
    drain(resumed, texts, 60, tmp_path / "a", keep_last=1)
    assert [i.name for i in list_checkpoints(tmp_path / "a")] == ["model_iter_60"]
    assert sorted(i.name for i in list_checkpoints(tmp_path / "b")) == ["model_iter_10", "model_iter_20"]
    with pytest.raises(ConfigError, match="already holds run 'b'"):  # a's checkpoint cannot continue in b
        AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 80, tmp_path / "b",
                                                                resume_from=tmp_path / "a" / "model_iter_60")


def test_resuming_behind_the_newest_checkpoint_says_so_and_rotates_only_its_own_new_checkpoints(
        texts, tokenizer, make_model, tmp_path):
    """Going back to an earlier checkpoint of a run warns which later checkpoints exist. Rotation and a new best
    never delete those (the run's earlier line), nor the new line's checkpoints in favour of their higher
    iterations; a save of the same name replaces one, which then rotates with the new line."""
    def names_and_times():
        return {name: Checkpoint.open(tmp_path / name).state["timestamp"] for name in runs.checkpoint_names(tmp_path)}

    drain(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 60, tmp_path)
    first = names_and_times()
    assert list(first) == ["model_iter_40", "model_iter_50", "model_iter_60"]

    resumed = AZRTrainer.from_checkpoint(tmp_path / "model_iter_40", device="cpu")
    statuses = list(resumed.train(None, 70, tmp_path, **{**FAST, "save_every": 11, "keep_last": 1, "lr": 1e-4}))
    assert statuses[-1].state == "completed"
    assert any("checkpoints after iteration 40: model_iter_50, model_iter_60." in w for w in statuses[0].warnings)
    second = names_and_times()  # saved 44, 55, 66 and 70: kept its newest and the earlier line's
    assert list(second) == ["model_iter_50", "model_iter_60", "model_iter_70"]
    assert second["model_iter_50"] == first["model_iter_50"] and second["model_iter_60"] == first["model_iter_60"]

    resumed = AZRTrainer.from_checkpoint(tmp_path / "model_iter_50", device="cpu")
    list(resumed.train(None, 65, tmp_path, **{**FAST, "save_every": 5, "keep_last": 1}))
    third = names_and_times()  # saved 55, 60 (replacing the first line's) and 65; 70 is ahead of it
    assert list(third) == ["model_iter_65", "model_iter_70"] and third["model_iter_70"] == second["model_iter_70"]

    for name in ("model_best_20", "model_best_75"):
        (tmp_path / name).mkdir()
    assert runs.discard_older(tmp_path, "best", tmp_path / "model_best_65", ["model_best_75"]) == ["model_best_20"]


def test_best_picks_the_lowest_validation_loss_of_the_bests_a_run_holds(texts, tokenizer, make_model, tmp_path):
    """A run resumed from an earlier checkpoint can hold the best of each way it went: ``--best`` is the lower
    validation loss, not the higher iteration."""
    drain(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 20, tmp_path, val_every=5, keep_best=True)
    (found,) = [name for name in runs.checkpoint_names(tmp_path) if name.startswith("model_best_")]
    best = Checkpoint.open(tmp_path / found)
    worse = tmp_path / f"model_best_{best.iteration + 100}"  # as if a later way of the run had saved it
    shutil.copytree(best.path, worse)
    state = {**best.state, "name": worse.name, "iteration": best.iteration + 100,
             "val_loss": best.state["val_loss"] + 1}
    (worse / STATE_FILE).write_bytes(seal(state))
    assert Checkpoint.open(worse).iteration == best.iteration + 100
    assert runs.best_checkpoint(tmp_path) == best.path


def test_a_run_trains_in_one_process_at_a_time(texts, tokenizer, make_model, tmp_path):
    """A second training of the same run (another terminal, the app and the CLI, another thread) is refused while
    the first one trains, with nothing written; it may go on once the first one has ended."""
    drain(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 10, tmp_path)
    first = AZRTrainer.from_checkpoint(tmp_path / "model_iter_10", device="cpu")
    statuses = first.train(None, 30, tmp_path, **FAST)
    assert next(statuses).state == "running"
    before = sorted(p.name for p in tmp_path.iterdir())
    second = AZRTrainer.from_checkpoint(tmp_path / "model_iter_10", device="cpu")
    with pytest.raises(ConfigError, match="is being trained by another training in this process"):
        second.train(None, 20, tmp_path, report_to="tensorboard", **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # not even TensorBoard's event files
    assert [s.state for s in statuses][-1] == "completed"
    assert drain(second, None, 20, tmp_path, resume_from=tmp_path / "model_iter_10").state == "completed"

    hold = "import sys; from azr.checkpoints.runs import RunLock; lock = RunLock(sys.argv[1]); print('held', flush=True); input()"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(ConfigError, match=rf"is being trained by another process \(pid {holder.pid}\)"):
            AZRTrainer.from_checkpoint(tmp_path / "model_iter_20", device="cpu").train(None, 40, tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert drain(AZRTrainer.from_checkpoint(tmp_path / "model_iter_20", device="cpu"), None, 25, tmp_path).state == \
        "completed"  # the killed holder's lock went with it


def test_a_file_system_without_locks_trains_unguarded_with_a_warning(texts, tokenizer, make_model, tmp_path,
                                                                     monkeypatch, caplog):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(runs.fcntl, "flock", no_locks)
    assert drain(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 10, tmp_path).state == "completed"
    assert "a second training of this run would not be refused" in caplog.text


def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_left_alone(texts, tokenizer, make_model,
                                                                                   tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("the user's file")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / runs.LOCK_FILE).symlink_to(outside)
    with pytest.raises(ConfigError, match="Cannot lock .*remove it"):
        AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 10, tmp_path / "run", **FAST)
    assert outside.read_text() == "the user's file"


def test_run_names_are_checked_and_generated_names_are_free(tmp_path):
    assert runs.check_run_name("my-run_2.1") == "my-run_2.1"
    for bad in ("", ".hidden", "a/b", "model_iter_5", "x" * 97):
        with pytest.raises(ConfigError):
            runs.check_run_name(bad)
    first = runs.new_run_name(tmp_path)
    (tmp_path / first).mkdir()
    assert runs.new_run_name(tmp_path) != first


def test_run_json_is_small_and_readable(texts, tokenizer, make_model, tmp_path):
    drain(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 10, tmp_path)
    values = json.loads((tmp_path / runs.RUN_FILE).read_text())
    assert set(values) == {"id", "name", "created", "seed", "corpus", "base_model"}


def test_best_checkpoint_is_kept_through_rotation_and_chosen_by_best(texts, tokenizer, make_model, tmp_path,
                                                                       capsys):
    """model_best_<N> holds the lowest validation loss so far; rotation (keep_last=1) never deletes it, only
    one best is kept, a resume carries the best loss on, and ``--best`` picks it in the CLI."""
    from azr.cli.main import main

    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    drain(trainer, texts, 40, tmp_path, keep_last=1, val_every=5, lr=3e-2, warmup=0, keep_best=True)  # loss bounces
    losses = {r["iteration"]: r["val_loss"] for r in trainer.history if r.get("val_loss") is not None}
    best_iteration = min(losses, key=lambda i: (losses[i], i))
    names = set(runs.checkpoint_names(tmp_path))
    assert [n for n in names if n.startswith("model_best_")] == [f"model_best_{best_iteration}"]
    assert [n for n in names if n.startswith("model_iter_")] == ["model_iter_40"]
    best = Checkpoint.open(tmp_path / f"model_best_{best_iteration}")
    assert best.kind == "best" and best.state["val_loss"] == best.state["best_val_loss"] == losses[best_iteration]
    assert runs.best_checkpoint(tmp_path / "model_iter_40") == runs.best_checkpoint(tmp_path) == best.path

    resumed = AZRTrainer.from_checkpoint(tmp_path / "model_iter_40", device="cpu")
    drain(resumed, None, 50, tmp_path, keep_last=1, val_every=5, keep_best=True)
    later = {r["iteration"]: r["val_loss"] for r in resumed.history if r.get("val_loss") is not None}
    expected = min(later, key=lambda i: (later[i], i))
    assert [n for n in runs.checkpoint_names(tmp_path) if n.startswith("model_best_")] == [f"model_best_{expected}"]

    assert main(["generate", str(tmp_path / "model_iter_50"), "--best", "--prompt", "To be", "--seed", "1",
                 "--max-new-tokens", "3", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("To be")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no model_best checkpoint"):
        runs.best_checkpoint(tmp_path / "empty")
