"""Data parallelism with torchrun (gloo on CPU): N processes take the same steps as one, a checkpoint written by two
processes resumes in one, and SIGTERM to torchrun leaves exactly one consistent interrupted checkpoint."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ddp_worker import DIVERGE_AT, SETTINGS, STOP_AT, TARGET

from azr import AZRTrainer, ConfigError, build_model, list_checkpoints
from azr.checkpoints.checkpoint import Checkpoint
from azr.cli.main import SIZE_OPTIONS

TESTS = Path(__file__).resolve().parent
TOLERANCE = 1e-5
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def torchrun_environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def two_processes(texts, tokenizer, model_config, tmp_path_factory) -> Path:
    """Both runs of tests/ddp_worker.py, trained by two processes."""
    out = tmp_path_factory.mktemp("ddp")
    tokenizer.save_pretrained(out / "tokenizer")
    (out / "model.json").write_text(json.dumps(model_config.to_dict()))
    (out / "texts.json").write_text(json.dumps(texts))
    done = subprocess.run([*TORCHRUN, str(TESTS / "ddp_worker.py"), str(out)], env=torchrun_environment(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def losses(trainer: AZRTrainer) -> list[float]:
    return [record["loss"] for record in trainer.history]


def assert_close(actual: list[float], expected: list[float]) -> None:
    assert len(actual) == len(expected) == TARGET
    assert max(abs(a - b) for a, b in zip(actual, expected)) <= TOLERANCE


def test_two_processes_with_half_the_batch_each_match_one_process(two_processes, texts, tokenizer, model_config,
                                                                  tmp_path):
    full = json.loads((two_processes / "full.json").read_text())
    trainer = AZRTrainer(build_model(model_config, seed=0), tokenizer, device="cpu")
    for _ in trainer.train(texts, TARGET, tmp_path, **SETTINGS):  # one process, the whole batch of 16
        pass
    assert_close(losses(trainer), full["losses"])
    assert [r["reward"] is not None for r in trainer.history].count(True) == TARGET // SETTINGS["self_play_every"]
    saved = Checkpoint.open(full["checkpoint"])
    assert saved.state["processes"] == 2
    assert len(saved.rng_state()["other_ranks"]) == 1  # rank 1's generators, beside rank 0's


def test_a_stop_asked_by_one_process_is_made_by_all_and_resumes_in_one_process(two_processes, texts):
    full, stopped = (json.loads((two_processes / f"{name}.json").read_text()) for name in ("full", "stopped"))
    assert stopped["final"] == "paused"
    assert {info.name for info in list_checkpoints(two_processes / "stopped") if info.valid} == \
        {f"model_paused_{STOP_AT}", f"model_iter_{STOP_AT}"}
    trainer = AZRTrainer.from_checkpoint(stopped["checkpoint"], device="cpu")
    for _ in trainer.train(texts, TARGET, two_processes / "stopped", resume_from=stopped["checkpoint"]):
        pass
    assert_close(losses(trainer), full["losses"])


def test_a_non_finite_loss_on_one_process_stops_every_process_at_that_step(two_processes):
    diverged = json.loads((two_processes / "diverged.json").read_text())
    assert diverged["final"] == "error" and diverged["iteration"] == DIVERGE_AT - 1
    assert f"Step {DIVERGE_AT} stopped the run because another process's loss or gradient" in diverged["message"]


def test_a_global_batch_that_cannot_be_split_is_refused_with_a_clear_message(two_processes, texts):
    checkpoint = two_processes / "full" / f"model_iter_{STOP_AT}"
    trainer = AZRTrainer.from_checkpoint(checkpoint, device="cpu")
    with pytest.raises(ConfigError, match=r"global batch of 16 windows cannot be split evenly over 1 process\(es\) "
                                          r"x 3 accumulation step"):
        trainer.train(texts, TARGET, two_processes / "full", resume_from=checkpoint, grad_accum_steps=3)


def test_sigterm_to_torchrun_leaves_exactly_one_consistent_interrupted_checkpoint(texts, model_config, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts))
    shape = [f"--{name.replace('_', '-')}={value}" for name, value in dataclasses.asdict(model_config).items()
             if name in SIZE_OPTIONS]
    command = [*TORCHRUN, "-m", "azr", "train", "--texts", str(corpus), "--runs-dir", str(tmp_path), "--run-name", "ddp",
               *shape, "--max-iterations", "100000", "--batch-size", "8", "--save-every", "5", "--val-every", "0",
               "--self-play-every", "0", "--device", "cpu"]
    process = subprocess.Popen(command, env=torchrun_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    run = tmp_path / "ddp"
    deadline = time.monotonic() + 240
    while not list(run.glob("model_iter_*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode != 0, err[-3000:]
    interrupted = list(run.glob("model_interrupted_*"))
    assert len(interrupted) == 1, (out[-2000:], err[-3000:])
    checkpoint = Checkpoint.open(interrupted[0])  # verified: every file matches its checksum
    assert checkpoint.state["processes"] == 2 and len(checkpoint.rng_state()["other_ranks"]) == 1
    assert checkpoint.history_length == checkpoint.iteration >= 5
    assert all(info.valid for info in list_checkpoints(run))
    assert out.count("Resume with: azr resume") == 1  # only rank 0 reports
