"""The bad-input corpus: every bad setting, path and damaged checkpoint, through the Python API, the CLI and the
app's endpoints, gets one clear sentence (an AZRError, ``azr: error: …`` with exit status 2, a ``gr.Error``) and
changes nothing. The summary is written to tests/artifacts/bad_inputs.txt."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import orjson
import pytest
import torch
from conftest import FAST

from azr import AZRError, AZRTrainer, ModelConfig, TrainConfig
from azr.app.api import AppAPI, as_endpoint
from azr.app.jobs import TrainingJob
from azr.checkpoints import storage
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.statefile import STATE_FILE, seal
from azr.cli.main import SIZE_OPTIONS, main
from azr.config import SAMPLING_RANGES
from azr.config.ranges import Range
from azr.services import sample_text

ARTIFACTS = Path(__file__).parent / "artifacts"
CHECKPOINT = "model_iter_4"


@dataclass
class Outcome:
    """What one bad input produced: whether it was clean, and the text the user saw."""

    clean: bool
    text: str


def one_sentence(text: str) -> bool:
    """A user-facing message: one line, no traceback, ends like a sentence."""
    return bool(text) and "\n" not in text.strip() and "Traceback" not in text and text.strip().endswith((".", ")"))


def api_outcome(call: Callable[[], object]) -> Outcome:
    try:
        call()
    except AZRError as exc:
        return Outcome(one_sentence(str(exc)), str(exc))
    except Exception as exc:  # a bug: the corpus reports it instead of stopping at the first one
        return Outcome(False, f"{type(exc).__name__}: {exc}")
    return Outcome(False, "accepted")


def cli_outcome(argv: list[str]) -> Outcome:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    except Exception as exc:
        return Outcome(False, f"{type(exc).__name__}: {exc}")
    last = err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ""
    clean = code == 2 and "Traceback" not in err.getvalue() and ": error: " in last and one_sentence(last)
    return Outcome(clean, f"exit {code}: {last}")


def app_outcome(call: Callable[[], object]) -> Outcome:
    try:
        call()
    except gr.Error as exc:
        return Outcome(one_sentence(exc.message), exc.message)
    except Exception as exc:
        return Outcome(False, f"{type(exc).__name__}: {exc}")
    return Outcome(False, "accepted")


def tree_digest(path: Path) -> str:
    """sha256 over the names and bytes of every file under ``path``: proves an attempt changed nothing."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + file.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------- damaged checkpoints


def resign(directory: Path, state_change: Callable[[dict], None] | None = None, sealed: bool = True) -> None:
    """Make the checksums match the damaged files again (as a careless tool would), optionally editing the state."""
    state = json.loads((directory / STATE_FILE).read_text())
    state.pop("state_sha256", None)
    for name in state.get("files", {}) if isinstance(state.get("files"), dict) else []:
        if (directory / name).is_file():
            state["files"][name] = storage.file_checksum((directory / name))
    if state_change:
        state_change(state)
    (directory / STATE_FILE).write_bytes(seal(state) if sealed else json.dumps(state).encode())


def write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: ((d / name).write_bytes(data), resign(d))


def truncate(name: str, keep: int) -> Callable[[Path], None]:
    return lambda d: ((d / name).write_bytes((d / name).read_bytes()[:keep]), resign(d))


def edit_state(change: Callable[[dict], None], sealed: bool) -> Callable[[Path], None]:
    return lambda d: resign(d, change, sealed)


