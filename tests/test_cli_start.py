"""The command line starts at once: help, usage errors and ``azr list`` import no heavy library; ``import azr`` is
lazy. One generation path: the CLI and the app sample through ``services.sample_text`` and both verify the
checkpoint. Checkpoint weights load with ``safetensors.torch.load_model``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST

from azr import AZRTrainer, CheckpointError, build_model
from azr.app.jobs import TrainingJob
from azr.checkpoints.checkpoint import Checkpoint
from azr.config import ModelConfig
from azr.services import sample_text

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
HEAVY = ("torch", "transformers", "gradio", "huggingface_hub", "safetensors", "numpy", "pandas")
# Run commands in one process, printing after each the heavy modules it has imported so far.
PROBE = """
import json, sys
from azr.cli.main import main
for argv in json.loads(sys.argv[1]):
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    print(json.dumps([status, sorted(m for m in {heavy} if m in sys.modules)]), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory, texts, tokenizer, model_config) -> Path:
    """A run directory holding model_iter_10."""
    directory = tmp_path_factory.mktemp("start") / "run"
    AZRTrainer(build_model(model_config, seed=0), tokenizer, device="cpu").train_continuous(texts, 10, directory,
                                                                                            **FAST)
    return directory


def probe(*commands: list[str]) -> tuple[list[tuple[int, list[str]]], str]:
    """Run ``azr`` commands one after the other in a fresh process; return each one's exit status and the heavy
    modules imported after it, and the process's stdout."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), json.dumps(commands)],
                          capture_output=True, text=True, env=ENV, timeout=120)
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("[")]
    assert done.returncode == 0 and len(lines) == len(commands), done.stderr[-2000:]
    return [tuple(line) for line in lines], done.stdout


def test_help_usage_errors_and_list_import_no_heavy_library(run):
    results, stdout = probe(["--help"], ["train", "--help"], ["resume", "--help"], ["list", "--help"],
                            ["train", "--lr-schedule", "linear"], ["train", "--batch-sise", "4"],
                            ["resume", "x", "--batch-size", "-1"], ["train", "--run", "a b"],
                            ["list", str(run)])
    assert [status for status, _ in results] == [0, 0, 0, 0, 2, 2, 2, 2, 0]
    assert all(imported == [] for _, imported in results), results
    assert "model_iter_10" in stdout and stdout.rstrip().endswith("valid")


@pytest.mark.parametrize("command", [["generate", "checkpoints/nope", "--prompt", "x"], ["resume", "alice/run"],
                                     ["inspect", "nope"], ["merge", "nope", "out"], ["push", "nope", "user/run"]])
def test_a_missing_checkpoint_is_refused_before_any_heavy_import(command, tmp_path):
    """The path is checked first: the one-line error comes at once, not after torch has loaded."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), json.dumps([command])],
                          capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("azr: error: ")]
    assert len(errors) == 1 and "does not exist" in errors[0], done.stderr[-2000:]
    status, imported = json.loads(done.stderr.splitlines()[-1])
    assert status == 2 and not {"torch", "transformers"} & set(imported), (status, imported)
    assert not list(tmp_path.iterdir())  # nothing was created


def test_import_azr_is_lazy_and_every_public_name_resolves():
    code = ("import sys, azr; light = 'torch' not in sys.modules; names = [getattr(azr, n) for n in azr.__all__]; "
            "print(light, 'torch' in sys.modules, set(azr.__all__) <= set(dir(azr)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.stdout.split() == ["True", "True", "True"], done.stderr[-2000:]
    import azr

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        azr.nothing  # noqa: B018


def damaged_copy(run: Path, to: Path) -> Path:
    """Copy the run into ``to`` and flip a byte of its checkpoint's weights; return the copied checkpoint."""
    copy = Path(shutil.copytree(run, to)) / "model_iter_10"
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    return copy


def test_cli_and_app_sample_the_same_text_and_both_verify_the_checkpoint(run, tmp_path):
    checkpoint = run / "model_iter_10"
    expected = sample_text(Checkpoint.open(checkpoint), "ROMEO:", temperature=1.0, top_k=50, max_new_tokens=12,
                           seed=5)
    job = TrainingJob(run.parent)
    assert job.generate("run/model_iter_10", "ROMEO:", 1.0, 50, 12, seed=5) == expected
    cli = subprocess.run(["azr", "generate", str(checkpoint), "--prompt", "ROMEO:", "--max-new-tokens", "12",
                          "--seed", "5"], capture_output=True, env=ENV, timeout=120)
    assert cli.returncode == 0 and cli.stdout.decode() == expected + "\n", cli.stderr[-2000:]

    damaged = damaged_copy(run, run.parent / "damaged")
    with pytest.raises(CheckpointError, match="checksum mismatch in model.safetensors"):
        TrainingJob(run.parent).generate("damaged/model_iter_10", "ROMEO:", 1.0, 50, 12, seed=5)
    cli = subprocess.run(["azr", "generate", str(damaged), "--prompt", "ROMEO:"], capture_output=True, text=True,
                         env=ENV, timeout=120)
    assert cli.returncode == 2 and cli.stdout == ""
    [line] = cli.stderr.splitlines()
    assert line.startswith("azr: error: ") and "checksum mismatch in model.safetensors" in line


@pytest.mark.parametrize("change, problem", [(dict(d_model=48), "size mismatch for"),
                                             (dict(num_layers=2), "Missing key(s)")])
def test_weights_that_do_not_fit_get_one_sentence(run, model_config, change, problem):
    other = build_model(ModelConfig(**{**model_config.to_dict(), **change}), seed=0)
    with pytest.raises(CheckpointError, match="do not fit the model") as error:
        Checkpoint.open(run / "model_iter_10").load_weights(other)
    message = str(error.value)
    assert problem in message and "\n" not in message and message.endswith(".")
