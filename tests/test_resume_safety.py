"""A resume reads nothing outside its run, imports no code a checkpoint names, and a refused start leaves nothing
on disk (issue 25, items 1, 2 and 4)."""
from __future__ import annotations

import json
import shutil
import sys

import pytest
from conftest import FAST
from test_bad_inputs import resign

from azr import AZRError, AZRTrainer, ConfigError
from azr.checkpoints.statefile import STATE_FILE
from azr.data.tokens import TOKENS_DIR

SETTINGS = {**FAST, "self_play_every": 0, "val_every": 0}


@pytest.fixture
def paused(texts, tokenizer, make_model, tmp_path):
    """A run on custom texts (its corpus stored in the run), paused at iteration 5."""
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu",
                         status_callback=lambda s: s.iteration == 5 and trainer.stop_training())
    for _ in trainer.train(texts[:3], 20, tmp_path / "run", **SETTINGS):
        pass
    return tmp_path / "run" / "model_paused_5"


def _state(checkpoint) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text())


@pytest.mark.parametrize("leading_out", ["../../secret.txt", "ABSOLUTE"])
def test_a_checkpoints_corpus_path_cannot_lead_outside_its_run(paused, tmp_path, tokenizer, leading_out):
    secret = tmp_path / "secret.txt"
    secret.write_text("the owner's private notes\n" * 50)
    name = str(secret) if leading_out == "ABSOLUTE" else leading_out
    resign(paused, lambda state: state["corpus"].update(file=name))
    with pytest.raises(AZRError, match="corpus") as refused:
        AZRTrainer.from_checkpoint(paused, device="cpu").train(None, 10, tmp_path / "elsewhere", resume_from=paused)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "elsewhere").exists()
    assert not any("private notes" in p.read_text() for p in (tmp_path / "run").rglob("*.jsonl"))


def test_a_stored_corpus_that_is_not_the_recorded_one_is_refused(paused, tmp_path):
    stored = tmp_path / "run" / _state(paused)["corpus"]["file"]
    stored.write_text(json.dumps({"text": "someone else's text " * 100}) + "\n")
    shutil.rmtree(tmp_path / "run" / TOKENS_DIR)  # with its token file there, a resume does not read the corpus
    with pytest.raises(AZRError, match="fingerprint"):
        AZRTrainer.from_checkpoint(paused, device="cpu").train(None, 10, tmp_path / "run", resume_from=paused)


def test_a_resume_imports_no_reward_module_the_checkpoint_names(paused, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "planted_rewards.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "def score(prompts, completions):\n    return [0.0] * len(completions)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    resign(paused, lambda state: state["train_config"].update(rewards="planted_rewards:score"))
    with pytest.raises(ConfigError, match="planted_rewards:score"):
        AZRTrainer.from_checkpoint(paused, device="cpu").train(None, 10, tmp_path / "run", resume_from=paused)
    assert not marker.exists() and "planted_rewards" not in sys.modules
    trainer = AZRTrainer.from_checkpoint(paused, device="cpu")  # named by the user: allowed
    statuses = list(trainer.train(None, 6, tmp_path / "run", resume_from=paused, rewards="planted_rewards:score"))
    assert statuses[-1].state == "completed" and marker.exists()


def test_a_start_refused_after_its_checks_leaves_no_run_folder(texts, tokenizer, make_model, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    with pytest.raises(ConfigError, match="cannot be imported"):
        trainer.train(texts, 10, tmp_path / "new", rewards="no_such_module_anywhere:score", **SETTINGS)
    assert not (tmp_path / "new").exists()
    trainer.train(texts, 10, tmp_path / "new", **SETTINGS).close()  # the same name is free to use
    assert (tmp_path / "new").is_dir()