def edit_json(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        value = json.loads((d / name).read_text())
        change(value)
        (d / name).write_text(json.dumps(value))
        resign(d)
    return apply


def link_corpus(run: Path) -> None:
    """Replace the run's stored corpus by a symbolic link to a copy of it outside the run."""
    [corpus] = (run / "corpus").iterdir()
    outside = run.parent / "outside.txt"
    shutil.copy(corpus, outside)
    corpus.unlink()
    corpus.symlink_to(outside)


class Pickled:
    def __reduce__(self):
        return (shutil.rmtree, ("/",))


# name -> (damage, a word the message must contain; '|' separates alternatives). Two damages show only when a model is built from the files:
# opening the checkpoint (and loading its weights into a given model, for the tokenizer) rightly accepts them.
BUILD_ONLY = {"config.json that does not fit the weights": {"api Checkpoint.open"},
              "garbage tokenizer.json": {"api Checkpoint.open", "api load_checkpoint", "api train(resume_from)"}}
DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated weights": (truncate("model.safetensors", 500), "model.safetensors"),
    "weights cut mid-data": (truncate("model.safetensors", -100), "model.safetensors"),
    "empty weights": (write("model.safetensors", b""), "model.safetensors"),
    "empty optimizer": (write("optimizer.safetensors", b""), "optimizer.safetensors"),
    "pickle in the optimizer": (write("optimizer.safetensors", __import__("pickle").dumps(Pickled())),
                                "optimizer.safetensors"),
    "garbage rng state": (write("rng_state.safetensors", b"\x00" * 64), "rng_state.safetensors"),
    "garbage history tail": (write("history_tail.safetensors", b"xx"), "history_tail.safetensors"),
    "garbage scheduler.json": (write("scheduler.json", b"{nope"), "scheduler.json"),
    "scheduler.json of another shape": (write("scheduler.json", b'{"kind": 5}'), "scheduler.json"),
    "scheduler.json with an unknown kind": (edit_json("scheduler.json", lambda v: v.update(kind="zigzag")),
                                            "scheduler.json"),
    "garbage config.json": (write("config.json", b"[1, 2"), "config.json"),
    "config.json that does not fit the weights": (edit_json("config.json", lambda v: v.update(hidden_size=48)),
                                                 "config|architecture"),
    "garbage tokenizer.json": (write("tokenizer.json", b"{}"), "tokenizer"),
    "state edited after sealing": (lambda d: (d / STATE_FILE).write_text(
        (d / STATE_FILE).read_text().replace('"iteration": 4', '"iteration": 3')), STATE_FILE),
    "state file not JSON": (lambda d: (d / STATE_FILE).write_text("{"), STATE_FILE),
    "state file a list": (lambda d: (d / STATE_FILE).write_text("[]"), STATE_FILE),
    "newer format": (edit_state(lambda s: s.update(format_version=99), sealed=True), "upgrade"),
    "history a string": (edit_state(lambda s: s.update(history="abc"), sealed=False), "history"),
    "history length not a count": (edit_state(lambda s: s["history"].update(length="x"), sealed=False), "history"),
    "train_config missing": (edit_state(lambda s: s.pop("train_config"), sealed=False), "train_config"),
    "train_config with a bad lr": (edit_state(lambda s: s["train_config"].update(lr="fast"), sealed=True),
                                   "train_config"),
    "negative iteration": (edit_state(lambda s: s.update(iteration=-5), sealed=False), "iteration"),
    "files not a mapping": (edit_state(lambda s: s.update(files=[1, 2]), sealed=False), "files"),
    "a file outside the checkpoint": (edit_state(lambda s: s["files"].update({"../run.json": "0" * 64}),
                                                 sealed=False), "outside"),
    "data position not counts": (edit_state(lambda s: s.update(data_position={"epoch": "x"}), sealed=False),
                                 "data position"),
    "corpus a link out of the run": (lambda d: link_corpus(d.parent), "corpus"),
    "corpus recorded outside the run": (edit_state(lambda s: s["corpus"].update(file="../../../../etc/hostname"),
                                                   sealed=True), "corpus"),
    "missing weights": (lambda d: (d / "model.safetensors").unlink(), "model.safetensors"),
    "state file missing": (lambda d: (d / STATE_FILE).unlink(), STATE_FILE),
}


