"""The ``azr`` command, driven for real in subprocesses: signals, exact resume, list/inspect, user errors, generate,
demo and selftest; its options (one per TrainConfig field), run directories and hf:// references."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import temporaries
from safetensors.numpy import load as load_columns
from safetensors.numpy import save as save_columns

from azr import default_corpus, list_checkpoints
from azr.checkpoints import storage
from azr.checkpoints.checkpoint import Checkpoint, verify_checkpoint
from azr.checkpoints.names import HISTORY_FILE
from azr.checkpoints.statefile import seal
from azr.cli.commands import _settings
from azr.cli.main import SETTING_CHOICES, build_parser, main
from azr.cli.selftest import first_difference
from azr.config import FIXED_ON_RESUME, TrainConfig

# One thread per process: the tiny models do not need more, and two test processes then fit on 2 cores.
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
TARGET = 80
BIG_TARGET = 100_000
TINY = ["--d-model", "32", "--num-layers", "1", "--num-heads", "2", "--d-ff", "64", "--max-seq-len", "32",
        "--vocab-size", "300"]
# A constant LR and a given warmup (a default one is at most half the target) make the schedule independent of the
# target, so a run to BIG_TARGET stopped early and resumed to TARGET must repeat the run to TARGET exactly.
# Self-play every 5 iterations exercises its RNG across the stop.
FAST = ["--batch-size", "4", "--save-every", "10", "--lr-schedule", "constant", "--warmup", "50", "--self-play-every",
        "5", "--no-keep-best"]
TIMEOUT_S = 240


def start(*args: object) -> subprocess.Popen:
    """Start ``azr ARGS`` with stdout and stderr captured separately."""
    return subprocess.Popen(["azr", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def azr(*args: object) -> subprocess.CompletedProcess:
    """Run ``azr ARGS`` to the end."""
    return finish(start(*args))


def azr_all(commands: dict[str, list[object]]) -> dict[str, subprocess.CompletedProcess]:
    """Run several ``azr`` commands side by side (each pays Python's start-up once, in parallel)."""
    processes = {name: start(*args) for name, args in commands.items()}
    return {name: finish(process) for name, process in processes.items()}


def losses(checkpoint: Path) -> list[float]:
    return [record["loss"] for record in Checkpoint.open(checkpoint).history()]


def corrupt(file: Path) -> None:
    """Flip the bits of a file's last byte."""
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    """About 60 kB of the default corpus in a text file."""
    path = tmp_path_factory.mktemp("texts") / "small.txt"
    path.write_text(default_corpus()[0][:60_000], encoding="utf-8")
    return path


def train_args(corpus_file: Path, directory: Path, target: int) -> list[object]:
    """``azr train`` into the run directory ``directory``."""
    return ["train", *TINY, *FAST, "--texts", corpus_file, "--runs-dir", directory.parent, "--run", directory.name,
            "--max-iterations", target]


@pytest.fixture(scope="module")
def reference(corpus_file, tmp_path_factory) -> Path:
    """The directory of an uninterrupted ``azr train`` run to TARGET."""
    directory = tmp_path_factory.mktemp("reference")
    result = azr(*train_args(corpus_file, directory, TARGET))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Run directory: {directory}\n")
    assert f"Checkpoint: {directory / f'model_iter_{TARGET}'}" in result.stdout
    return directory


def train_until_signalled(corpus_file: Path, directory: Path, *signals: signal.Signals) -> tuple[int, str]:
    """Start a long run, send ``signals`` (10 ms apart) once model_iter_10 is saved; return (status, output)."""
    process = subprocess.Popen(["azr", *map(str, train_args(corpus_file, directory, BIG_TARGET))],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    watchdog = threading.Timer(TIMEOUT_S, process.kill)
    watchdog.start()
    try:
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith(f"Saved {directory / 'model_iter_10'} "):
                for signum in signals:
                    process.send_signal(signum)
                    time.sleep(0.01)
                break
        rest, _ = process.communicate()
    finally:
        watchdog.cancel()
    return process.returncode, "".join(seen) + rest


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_the_completed_iterations_and_resume_repeats_the_run_exactly(corpus_file, reference, tmp_path,
                                                                                   signum, code):
    status, output = train_until_signalled(corpus_file, tmp_path, signum)
    assert status == code, output
    assert "Traceback" not in output
    [checkpoint] = tmp_path.glob("model_interrupted_*")
    iterations = int(checkpoint.name.rsplit("_", 1)[1])
    saved = verify_checkpoint(checkpoint)
    assert saved.kind == "interrupted"
    assert saved.iteration == iterations == saved.history_length
    assert [r["iteration"] for r in saved.history()] == list(range(1, iterations + 1))
    assert 10 <= iterations < TARGET
    assert f"Resume with: azr resume {checkpoint} --max-iterations {BIG_TARGET}" in output

    resumed = azr("resume", checkpoint, "--max-iterations", TARGET)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resumed at iteration {iterations}; training to {TARGET}." in resumed.stdout
    final, expected = tmp_path / f"model_iter_{TARGET}", reference / f"model_iter_{TARGET}"
    assert losses(final) == losses(expected)
    assert Checkpoint.open(final).state["files"]["model.safetensors"] == Checkpoint.open(expected).state["files"]["model.safetensors"]


def test_a_second_sigint_exits_at_once_and_leaves_only_complete_checkpoints(corpus_file, tmp_path):
    status, output = train_until_signalled(corpus_file, tmp_path, signal.SIGINT, signal.SIGINT)
    # 130 when the second signal lands in the batch or the save; killed by SIGINT (130 to a shell) when it lands
    # after the process has finished stopping.
    assert status in (130, -signal.SIGINT), output
    assert "Traceback" not in output
    assert not temporaries(tmp_path)
    infos = list_checkpoints(tmp_path)
    assert all(info.valid for info in infos) and "model_iter_10" in {info.name for info in infos}
    # The second signal writes nothing: an interrupted checkpoint exists only when the first one's save had
    # finished before it, and then the output says so.
    interrupted = [info.name for info in infos if info.kind == "interrupted"]
    assert interrupted == [] or "Interrupted at iteration" in output, (interrupted, output)
    assert "Stopped at once by a second signal" in output or interrupted


def test_list_and_inspect_report_what_is_on_disk_including_an_invalid_checkpoint(reference, tmp_path):
    directory = tmp_path / "run"
    shutil.copytree(reference, directory)
    corrupt(directory / "model_iter_70" / "model.safetensors")
    newest = directory / f"model_iter_{TARGET}"
    results = azr_all({
        "list json": ["list", directory, "--json"],
        "list": ["list", directory],
        "inspect json": ["inspect", newest, "--json"],
        "inspect": ["inspect", newest],
        "inspect invalid": ["inspect", directory / "model_iter_70", "--json"],
    })
    assert all(r.returncode == 0 for r in results.values()), {k: r.stderr for k, r in results.items()}

    listed = {entry["name"]: entry for entry in json.loads(results["list json"].stdout)}
    assert set(listed) == {f"model_iter_{n}" for n in (40, 50, 60, 70, 80)}  # keep_last 5
    state = Checkpoint.open(newest).state
    assert listed[newest.name] | {"size_bytes": 0} == {
        "name": newest.name, "path": str(newest), "kind": "iter", "iteration": TARGET, "max_iterations": TARGET,
        "loss": state["loss"], "val_loss": state["val_loss"], "timestamp": state["timestamp"], "size_bytes": 0,
        "has_optimizer": True, "valid": True, "reason": None,
    }
    assert listed["model_iter_70"]["valid"] is False
    assert "checksum" in listed["model_iter_70"]["reason"]
    table = results["list"].stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "KIND", "ITER"]
    assert "invalid: checksum mismatch in model.safetensors" in next(row for row in table if "model_iter_70" in row)

    report = json.loads(results["inspect json"].stdout)
    assert report["iteration"] == TARGET and report["history_length"] == TARGET and report["has_optimizer"]
    assert report["lr"] == state["lr"] and report["data_position"] == state["data_position"]
    assert report["model_config"]["d_model"] == 32 and report["train_config"]["batch_size"] == 4
    assert report["versions"] == state["versions"] and report["valid"] is True
    text = results["inspect"].stdout
    for line in ("Iteration:", "Has optimizer:", "History length:", "LR at this point:", "Data position:",
                 "checksums ok"):
        assert line in text
    invalid = json.loads(results["inspect invalid"].stdout)
    assert invalid["iteration"] == 70 and invalid["valid"] is False and "checksum" in invalid["reason"]


@pytest.fixture(scope="module")
def user_errors(corpus_file, reference, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every user error of the CLI, run side by side."""
    scratch = tmp_path_factory.mktemp("errors")
    broken = scratch / "model_iter_80"
    shutil.copytree(reference / f"model_iter_{TARGET}", broken)
    corrupt(broken / "model.safetensors")
    new_run = ["--runs-dir", scratch, "--texts", corpus_file, *TINY]
    shutil.copytree(reference, scratch / "taken")
    return azr_all({
        "missing checkpoint": ["resume", scratch / "model_iter_5", "--max-iterations", 10],
        "invalid checkpoint": ["resume", broken, "--max-iterations", 100],
        "architecture mismatch": ["train", "--base-model", reference / f"model_iter_{TARGET}", "--d-model", 64,
                                  "--max-iterations", 5, "--runs-dir", scratch],
        "zero iterations": ["train", *new_run, "--max-iterations", 0],
        "negative batch size": ["train", *new_run, "--max-iterations", 5, "--batch-size", -1],
        "unknown preset": ["train", "--preset", "huge", "--max-iterations", 5],
        "missing texts": ["train", "--texts", scratch / "missing.txt", "--max-iterations", 5],
        "target below checkpoint": ["resume", reference / f"model_iter_{TARGET}", "--max-iterations", 20],
        "directory of another run": ["train", *new_run, "--run", "taken", "--max-iterations", 5],
        "bad run name": ["train", *new_run, "--run", "model_iter_5", "--max-iterations", 5],
        "bare hub repo": ["resume", "user/run"],
        "bare hub pull": ["pull", "user/run"],
        "bad setting": ["train", *new_run, "--lr-schedule", "linear"],
        "fixed on resume": ["resume", reference / f"model_iter_{TARGET}", "--seed", 1],
    })


@pytest.mark.parametrize("case, message", [
    ("missing checkpoint", "does not exist"),
    ("invalid checkpoint", "checksum mismatch in model.safetensors"),
    ("architecture mismatch", "Architecture mismatch"),
    ("zero iterations", "--max-iterations: must be a positive integer up to 1,000,000,000, got 0"),
    ("negative batch size", "--batch-size: must be a positive integer up to 65,536, got -1"),
    ("unknown preset", "Unknown preset 'huge'"),
    ("missing texts", "missing.txt' does not exist"),
    ("target below checkpoint", "below the checkpoint's iteration"),
    ("directory of another run", "already holds"),
    ("bad run name", "'model_iter_5' cannot name a run"),
    ("bare hub repo", "Checkpoint 'user/run' does not exist; for a Hub repo write hf://user/run."),
    ("bare hub pull", "'user/run' is not a Hub reference; write hf://user/run"),
    ("bad setting", "--lr-schedule: must be one of cosine, constant, wsd, got 'linear'"),
    ("fixed on resume", "unrecognized arguments: --seed 1"),
])
def test_a_user_error_is_one_line_on_stderr_and_exit_status_2(user_errors, case, message):
    result = user_errors[case]
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("azr: error: ") and message in line
    assert "Traceback" not in result.stdout + result.stderr


def test_generate_is_deterministic_with_a_seed(reference):
    checkpoint = reference / f"model_iter_{TARGET}"
    arguments = ["generate", checkpoint, "--prompt", "ROMEO:", "--max-new-tokens", 20, "--seed", 3]
    results = azr_all({"first": arguments, "second": arguments})
    assert all(r.returncode == 0 for r in results.values()), results["first"].stderr
    assert results["first"].stdout == results["second"].stdout
    assert results["first"].stdout.startswith("ROMEO:") and len(results["first"].stdout) > len("ROMEO:\n")


def test_demo_runs_the_seed_guide_scenario_and_lists_the_checkpoints(tmp_path):
    result = azr("demo", "--dir", tmp_path)
    assert result.returncode == 0, result.stderr
    for step in ("Step 1", "Step 2", "Step 3", "Step 4"):
        assert step in result.stdout
    assert {info.kind for info in list_checkpoints(tmp_path)} == {"iter", "paused", "best"}  # it validates: a best
    assert "NAME" in result.stdout and "model_iter_" in result.stdout.split("NAME", 1)[1]


def test_sigterm_stops_the_demo_with_a_checkpoint_and_exit_status_143(tmp_path):
    process = subprocess.Popen(["azr", "demo", "--dir", str(tmp_path)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=ENV)
    seen = []
    for line in process.stdout:  # a status line is printed from inside the run, where the signal saves
        seen.append(line)
        if line.startswith("Saved "):
            process.send_signal(signal.SIGTERM)
            break
    output = "".join(seen) + process.communicate(timeout=TIMEOUT_S)[0]
    assert process.returncode == 143, output
    assert "The demo stops here." in output
    assert [info.kind for info in list_checkpoints(tmp_path)][0] == "interrupted"


def test_selftest_proves_that_resume_in_a_fresh_process_is_bit_identical():
    result = azr("selftest", "--iterations", 12)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bit-identical" in result.stdout


def test_python_dash_m_azr_is_the_same_command():
    result = subprocess.run(["python", "-m", "azr", "--help"], capture_output=True, text=True, env=ENV,
                            timeout=TIMEOUT_S)
    assert result.returncode == 0 and "usage: azr" in result.stdout


@pytest.mark.parametrize("command", ["train", "resume", "list", "inspect", "generate", "demo", "selftest"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: azr {command}")


def test_selftest_names_the_first_difference(reference, tmp_path):
    expected = reference / f"model_iter_{TARGET}"
    altered = tmp_path / expected.name
    shutil.copytree(expected, altered)
    tail = load_columns((altered / HISTORY_FILE).read_bytes())
    tail["loss"][41] += 1e-7
    (altered / HISTORY_FILE).write_bytes(save_columns(tail))
    state = json.loads((altered / "trainer_state.json").read_text())
    state["files"][HISTORY_FILE] = storage.file_checksum((altered / HISTORY_FILE))
    state.pop("state_sha256")
    (altered / "trainer_state.json").write_bytes(seal(state))
    assert first_difference(expected, expected) is None
    assert first_difference(expected, altered).startswith("iteration 42, loss ")


def sample_value(field: dataclasses.Field) -> tuple[list[str], object]:
    """Return a valid value of a TrainConfig field other than its default, as arguments and as the parsed value."""
    option, default = "--" + field.name.replace("_", "-"), field.default
    if isinstance(default, bool):  # --name / --no-name
        return [option if not default else "--no-" + option[2:]], not default
    if field.name == "rewards":  # free text: a list of reward functions
        value = "ends_sentence(within=8)*2, composite"
    elif field.name == "num_generations":  # self_play_batch's sample (9) must be a multiple of it
        value = 3
    elif isinstance(default, str):
        value = next(choice for choice in SETTING_CHOICES[field.name] if choice != default)
    elif isinstance(default, float):
        value = default / 2
    else:  # int, or None for an optional int
        value = (default or 7) + 1
    return [option, str(value)], value


def test_every_train_config_field_is_an_option_whose_value_reaches_the_trainer(capsys):
    helps = {}
    for command in ("train", "resume"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        helps[command] = capsys.readouterr().out
    parser = build_parser()
    train, resume = ["train"], ["resume", "run/model_iter_1"]
    train_settings, resume_settings = {}, {}
    for field in dataclasses.fields(TrainConfig):
        option = "--" + field.name.replace("_", "-")
        arguments, value = sample_value(field)
        listed = re.compile(rf"(?<![\w-]){option}(?![\w-])")
        assert listed.search(helps["train"]), option
        assert bool(listed.search(helps["resume"])) is (field.name not in FIXED_ON_RESUME), option
        assert _settings(parser.parse_args(["train", *arguments])) == {field.name: value}
        train += arguments
        train_settings[field.name] = value
        if field.name not in FIXED_ON_RESUME:
            resume += arguments
            resume_settings[field.name] = value
    assert "seed" in FIXED_ON_RESUME and "--seed" not in helps["resume"]
    assert _settings(parser.parse_args(train)) == train_settings and TrainConfig(**train_settings)
    assert _settings(parser.parse_args(resume)) == resume_settings
    assert _settings(parser.parse_args(["train"])) == _settings(parser.parse_args(["resume", "x"])) == {}
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--warmup", "-1"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == \
        "azr: error: --warmup: must be zero or a positive integer up to 1,000,000,000, got -1 " \
        "(see `azr train --help`)\n"


def run_directory(result: subprocess.CompletedProcess) -> Path:
    """Return the run directory ``azr train`` or ``azr resume`` said it trains in."""
    return Path(re.search(r"^Run directory: (.+)$", result.stdout, re.MULTILINE).group(1))


def test_each_training_gets_its_own_run_directory_and_takes_every_setting(corpus_file, tmp_path, capsys):
    common = ["train", *TINY, "--texts", corpus_file, "--batch-size", 4, "--runs-dir", tmp_path]
    results = azr_all({"first": [*common, "--warmup", 2, "--lr-schedule", "wsd", "--max-iterations", 4],
                       "second": [*common, "--max-iterations", 3]})  # side by side: the same second
    assert all(r.returncode == 0 for r in results.values()), {k: r.stderr for k, r in results.items()}
    first, second = run_directory(results["first"]), run_directory(results["second"])
    assert first != second and first.parent == second.parent == tmp_path
    assert sorted(tmp_path.iterdir()) == sorted([first, second])
    config = Checkpoint.open(first / "model_iter_4").state["train_config"]
    assert (config["warmup"], config["lr_schedule"], config["max_iterations"]) == (2, "wsd", 4)

    resumed = azr("resume", first / "model_iter_4", "--lr-schedule", "constant", "--max-iterations", 6)
    assert resumed.returncode == 0, resumed.stderr
    assert run_directory(resumed) == first
    assert Checkpoint.open(first / "model_iter_6").state["train_config"]["lr_schedule"] == "constant"

    assert main(["list", str(tmp_path), "--json"]) == 0
    listed = {(entry["run"], entry["name"]) for entry in json.loads(capsys.readouterr().out)}
    assert listed == {(first.name, "model_iter_4"), (first.name, "model_iter_6"), (second.name, "model_iter_3"),
                      (first.name, "model_predecay_3")}  # the wsd run kept the state where its decay began
    assert main(["list", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["RUN", "NAME", "KIND"] and len(table) == 5
    assert main(["list", str(second)]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[0] == "NAME"


def test_list_without_a_runs_directory_says_how_to_start(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["list"]) == 0
    assert capsys.readouterr().out == "No checkpoints yet in checkpoints; train a run with `azr train`.\n"
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("checkpoint, message", [
    ("checkpoints/model_iter_1000", "Checkpoint 'checkpoints/model_iter_1000' does not exist; check the path or run `azr list`."),
    ("user/run", "Checkpoint 'user/run' does not exist; for a Hub repo write hf://user/run."),
])
def test_a_checkpoint_without_hf_is_a_local_path_and_never_asks_the_hub(tmp_path, monkeypatch, capsys,
                                                                         checkpoint, message):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")  # asking it would fail with another message
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", checkpoint]) == 2
    assert capsys.readouterr().err == f"azr: error: {message}\n"


def test_a_checkpoint_saved_in_the_background_is_not_shown_with_the_iteration_training_reached(capsys):
    """model_iter_10 written while training went on to 12 reads as such, not as "model_iter_10 (iteration 12)"."""
    from azr.cli.terminal import Progress
    from azr.training.status import TrainingStatus

    progress = Progress()
    for iteration, checkpoint in ((12, "r/model_iter_10"), (20, "r/model_iter_20")):
        progress(TrainingStatus("checkpoint", iteration, 20, loss=1.5, checkpoint=checkpoint))
    assert capsys.readouterr().out.splitlines() == [
        "Saved r/model_iter_10 in the background (training is at iteration 12, loss 1.5000)",
        "Saved r/model_iter_20 (iteration 20, loss 1.5000)"]
