"""The page explains itself: a help line under every number and choice, units on every number, measures and
states in words, and self-play samples without boxes for characters that draw nothing."""
from __future__ import annotations

import pytest

from azr.app.jobs import TrainingJob
from azr.app.render import duration_text, render_status
from azr.app.ui import build_ui
from azr.training.status import TrainingStatus

FIELDS = ("number", "dropdown", "radio", "checkbox", "textbox", "slider")


def test_every_number_and_choice_on_the_page_has_a_help_line(tmp_path):
    config = build_ui(TrainingJob(tmp_path, hub_repo="")).get_config_file()
    inputs = {i for d in config["dependencies"] for i in d["inputs"]}
    fields = [c["props"] for c in config["components"] if c["id"] in inputs and c["type"] in FIELDS]
    assert len(fields) > 25
    assert [f["label"] for f in fields if not f.get("info")] == []


def status(**values) -> dict:
    values = {"state": "running", "iteration": 40, "max_iterations": 80, **values}
    return {**TrainingStatus(**values).as_dict(with_history=False), "run": "run-1"}


def test_the_status_panel_gives_units_and_says_its_measures_in_words():
    text = render_status(status(state="checkpoint", loss=2.5, tokens_per_s=1234.0, eta_s=75.0, memory_mb=321.4,
                                quality={"seq_rep_4": 0.858, "distinct_2": 0.024}, reward_components={"composite": 0.6},
                                reward=0.6, reward_std=0.1, kl=0.01))
    assert "`saving checkpoint`" in text and "`checkpoint`" not in text
    assert "peak memory (MiB)" in text and "| 321 |" in text and "MB" not in text
    assert "tokens/s" in text and "loss (nats/token)" in text and "| 1 min 15 s |" in text
    assert "repeated 4-token sequences (seq-rep-4, 0 is best) 0.858" in text
    assert "distinct token pairs (distinct-2, 1 is best) 0.024" in text
    assert "spread within a group (std) 0.100" in text and "(KL, nats) 0.0100" in text


@pytest.mark.parametrize("state", ["paused", "completed", "interrupted", "error"])
def test_a_run_that_is_not_training_has_no_eta(state):
    assert TrainingStatus(state, 40, 80, eta_s=12.0).eta_s is None
    assert "| — | " in render_status(status(state=state, eta_s=12.0))
    assert TrainingStatus("running", 40, 80, eta_s=12.0).eta_s == 12.0


def test_sample_characters_that_draw_nothing_show_as_escapes():
    sample = {"prompt": "a\x7fb\u0378", "continuation": "c\x01 é", "reward": 0.5}
    text = render_status(status(samples=[sample]))
    assert "- `a\\x7fb\\u0378` → `c\\x01 é` (reward 0.500)" in text


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (45, "45 s"), (725, "12 min 05 s"), (7380, "2 h 03 min")])
def test_durations_say_their_units(seconds, text):
    assert duration_text(seconds) == text