@pytest.fixture(scope="module")
def original(texts, tokenizer, model_config, tmp_path_factory):
    """A run with a 4-iteration checkpoint, its texts, and a tiny model of its shape."""
    from azr import build_model

    root = tmp_path_factory.mktemp("bad-inputs")
    trainer = AZRTrainer(build_model(model_config, seed=0), tokenizer, device="cpu")
    for _ in trainer.train(texts, 4, root / "run", **{**FAST, "save_every": 4}):
        pass
    return root / "run"


def damaged_copy(original: Path, tmp_path: Path, damage: Callable[[Path], None]) -> Path:
    run = tmp_path / "run"
    shutil.copytree(original, run)
    damage(run / CHECKPOINT)
    return run / CHECKPOINT


def load_paths(path: Path, make_model, tokenizer, runs_root: Path) -> dict[str, Callable[[], Outcome]]:
    """Every way a user loads a checkpoint, as (label -> attempt)."""
    api = AppAPI(TrainingJob(runs_root=runs_root))
    listed = f"{path.parent.name}/{path.name}"
    return {
        "api Checkpoint.open": lambda: api_outcome(lambda: Checkpoint.open(path)),
        "api from_checkpoint": lambda: api_outcome(
            lambda: list(AZRTrainer.from_checkpoint(path, device="cpu").train(max_iterations=5))),
        "api load_checkpoint": lambda: api_outcome(
            lambda: AZRTrainer(make_model(), tokenizer, device="cpu").load_checkpoint(path)),
        "api train(resume_from)": lambda: api_outcome(lambda: list(AZRTrainer(make_model(), tokenizer, device="cpu")
                                                                   .train(max_iterations=5, resume_from=path))),
        "api sample_text": lambda: api_outcome(lambda: sample_text(Checkpoint.open(path, verify=False), "a")),
        "cli resume": lambda: cli_outcome(["resume", str(path), "--max-iterations", "5"]),
        "cli generate": lambda: cli_outcome(["generate", str(path), "--prompt", "a", "--max-new-tokens", "2"]),
        "app generate": lambda: app_outcome(lambda: as_endpoint(api.generate)(listed, "a")),
        "app resume_training": lambda: app_outcome(lambda: as_endpoint(api.resume_training)(listed, 5)),
    }


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_checkpoint_gets_one_sentence_everywhere(damage, original, make_model, tokenizer, tmp_path,
                                                          corpus_report):
    harm, named = DAMAGES[damage]
    path = damaged_copy(original, tmp_path, harm)
    before = tree_digest(path.parent)
    for label, attempt in load_paths(path, make_model, tokenizer, tmp_path).items():
        if label in BUILD_ONLY.get(damage, ()):
            continue
        outcome = attempt()
        if outcome.clean and not any(word.lower() in outcome.text.lower() for word in named.split("|")):
            outcome = Outcome(False, f"does not name {named!r}: {outcome.text}")
        corpus_report.append((f"{damage} / {label}", outcome))
        assert outcome.clean, f"{damage} / {label}: {outcome.text}"
        assert tree_digest(path.parent) == before, f"{damage} / {label} changed the run directory"
    assert not [p for p in path.parent.iterdir() if p.name.startswith("model_") and p.name != CHECKPOINT]


