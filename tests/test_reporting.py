"""report_to: TensorBoard event files in the run directory and in the pushed Hub repo, and a local trackio run,
each holding every reported iteration once across a pause and a resume."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import FAST
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from azr import AZRTrainer, ConfigError

REPORTED = [5, 10, 15, 20]  # FAST reports every 5 iterations


def steps(log_dir, tag: str = "train/loss") -> list[tuple[int, float]]:
    """The (step, value) events of ``tag`` in a directory of event files, none hidden by a purge."""
    events = EventAccumulator(str(log_dir), purge_orphaned_data=False)
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def paused_and_resumed(make_model, tokenizer, texts, run_dir, **options) -> AZRTrainer:
    """Train to 20 with a pause at 10 and a resume from the paused checkpoint; return the resumed trainer."""
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    for status in trainer.train(texts, 20, run_dir, **FAST, **options):
        if status.iteration == 10 and status.state == "running":
            trainer.stop_training()
    resumed = AZRTrainer.from_checkpoint(run_dir / "model_paused_10", device="cpu")
    resumed.train_continuous(texts, 20, run_dir, **options)
    return resumed


def test_tensorboard_logs_each_step_once_locally_and_in_the_pushed_repo(make_model, tokenizer, texts, tmp_path,
                                                                       hub_env, hub_server):
    resumed = paused_and_resumed(make_model, tokenizer, texts, tmp_path / "run", report_to="tensorboard",
                                 hub_repo_id="user/tb", hub_token=hub_env["token"])
    losses = {record["iteration"]: record["loss"] for record in resumed.history}
    local = steps(tmp_path / "run" / "runs")
    assert [step for step, _ in local] == REPORTED
    assert [value for _, value in local] == pytest.approx([losses[step] for step in REPORTED])
    assert len(list((tmp_path / "run" / "runs").iterdir())) == 2  # one event file per session, appended
    for tag in ("train/learning_rate", "train/reward", "reward/chrf", "eval/loss", "train/tokens_per_s"):
        reported = [step for step, _ in steps(tmp_path / "run" / "runs", tag)]
        assert reported and len(reported) == len(set(reported)), tag

    pushed = tmp_path / "pushed"
    pushed.mkdir()
    for path, content in hub_server.files("user/tb").items():
        if path.startswith("runs/"):
            (pushed / path.removeprefix("runs/")).write_bytes(content)
    assert steps(pushed) == local


def test_trackio_logs_each_step_once_locally(tmp_path):
    script = """
import json, sys
from pathlib import Path
from conftest import FAST
from azr import AZRTrainer, build_model, ModelConfig, default_corpus, train_tokenizer
from test_reporting import paused_and_resumed
from trackio.sqlite_storage import SQLiteStorage
texts = [default_corpus()[0][:20_000]]
tokenizer = train_tokenizer(texts, 300)
config = ModelConfig(vocab_size=len(tokenizer), d_model=32, num_layers=1, num_heads=2, d_ff=64, max_seq_len=32)
paused_and_resumed(lambda: build_model(config, seed=0), tokenizer, texts, Path(sys.argv[1]), report_to="trackio")
print(json.dumps([log["step"] for log in SQLiteStorage.get_logs("azr", "run") if "train/loss" in log]))
"""
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == REPORTED
    assert "Trackio" not in result.stdout  # the library prints nothing


def test_an_unknown_target_is_refused_before_anything_is_written(make_model, tokenizer, texts, tmp_path):
    with pytest.raises(ConfigError, match="report_to must be among none, tensorboard, trackio, got 'wandb'"):
        AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 5, tmp_path / "run", report_to="wandb")
    assert not (tmp_path / "run").exists()
