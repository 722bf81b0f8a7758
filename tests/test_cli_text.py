"""What ``azr inspect`` and ``azr list`` print: the run's name, LRs in one format, short labelled lines, sizes in
MiB (as the app shows them)."""
from __future__ import annotations

import json
import re

import pytest
from conftest import FAST

from azr import AZRTrainer, build_model
from azr.cli.main import main

LR = re.compile(r"^\d\.\d\de[-+]\d\d$")  # as the progress bar shows it: 3.00e-03


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, texts, tokenizer, model_config):
    """A 10-iteration run named my-run."""
    directory = tmp_path_factory.mktemp("inspect") / "my-run"
    trainer = AZRTrainer(build_model(model_config, seed=0), tokenizer, device="cpu")
    trainer.train_continuous(texts, 10, directory, **FAST)
    return directory


def test_inspect_names_the_run_shows_lrs_one_way_and_keeps_its_lines_short(run_dir, capsys):
    assert main(["inspect", str(run_dir / "model_iter_10")]) == 0
    lines = capsys.readouterr().out.splitlines()
    values = {label: value.strip() for label, value in (line.split(": ", 1) for line in lines if not line[0].isspace())}
    assert values["Run"].startswith("my-run (id ")
    lrs = [values["LR at this point"].split()[0]] + re.findall(r"\blr=(\S+)", "\n".join(lines))
    assert len(lrs) == 2 and all(LR.match(lr) for lr in lrs), lrs
    assert {"Learning rate", "Saving", "Self-play"} <= set(values)
    assert max(len(line) for line in lines if not line.startswith("Checkpoint:")) <= 100
    assert re.search(r"\d files, \d+\.\d\d MiB, checksums ok$", values["Files"])
    assert main(["inspect", str(run_dir / "model_iter_10"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run"] == "my-run"


def test_list_gives_sizes_in_mib(run_dir, capsys):
    assert main(["list", str(run_dir)]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert re.search(r"\s\d+\.\d\d MiB\s", row), row