@pytest.fixture(scope="module")
def nan_weights(texts, tokenizer, model_config, tmp_path_factory):
    """A checkpoint whose weights are NaN with valid checksums: the one the trainer saves when step 1 diverges."""
    from azr import TrainingError, build_model

    root = tmp_path_factory.mktemp("nan-weights")
    model = build_model(model_config, seed=0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(TrainingError):
        list(AZRTrainer(model, tokenizer, device="cpu").train(texts, 3, root / "run", **FAST))
    Checkpoint.open(root / "run" / "model_error_0")  # its files verify
    return root / "run" / "model_error_0"


def test_sampling_a_checkpoint_with_nan_weights_gets_one_sentence(nan_weights, corpus_report):
    api = AppAPI(TrainingJob(runs_root=nan_weights.parent.parent))
    before = tree_digest(nan_weights.parent)
    attempts = {
        "api sample_text": lambda: api_outcome(lambda: sample_text(Checkpoint.open(nan_weights), "a")),
        "cli generate": lambda: cli_outcome(["generate", str(nan_weights), "--prompt", "a"]),
        "app generate": lambda: app_outcome(lambda: as_endpoint(api.generate)("run/model_error_0", "a")),
    }
    for label, attempt in attempts.items():
        outcome = attempt()
        corpus_report.append((f"NaN weights / {label}", outcome))
        assert outcome.clean and "NaN" in outcome.text, f"{label}: {outcome.text}"
    assert tree_digest(nan_weights.parent) == before


# ---------------------------------------------------------------------------- settings and paths

BAD_SETTINGS = {
    "lr": [float("nan"), float("inf"), -1.0, 0.0, "fast"],
    "grad_clip": [float("nan"), float("inf"), -1.0],
    "weight_decay": [float("inf"), float("nan"), -0.5],
    "min_lr_ratio": [1.5, float("nan")],
    "rl_weight": [float("nan"), 2.0],  # 0 is refused only with self-play on (off by default): test_selfplay
    "temperature": [0.0, float("inf")],
    "batch_size": [0, -3, 2.5, True],
    "max_iterations": [0, -10],
    "warmup": [-1],
    "save_every": [0],
    "keep_last": [0],
    "self_play_every": [-1],
    "lr_schedule": ["zigzag"],
    "top_k": [-5],
    "seq_len": [1],
}


def beyond(within: Range) -> list[object]:
    """Values outside a declared range: below it, above it, far above it, and of the wrong kind."""
    if within.integer:
        return [within.low - 1, within.high + 1, 10**30, 2.5, "ten"]
    return [within.low if within.above else within.low - 1, within.high * 2, 1e300, math.nan, math.inf, -math.inf,
            "x"]


def same(one: object, other: object) -> bool:
    return type(one) is type(other) and repr(one) == repr(other) or \
        isinstance(one, (int, float)) and isinstance(other, (int, float)) and one == other


def add_cases(table: dict[str, list[object]], more: dict[str, list[object]]) -> dict[str, list[object]]:
    """``table`` with the values of ``more`` it does not hold yet (no case twice)."""
    merged = {name: list(values) for name, values in table.items()}
    for name, values in more.items():
        for value in values:
            if not any(same(value, known) for known in merged.setdefault(name, [])):
                merged[name].append(value)
    return merged


def ranges(settings: type) -> dict[str, Range]:
    return {f.name: f.metadata["range"] for f in dataclasses.fields(settings) if "range" in f.metadata}


BAD_SETTINGS = add_cases(BAD_SETTINGS, {name: beyond(within) for name, within in ranges(TrainConfig).items()})


def setting_cases() -> list[tuple[str, object]]:
    return [(name, value) for name, values in BAD_SETTINGS.items() for value in values]


def cli_option(name: str, value: object) -> str | None:
    """``--name=value`` as typed on a command line (None for a value no command line can hold)."""
    return None if isinstance(value, bool) else f"--{name.replace('_', '-')}={str(value).lower()}"


def named(name: str, outcome: Outcome) -> Outcome:
    """The outcome, unclean unless its text names the setting (as ``name`` or ``--name``)."""
    if outcome.clean and name not in outcome.text and name.replace("_", "-") not in outcome.text:
        return Outcome(False, f"does not name {name}: {outcome.text}")
    return outcome


@pytest.mark.parametrize("name,value", setting_cases(), ids=lambda v: str(v))
def test_a_bad_setting_gets_one_sentence_everywhere(name, value, texts, make_model, tokenizer, tmp_path,
                                                    corpus_report):
    run_dir = tmp_path / "run"
    attempts = {
        "api TrainConfig": lambda: api_outcome(lambda: TrainConfig(**{name: value})),
        "api train": lambda: api_outcome(lambda: AZRTrainer(make_model(), tokenizer, device="cpu").train(
            texts, checkpoint_dir=run_dir, **{"max_iterations": 5, name: value})),
    }
    if cli_option(name, value):
        attempts["cli train"] = lambda: cli_outcome(["train", cli_option(name, value), "--runs-dir", str(tmp_path)])
    for label, attempt in attempts.items():
        outcome = named(name, attempt())
        corpus_report.append((f"{name}={value!r} / {label}", outcome))
        assert outcome.clean, f"{name}={value!r} / {label}: {outcome.text}"
    assert not run_dir.exists()


RESUME_SETTINGS = {name: [within.low - 1 if within.integer else math.nan, within.high + 1,
                          "ten" if within.integer else "x"]
                   for name, within in ranges(TrainConfig).items() if name != "seed"}
APP_RESUME = {"max_iterations": [10**30, 2.5], "batch_size": [10**30, 65_537], "lr": [math.inf, 11.0, math.nan]}


@pytest.mark.parametrize("name,value", [(n, v) for n, vs in add_cases(RESUME_SETTINGS, APP_RESUME).items()
                                        for v in vs], ids=lambda v: str(v))
def test_a_bad_setting_on_resume_gets_one_sentence_and_changes_nothing(name, value, original, tmp_path,
                                                                       corpus_report):
    path = damaged_copy(original, tmp_path, lambda d: None)
    before = tree_digest(path.parent)
    api = AppAPI(TrainingJob(runs_root=tmp_path))
    attempts = {"api from_checkpoint": lambda: api_outcome(lambda: AZRTrainer.from_checkpoint(path, device="cpu")
                                                           .train(**{"max_iterations": 5, name: value})),
                "cli resume": lambda: cli_outcome(["resume", str(path), cli_option(name, value)])}
    if any(same(value, known) for known in APP_RESUME.get(name, [])):  # the app's 0 keeps the checkpoint's
        attempts["app resume_training"] = lambda: app_outcome(lambda: as_endpoint(api.resume_training)(
            f"run/{CHECKPOINT}", **{"max_iterations": 5, name: value}))
    for label, attempt in attempts.items():
        outcome = named(name, attempt())
        corpus_report.append((f"resume {name}={value!r} / {label}", outcome))
        assert outcome.clean, f"{name}={value!r} / {label}: {outcome.text}"
        assert tree_digest(path.parent) == before
    orjson.dumps([api.status(), api.list_checkpoints()])  # what every client polls still answers


MODEL_SETTINGS = {**{name: beyond(within) for name, within in ranges(ModelConfig).items() if name != "dropout"},
                  "vocab_size": [10**9, *beyond(ranges(ModelConfig)["vocab_size"])],
                  "dropout": [-0.5, 1.0, math.nan, math.inf, "x"]}


@pytest.mark.parametrize("name,value", [(n, v) for n, vs in MODEL_SETTINGS.items() for v in vs], ids=lambda v: str(v))
def test_a_bad_model_size_gets_one_sentence_everywhere(name, value, tmp_path, corpus_report):
    api = AppAPI(TrainingJob(runs_root=tmp_path))
    attempts = {"api ModelConfig": lambda: api_outcome(lambda: ModelConfig(**{name: value}))}
    if name in SIZE_OPTIONS:  # the others are ModelConfig fields (or a preset's), not options
        attempts["cli train"] = lambda: cli_outcome(["train", cli_option(name, value), "--runs-dir", str(tmp_path)])
        attempts["app train"] = lambda: app_outcome(lambda: as_endpoint(api.train)("", max_iterations=5,
                                                                                   **{name: value}))
    for label, attempt in attempts.items():
        outcome = named(name, attempt())
        corpus_report.append((f"{name}={value!r} / {label}", outcome))
        assert outcome.clean, f"{name}={value!r} / {label}: {outcome.text}"
    assert list(tmp_path.iterdir()) == []
    orjson.dumps(api.status())


SAMPLING = {"temperature": [0, -1, 101, math.nan, math.inf, "hot"],
            **{name: beyond(within)[:2] + [2.5, "ten"] for name, within in SAMPLING_RANGES.items()
               if name != "temperature"},
            "seed": [-1, 2**63, 10**30, 2.5, "ten"]}


@pytest.mark.parametrize("name,value", [(n, v) for n, vs in SAMPLING.items() for v in vs], ids=lambda v: str(v))
def test_a_bad_sampling_setting_gets_one_sentence_everywhere(name, value, original, corpus_report):
    path = original / CHECKPOINT
    before = tree_digest(original)
    api = AppAPI(TrainingJob(runs_root=original.parent))
    attempts = {
        "api sample_text": lambda: api_outcome(lambda: sample_text(Checkpoint.open(path, verify=False), "a",
                                                                   **{name: value})),
        "cli generate": lambda: cli_outcome(["generate", str(path), "--prompt", "a", cli_option(name, value)]),
        "app generate": lambda: app_outcome(lambda: as_endpoint(api.generate)(f"run/{CHECKPOINT}", "a",
                                                                              **{name: value})),
    }
    for label, attempt in attempts.items():
        outcome = named(name, attempt())
        corpus_report.append((f"generate {name}={value!r} / {label}", outcome))
        assert outcome.clean, f"{name}={value!r} / {label}: {outcome.text}"
    assert tree_digest(original) == before


APP_FIELDS = {"lr": [float("inf"), "x", -1.0], "batch_size": [0, 2.5, "many"], "max_iterations": [0, None, -4],
              "rl_weight": [3.0], "warmup": [-2], "seed": [-1], "save_every": [0], "self_play_every": [-1],
              "d_model": [33], "num_heads": [0], "vocab_size": [-1], "preset": ["huge"], "lr_schedule": ["zigzag"],
              "time_budget_min": [-5, math.nan, math.inf], "run_name": ["../escape", "a/b"]}
APP_WHOLE = ("d_model", "num_layers", "num_heads", "d_ff", "max_seq_len", "vocab_size", "max_iterations",
             "batch_size", "warmup", "save_every", "self_play_every", "seed", "grad_accum_steps")
APP_FIELDS = add_cases(APP_FIELDS, {  # beyond each range, and numbers beyond 64 bits (a form sends floats)
    **{name: [{**ranges(ModelConfig), **ranges(TrainConfig)}[name].high + 1, 1e30] for name in APP_WHOLE},
    "vocab_size": [10**9], "max_iterations": [10**30], "seed": [10**30],
    "lr": [math.nan, 1e30, -math.inf], "rl_weight": [math.nan, 1e30, -math.inf]})


@pytest.mark.parametrize("field,value", [(f, v) for f, vs in APP_FIELDS.items() for v in vs], ids=lambda v: str(v))
def test_a_bad_app_form_gets_one_sentence(field, value, tmp_path, corpus_report):
    api = AppAPI(TrainingJob(runs_root=tmp_path))
    outcome = app_outcome(lambda: as_endpoint(api.train)("", **{"max_iterations": 5, field: value}))
    corpus_report.append((f"app train {field}={value!r}", outcome))
    assert outcome.clean, outcome.text
    orjson.dumps([api.status(), api.list_checkpoints()])  # what every client polls still answers
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("run")] or field == "run_name"


APP_ONLY = {  # case -> (endpoint, arguments)
    "status history_since='x'": ("status", {"history_since": "x"}),
    "status history_since=2.5": ("status", {"history_since": 2.5}),
    "status history_since=nan": ("status", {"history_since": math.nan}),
    "generate max_new_tokens=4097 (over the app's cap)": ("generate", {"prompt": "a", "max_new_tokens": 4097}),
    "generate seed=1e30": ("generate", {"prompt": "a", "seed": 1e30}),
}


@pytest.mark.parametrize("case", list(APP_ONLY))
def test_a_bad_app_request_gets_one_sentence(case, original, corpus_report):
    before = tree_digest(original)
    api = AppAPI(TrainingJob(runs_root=original.parent))
    endpoint, arguments = APP_ONLY[case]
    listed = {"checkpoint": f"run/{CHECKPOINT}"} if endpoint == "generate" else {}
    outcome = app_outcome(lambda: as_endpoint(getattr(api, endpoint))(**listed, **arguments))
    corpus_report.append((f"app {case}", outcome))
    assert outcome.clean, outcome.text
    assert tree_digest(original) == before


PATH_CASES = {
    "cli resume of a missing path": ["resume", "/nonexistent/model_iter_3"],
    "cli resume of a file": ["resume", "/etc/hostname"],
    "cli resume of a directory that is not a checkpoint": ["resume", "/tmp"],
    "cli generate of a missing path": ["generate", "/nonexistent/ck", "--prompt", "a"],
    "cli inspect of a missing path": ["inspect", "/nonexistent/ck"],
    "cli train into a file": ["train", "--runs-dir", "/etc/hostname", "--max-iterations", "2"],
    "cli train into /proc": ["train", "--runs-dir", "/proc/azr", "--max-iterations", "2"],
    "cli train with a missing text file": ["train", "--texts", "/nonexistent.txt", "--max-iterations", "2"],
    "cli train with an unknown preset": ["train", "--preset", "huge", "--max-iterations", "2"],
    "cli train with a bad run name": ["train", "--run", "../x", "--max-iterations", "2"],
    "cli unknown command": ["fly"],
    "cli unknown option": ["train", "--learning-rate", "3"],
    "cli generate with zero tokens": ["generate", "x", "--prompt", "a", "--max-new-tokens", "0"],
    "cli list of a file": ["list", "/etc/hostname"],
    "cli resume of a bare Hub-like name": ["resume", "alice/run"],
    "cli generate of a missing run's checkpoint": ["generate", "checkpoints/nope", "--prompt", "a"],
    **{f"cli {' '.join(arguments)}": arguments for arguments in (
        ["train", "--lora-r=0"], ["train", "--lora-r=-2"], ["train", "--lora-r=2.5"], ["train", "--lora-alpha=0"],
        ["train", "--lora-alpha=nan"], ["train", "--lora-alpha=inf"], ["train", "--lora-r=1000000000"], ["train", "--lora-alpha=1e308"],
        ["train", "--dataset-max-mb=0"],
        ["train", "--dataset-max-mb=-1"], ["train", "--dataset-max-mb=nan"], ["selftest", "--iterations=0"],
        ["selftest", "--iterations=2.5"])},
}


@pytest.mark.parametrize("case", list(PATH_CASES))
def test_a_bad_path_or_command_gets_one_sentence(case, corpus_report):
    outcome = cli_outcome(PATH_CASES[case])
    corpus_report.append((case, outcome))
    assert outcome.clean, outcome.text


def test_a_full_disk_is_refused_before_training(texts, make_model, tokenizer, tmp_path, corpus_report):
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        outcome = api_outcome(lambda: AZRTrainer(make_model(), tokenizer, device="cpu").train(
            texts, 5, mount / "run", **FAST))
        corpus_report.append(("api train on a full disk", outcome))
        assert "free" in outcome.text, outcome.text
        assert not list((mount / "run").glob("model_*"))
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# ---------------------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def corpus_report():
    """Collects every case of the module; at the end writes the summary and fails listing every unclean case."""
    cases: list[tuple[str, Outcome]] = []
    yield cases
    clean = [c for c in cases if c[1].clean]
    lines = [f"{len(clean)}/{len(cases)} clean"] + [f"{'ok ' if o.clean else 'BAD'} {n}: {o.text}" for n, o in cases]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "bad_inputs.txt").write_text("\n".join(lines) + "\n")


def test_the_corpus_has_1000_reports_and_all_are_clean(corpus_report):
    """Runs last in this module (pytest keeps a file's order): every attempt of the cases above (at least 380 cases,
    each tried through every front-end that takes it) reported here."""
    unclean = [f"{name}: {outcome.text}" for name, outcome in corpus_report if not outcome.clean]
    assert len(corpus_report) >= 1000, len(corpus_report)
    assert not unclean, "\n".join(unclean)
