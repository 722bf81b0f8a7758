"""The ``azr`` command: train, resume, list, inspect, generate, demo and selftest.

It only drives the library and renders what it reports. User errors (any :class:`AZRError`, a bad argument) become
one line on stderr and exit status 2; Ctrl+C and SIGTERM leave a resumable checkpoint and exit with 130 and 143.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import shlex
import signal
import sys
import tempfile
import typing
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

import torch
from tqdm import tqdm
from transformers.utils import logging as transformers_logging

from . import __version__, hub, runs
from .checkpoint import OPTIMIZER_FILE, CheckpointInfo, checkpoint_info, list_checkpoints, read_model_config, \
    read_state, verify_checkpoint
from .config import FIXED_ON_RESUME, LR_SCHEDULES, TrainConfig, preset
from .data import default_corpus, load_texts
from .demo import run_demo
from .errors import AZRError, CheckpointError, ConfigError, HubError
from .model import ARCHITECTURE_FIELDS, build_model, load_pretrained, max_length_of, model_config_of
from .selfplay import generate
from .selftest import run_selftest
from .signals import EXIT_CODES, graceful_stop
from .space import deploy_space
from .status import TrainingStatus
from .tokenizer import train_tokenizer
from .trainer import AZRTrainer, resolve_device

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_RUNS_DIR = "checkpoints"
DEFAULT_PRESET = "tiny"
DEVICES = ("auto", "cpu", "cuda", "mps")
SHAPE_OPTIONS = ("vocab_size", "d_model", "num_layers", "num_heads", "d_ff", "max_seq_len")
SETTING_CHOICES = {"lr_schedule": LR_SCHEDULES}
SETTING_METAVARS = {int: "N", float: "F", str: "TEXT"}
INSPECT_FIELDS = ("kind", "iteration", "max_iterations", "loss", "val_loss", "reward", "timestamp", "lr",
                  "train_config", "data_position", "corpus", "device_type", "versions", "format_version")


# ---------------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``azr: error: <what>``, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"azr: error: {message.removeprefix('argument ')} (see `{self.prog} --help`)\n")


def _number(convert: Callable[[str], Any], accept: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """Return an argparse ``type`` that converts a value and rejects it unless ``accept`` holds."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    return parse


POSITIVE_INT = _number(int, lambda v: v > 0, "a positive integer")
COUNT = _number(int, lambda v: v >= 0, "zero or a positive integer")
POSITIVE_FLOAT = _number(float, lambda v: 0 < v < math.inf, "a positive number")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``azr`` command; each subcommand's handler is in ``args.handler``."""
    parser = _Parser(prog="azr", description="Train small causal LMs with the AZR method; pause and resume exactly.")
    parser.add_argument("--version", action="version", version=f"azr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a new model", description=(
        "Train a new model. Ctrl+C or SIGTERM saves model_interrupted_<N> after the current batch and prints the "
        "command that resumes it; a second Ctrl+C exits at once (every checkpoint on disk stays complete)."))
    train.add_argument("--preset", help=f"model size: tiny, small or base (default: {DEFAULT_PRESET})")
    for option, what in (("--d-model", "hidden size"), ("--num-layers", "transformer layers"),
                         ("--num-heads", "attention heads"), ("--d-ff", "feed-forward size"),
                         ("--max-seq-len", "longest sequence"), ("--vocab-size", "tokenizer vocabulary")):
        train.add_argument(option, type=POSITIVE_INT, metavar="N", help=f"{what} (default: the preset's)")
    train.add_argument("--base-model", metavar="DIR_OR_HUB_ID",
                       help="start from an existing causal LM and its tokenizer instead of a new model")
    train.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, metavar="DIR",
                       help=f"where runs go: each training gets a new run directory in it (default: "
                            f"{DEFAULT_RUNS_DIR})")
    train.add_argument("--run", type=_checked(runs.check_run_name), metavar="NAME",
                       help="name of the new run directory (default: run-<date>-<time>)")
    _add_run_options(train, resume=False)
    train.set_defaults(handler=cmd_train)

    resume = commands.add_parser("resume", help="continue a run from a checkpoint", description=(
        "Continue a run from a checkpoint, in its own run directory, to the same or a new --max-iterations target. "
        "Settings not given are the checkpoint's; without --texts the run's own corpus is used."))
    resume.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint directory or hf://user/run[@rev][/name]")
    resume.add_argument("--runs-dir", metavar="DIR", help=(
        f"continue in DIR/<run> instead of the checkpoint's own run directory (default: its parent for a local "
        f"checkpoint, {DEFAULT_RUNS_DIR} for hf://)"))
    resume.add_argument("--run", type=_checked(runs.check_run_name), metavar="NAME", help=(
        "run directory to continue in, under --runs-dir (default: the checkpoint's run, or the Hub repo's name)"))
    _add_run_options(resume, resume=True)
    resume.add_argument("--no-load-optimizer", action="store_true",
                        help="start a fresh optimizer instead of the saved one (training then differs slightly)")
    resume.set_defaults(handler=cmd_resume)

    listing = commands.add_parser("list", help="list the checkpoints in a directory or Hub repo",
                                  description="List checkpoints, newest first, each checked against its checksums.")
    listing.add_argument("dir", nargs="?", default=DEFAULT_RUNS_DIR, metavar="DIR",
                         help=f"runs directory, run directory or hf://user/run (default: {DEFAULT_RUNS_DIR})")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(handler=cmd_list)

    inspect = commands.add_parser("inspect", help="show what a checkpoint holds",
                                  description="Show a checkpoint's state, settings and checksum status.")
    inspect.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint directory or hf://user/run[/name]")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(handler=cmd_inspect)

    sample = commands.add_parser("generate", help="sample text from a checkpoint",
                                 description="Sample a continuation of a prompt with a checkpoint's model and tokenizer.")
    sample.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint directory or hf://user/run[/name]")
    sample.add_argument("--prompt", required=True, help="text to continue")
    sample.add_argument("--max-new-tokens", type=POSITIVE_INT, default=100, metavar="N", help="(default: 100)")
    sample.add_argument("--temperature", type=POSITIVE_FLOAT, default=1.0, metavar="F", help="(default: 1.0)")
    sample.add_argument("--top-k", type=COUNT, default=50, metavar="N", help="0 for no limit (default: 50)")
    sample.add_argument("--seed", type=COUNT, help="makes the sample reproducible")
    sample.add_argument("--device", choices=DEVICES, default="auto", help="(default: auto)")
    sample.set_defaults(handler=cmd_generate)

    demo = commands.add_parser("demo", help="the pause/resume demonstration (about a minute)", description=(
        "Train 100 iterations, resume to 250, stop from another thread after 3 seconds, resume with a new target; "
        "a tiny model on the embedded corpus."))
    demo.add_argument("--dir", help="an empty or new directory for its checkpoints (default: a new temporary one)")
    demo.set_defaults(handler=cmd_demo)

    selftest = commands.add_parser("selftest", help="prove that stop and resume are exact on this machine",
                                   description=(
        "Train a tiny model uninterrupted, then again with a stop at a random iteration and a resume in a fresh "
        "process; compare every loss and the final weights. Exit status 0 only when they are bit-identical."))
    selftest.add_argument("--iterations", type=POSITIVE_INT, default=30, metavar="N", help="(default: 30)")
    selftest.add_argument("--device", choices=DEVICES, default="auto", help="(default: auto)")
    selftest.set_defaults(handler=cmd_selftest)

    pull = commands.add_parser("pull", help="download a checkpoint from the Hub", description=(
        "Download a Hub checkpoint (the newest one without a name) and the run's corpus into a checkpoint directory, "
        "verified against its checksums."))
    pull.add_argument("reference", metavar="REFERENCE", help="hf://user/run[@revision][/checkpoint-name]")
    pull.add_argument("--to", metavar="DIR", help=f"run directory (default: {DEFAULT_RUNS_DIR}/<the repo's name>)")
    pull.set_defaults(handler=cmd_pull)

    push = commands.add_parser("push", help="upload a checkpoint to a Hub repo", description=(
        "Upload one checkpoint to checkpoints/<name>/ of a Hub model repo (created private if missing); the newest "
        "checkpoint also becomes the repo's root model with a model card."))
    push.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint directory")
    push.add_argument("repo_id", metavar="REPO", help="user/run")
    push.add_argument("--public", action="store_true", help="create the repo public (default: private)")
    push.set_defaults(handler=cmd_push)

    space = commands.add_parser("space", help="deploy the app as a Hugging Face Space",
                                description="Work with the Hugging Face Space that runs the app.")
    space_commands = space.add_subparsers(dest="space_command", required=True, metavar="COMMAND")
    deploy = space_commands.add_parser("deploy", help="create or update a Space with app.py, azr/ and the card",
                                       description=(
        "Upload app.py, the azr package, requirements.txt and space_config/README.md (as the Space card) to a Gradio "
        "Space in one commit, creating it if missing."))
    deploy.add_argument("space_id", metavar="SPACE", help="user/space-name")
    deploy.add_argument("--private", action="store_true", help="create the Space private (default: public)")
    deploy.add_argument("--set-token-secret", action="store_true",
                        help="store your token (HF_TOKEN or the saved login) as the Space's HF_TOKEN secret, so "
                             "the app can push checkpoints")
    deploy.set_defaults(handler=cmd_space_deploy)
    return parser


def _add_run_options(parser: argparse.ArgumentParser, resume: bool) -> None:
    """Add the options train and resume share, and one per training setting (see :func:`_add_settings`)."""
    parser.add_argument("--texts", nargs="+", metavar="PATH",
                        help="training files: .txt, .md, .jsonl or .csv (default: "
                             + ("the run's own corpus)" if resume else "the embedded corpus)"))
    parser.add_argument("--device", choices=DEVICES, default="auto", help="(default: auto: CUDA, then MPS, then CPU)")
    parser.add_argument("--push-to-hub", metavar="REPO",
                        help="push every checkpoint to this Hub repo (user/run) in the background; the token comes "
                             "from HF_TOKEN or `huggingface-cli login`")
    parser.add_argument("--hub-public", action="store_true", help="create the Hub repo public (default: private)")
    parser.add_argument("--no-push-corpus", action="store_true",
                        help="do not upload the training corpus (another machine then needs --texts to resume)")
    _add_settings(parser, resume)


def _add_settings(parser: argparse.ArgumentParser, resume: bool) -> None:
    """Add ``--field-name`` for every TrainConfig field (on resume: those a resume may change), typed by the field's
    annotation and checked by TrainConfig itself; an option not given is not passed on (see :func:`_settings`)."""
    group = parser.add_argument_group("training settings", "Each is a field of TrainConfig." + (
        " Those not given keep the checkpoint's values." if resume else ""))
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        if resume and field.name in FIXED_ON_RESUME:
            continue
        kind = next(t for t in typing.get_args(hints[field.name]) or (hints[field.name],) if t is not type(None))
        text = field.metadata["help"]
        own = re.search(r" \(default: (.*)\)$", text)  # a help text may describe its own default
        default = "the checkpoint's" if resume else own.group(1) if own else field.default
        choices = SETTING_CHOICES.get(field.name)
        group.add_argument(f"--{field.name.replace('_', '-')}", type=_setting_type(field.name, kind),
                           choices=choices, metavar=None if choices else SETTING_METAVARS[kind],
                           help=f"{text[:own.start()] if own else text} (default: {default})".replace("%", "%%"))


def _setting_type(name: str, kind: type) -> Callable[[str], Any]:
    """Return an argparse ``type`` that converts a value to ``kind`` and lets TrainConfig check it."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, "
                                             f"got {text}") from None
        TrainConfig(**{name: value})
        return value
    return _checked(parse, name)


def _checked(parse: Callable[[str], Any], name: str = "") -> Callable[[str], Any]:
    """Return an argparse ``type`` that turns the ConfigError of ``parse`` into a usage error (field name cut)."""
    def checked(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{name} ").rstrip(".")) from None
    return checked


# ---------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Run the ``azr`` command and return its exit status."""
    transformers_logging.disable_progress_bar()
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except AZRError as exc:
        print(f"azr: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _let_signals_end_the_process()
        print("azr: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


def checkpoint_path(reference: str) -> Path:
    """Return the local checkpoint directory a CHECKPOINT argument names: ``hf://…`` is downloaded first (HubError
    when it cannot be), anything else is a local path (CheckpointError when it does not exist)."""
    if hub.is_hub_reference(reference):
        return hub.resolve_checkpoint(reference)
    path = Path(reference).expanduser()
    if not path.exists():
        raise CheckpointError(f"Checkpoint {reference!r} does not exist{_hub_hint(reference)}.")
    return path


def _hub_hint(text: str) -> str:
    """Return advice to write ``hf://`` when a missing local path looks like ``user/run[/name]`` (not like
    ``folder/model_iter_N``) and its first folder does not exist here either; otherwise an empty string."""
    match = hub.REFERENCE.match(text)
    if match and not runs.CHECKPOINT_NAME.match(match["repo"].split("/")[1]) and not Path(text.split("/")[0]).exists():
        return f"; for a Hub repo write {hub.SCHEME}{text}"
    return ""


def _device(name: str) -> str:
    """Return ``name`` after checking that the device exists; raises ConfigError otherwise."""
    missing = (name == "cuda" and not torch.cuda.is_available()) or \
        (name == "mps" and not torch.backends.mps.is_available())
    if missing:
        raise ConfigError(f"--device {name} is not available on this machine; use --device auto or cpu.")
    return name


# ---------------------------------------------------------------------------- train / resume


def cmd_train(args: argparse.Namespace) -> int:
    """``azr train``: a new model (or a base model) trained from iteration 0 in a new run directory."""
    device = _device(args.device)
    settings = _settings(args)
    texts = load_texts(args.texts) if args.texts else None
    model, tokenizer = _new_model(args, texts, settings.get("seed", TrainConfig.seed))
    trainer = AZRTrainer(model, tokenizer, device=device)
    directory, created = _new_run_directory(Path(args.runs_dir).expanduser(), args.run)
    try:
        _say(f"Run directory: {directory}")
        return _drive(trainer, directory,
                      lambda: trainer.train(texts, checkpoint_dir=directory, **settings, **_hub(args)))
    finally:
        for path in created:  # nothing saved (an error, a second Ctrl+C): leave no empty directories behind
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def _new_run_directory(root: Path, name: str | None) -> tuple[Path, list[Path]]:
    """Return the directory of a new run under ``root`` and the directories this call created, deepest first.

    A generated name is claimed by creating its directory, so that trainings started together never share one.
    Raises ConfigError for a directory that cannot be created.
    """
    if name is not None:
        return root / name, []
    while True:
        directory = root / runs.new_run_name(root)
        missing = [path for path in (directory, *directory.parents) if not path.exists()]
        try:
            directory.mkdir(parents=True)
            return directory, missing
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(f"Cannot create the run directory {str(directory)!r}: {exc.strerror or exc}.") from exc


def _new_model(args: argparse.Namespace, texts: list[str] | None, seed: int):
    """Return ``(model, tokenizer)``: the base model, or a new model of the preset with the size options applied."""
    shape = {name: getattr(args, name) for name in SHAPE_OPTIONS if getattr(args, name) is not None}
    if args.base_model is None:
        config = preset(args.preset or DEFAULT_PRESET, **shape)
        tokenizer = train_tokenizer(texts or default_corpus(), config.vocab_size)
        return build_model(dataclasses.replace(config, vocab_size=len(tokenizer)), seed=seed), tokenizer
    if args.preset is not None:
        raise ConfigError("--preset and --base-model exclude each other: a base model brings its own size.")
    model, tokenizer = load_pretrained(args.base_model)
    actual = model_config_of(model)
    differences = [f"--{name.replace('_', '-')} {value} but it has {getattr(actual, name, 'another shape')}"
                   for name, value in shape.items() if getattr(actual, name, None) != value]
    if differences:
        raise ConfigError(
            f"Architecture mismatch: base model {args.base_model!r} cannot change size ({'; '.join(differences)}); "
            "drop the size options to continue training it, or train a new model without --base-model."
        )
    return model, tokenizer


def cmd_resume(args: argparse.Namespace) -> int:
    """``azr resume``: continue a run from its checkpoint, with the model and tokenizer built from it."""
    path = checkpoint_path(args.checkpoint)
    directory = _resume_directory(args, path)
    texts = load_texts(args.texts) if args.texts else None
    trainer = AZRTrainer.from_checkpoint(path, device=_device(args.device))
    _say(f"Run directory: {directory}")
    return _drive(trainer, directory, lambda: trainer.train(
        texts, checkpoint_dir=directory, resume_from=path, load_optimizer=not args.no_load_optimizer,
        **_settings(args), **_hub(args)))


def _resume_directory(args: argparse.Namespace, path: Path) -> Path:
    """Return the run directory a resume continues in: a local checkpoint's own (its parent) unless --runs-dir or
    --run is given, else ``<runs-dir>/<run>`` with the checkpoint's run or the Hub repo's name as the default run."""
    if hub.is_hub_reference(args.checkpoint):
        own_run = _repo_run(args.checkpoint)
    elif args.runs_dir is None and args.run is None:
        return path.parent
    else:
        own_run = runs.check_run_name(path.resolve().parent.name)
    return Path(args.runs_dir or DEFAULT_RUNS_DIR).expanduser() / (args.run or own_run)


def _repo_run(reference: str) -> str:
    """Return the run name a Hub reference gives by default: the repo's name (``run`` of ``hf://user/run``)."""
    return runs.check_run_name(hub.parse_reference(reference).repo_id.split("/")[1])


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Return the TrainConfig fields given on the command line (the others are the defaults, or the checkpoint's)."""
    return {field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)
            if getattr(args, field.name, None) is not None}


def _hub(args: argparse.Namespace) -> dict[str, Any]:
    """Return the trainer's Hub push options given on the command line."""
    if not args.push_to_hub:
        return {}
    return {"hub_repo_id": args.push_to_hub, "hub_private": not args.hub_public,
            "hub_push_corpus": not args.no_push_corpus}


def _drive(trainer: AZRTrainer, directory: Path, start: Callable[[], Iterator[TrainingStatus]]) -> int:
    """Run ``start()``'s statuses to the end under graceful_stop, render them, and return the exit status."""
    progress = Progress()
    guard = graceful_stop(trainer)
    try:
        with guard:
            try:
                for status in start():
                    progress(status)
            finally:
                progress.close()
    except KeyboardInterrupt:
        _say("Stopped at once by a second signal; every checkpoint on disk is complete.")
        newest = list_checkpoints(directory, verify=False) if directory.is_dir() else []  # the run's own only
        if newest and progress.last:
            _say_resume(newest[0].path, progress.last.max_iterations)
        return guard.exit_code or EXIT_INTERRUPTED
    finally:
        if guard.received is not None:
            _let_signals_end_the_process()
    final = progress.last
    _say(final.message)
    _say(f"Checkpoint: {final.checkpoint}")
    if final.state in ("interrupted", "paused"):
        _say_resume(final.checkpoint, final.max_iterations)
    return (guard.exit_code or EXIT_INTERRUPTED) if final.state == "interrupted" else 0


def _let_signals_end_the_process() -> None:
    """Once a signal has stopped the run, make a further SIGINT or SIGTERM end the process at once (the default
    action: nothing is left to save, and Python's shutdown must not be interrupted half-way)."""
    for signum in EXIT_CODES:
        signal.signal(signum, signal.SIG_DFL)


def _say_resume(checkpoint: str, max_iterations: int) -> None:
    _say(f"Resume with: azr resume {shlex.quote(checkpoint)} --max-iterations {max_iterations}")


class Progress:
    """Renders a run's statuses: a tqdm bar on a terminal (plain lines elsewhere), a line per checkpoint saved,
    each warning once. Call it with every status; it can follow several runs one after another."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.bar: tqdm | None = None
        self.warned: set[str] = set()
        self.pushes: dict[str, str] = {}
        self.last: TrainingStatus | None = None

    def __call__(self, status: TrainingStatus) -> None:
        self.last = status
        for warning in status.warnings:
            if warning not in self.warned:
                self.warned.add(warning)
                _say(f"warning: {warning}", self.stream)
        for name, push in status.pushes.items():
            if push != self.pushes.get(name) and push.startswith(("pushed", "failed")):
                _say(f"Push of {name}: {push}")
        self.pushes = dict(status.pushes)
        if status.state == "checkpoint":
            _say(f"Saved {status.checkpoint} (iteration {status.iteration}, loss {_number_text(status.loss)})")
        elif status.state == "running" and status.message:
            _say(status.message)
        elif status.state == "running" and not self.interactive:
            eta = tqdm.format_interval(status.eta_s) if status.eta_s is not None else "?"
            _say(f"iteration {status.iteration}/{status.max_iterations}  {_metrics(status)}  ETA {eta}", self.stream)
        if self.bar is None:
            self.bar = tqdm(total=status.max_iterations, initial=status.iteration, unit="it", file=self.stream,
                            dynamic_ncols=True, disable=not self.interactive)
        self.bar.set_postfix_str(_metrics(status), refresh=False)
        self.bar.update(status.iteration - self.bar.n)
        if not status.is_training:
            self.close()

    def close(self) -> None:
        """Close the current bar; the next status starts a new one."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _metrics(status: TrainingStatus) -> str:
    parts = [("loss", status.loss, "{:.4f}"), ("reward", status.reward, "{:.3f}"), ("lr", status.lr, "{:.2e}")]
    text = "  ".join(f"{name} {form.format(value)}" for name, value, form in parts if value is not None)
    if status.tokens_per_s:
        text += f"  {status.tokens_per_s:,.0f} tok/s"
    return text


def _say(line: str, stream: TextIO | None = None) -> None:
    """Print a line above any progress bar and flush it (logs of hosted runners see it at once)."""
    stream = stream or sys.stdout
    tqdm.write(line, file=stream)
    stream.flush()


# ---------------------------------------------------------------------------- list / inspect


def cmd_list(args: argparse.Namespace) -> int:
    """``azr list``: the checkpoints of a run directory, of every run in a runs directory, or of a Hub repo, as a
    table or JSON."""
    where, path, run_names = args.dir, Path(args.dir).expanduser(), None
    if hub.is_hub_reference(where):
        infos = hub.list_checkpoints(where)
    elif not path.exists():
        print(f"No checkpoints yet in {where}; train a run with `azr train`{_hub_hint(where)}.")
        return 0
    elif runs.is_run_directory(path):
        infos = list_checkpoints(path)
    else:  # a runs directory: every run's checkpoints, the newest run first
        pairs = [(run.name, info) for run in runs.list_runs(path) for info in list_checkpoints(run)]
        run_names, infos = [name for name, _ in pairs], [info for _, info in pairs]
    if args.json:
        entries = [info.as_dict() for info in infos]
        print(json.dumps(entries if run_names is None else
                         [{"run": run, **entry} for run, entry in zip(run_names, entries)], indent=2))
    elif infos:
        print(format_checkpoints(infos, run_names))
    else:
        print(f"No checkpoints in {where}.")
    return 0


def format_checkpoints(infos: list[CheckpointInfo], run_names: list[str] | None = None) -> str:
    """Return the checkpoints as an aligned text table; with ``run_names`` (one per checkpoint), a RUN column first."""
    header = ("NAME", "KIND", "ITER", "LOSS", "VAL LOSS", "SAVED", "SIZE", "OPTIMIZER", "STATUS")
    rows = [header] + [
        (i.name, i.kind, _number_text(i.iteration), _number_text(i.loss), _number_text(i.val_loss),
         _local_time(i.timestamp), _size_text(i.size_bytes), "yes" if i.has_optimizer else "no",
         "valid" if i.valid else f"invalid: {i.reason}")
        for i in infos
    ]
    if run_names is not None:
        rows = [(run, *row) for run, row in zip(["RUN", *run_names], rows)]
        header = rows[0]
    widths = [max(len(row[c]) for row in rows) for c in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)


def cmd_inspect(args: argparse.Namespace) -> int:
    """``azr inspect``: what one checkpoint holds."""
    report = inspect_checkpoint(checkpoint_path(args.checkpoint))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    config = report["train_config"] or {}
    position = report["data_position"] or {}
    corpus = report["corpus"] or {}
    checksums = "ok" if report["valid"] else f"INVALID: {report['reason']}"
    lines = [
        ("Checkpoint", report["path"]),
        ("Kind", report["kind"]),
        ("Iteration", f"{report['iteration']} of {report['max_iterations']}"),
        ("Has optimizer", "yes" if report["has_optimizer"] else "no"),
        ("History length", report["history_length"]),
        ("Loss / val loss / reward", " / ".join(_number_text(report[k]) for k in ("loss", "val_loss", "reward"))),
        ("Saved", _local_time(report["timestamp"])),
        ("LR at this point", f"{_number_text(report['lr'])} ({config.get('lr_schedule', '?')} schedule)"),
        ("Data position", f"epoch {position.get('epoch')}, sample {position.get('offset')} "
                          f"of {position.get('num_samples')}"),
        ("Corpus", f"{corpus.get('source')}, {corpus.get('num_texts')} text(s)"
                   + (f", stored as {corpus['file']}" if corpus.get("file") else "")),
        ("Model", _pairs(report["model_config"])),
        ("Training", _pairs(config)),
        ("Files", f"{report['files']} files, checksums {checksums}"),
        ("Versions", _pairs(report["versions"])),
    ]
    width = max(len(label) for label, _ in lines)
    print("\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in lines))
    return 0


def inspect_checkpoint(path: Path) -> dict[str, Any]:
    """Return what a checkpoint holds, read from its state, plus whether its files match their checksums.

    Raises CheckpointError when the checkpoint or its trainer_state.json is missing or unreadable.
    """
    state = read_state(path)
    info = checkpoint_info(path)
    files = state.get("files") or {}
    return {
        "name": path.name, "path": str(path),
        **{field: state.get(field) for field in INSPECT_FIELDS},
        "has_optimizer": OPTIMIZER_FILE in files,
        "history_length": len(state.get("history") or []),
        "model_config": state.get("model_config") or _architecture(path),
        "files": len(files), "size_bytes": info.size_bytes, "valid": info.valid, "reason": info.reason,
    }


def _architecture(path: Path) -> dict[str, Any] | None:
    """Return the shape fields of a checkpoint's config.json (for models not built by azr), or None."""
    try:
        saved = read_model_config(path)
    except (OSError, ValueError):
        return None
    return {label: saved[key] for key, label in ARCHITECTURE_FIELDS.items() if key in saved}


def _pairs(values: dict[str, Any] | None) -> str:
    return " ".join(f"{key}={value}" for key, value in (values or {}).items()) or "-"


def _number_text(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3e}" if abs(value) < 1e-3 and value else f"{value:.4f}"


def _size_text(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    exponent = min(int(math.log10(size)) // 3, 3)
    return f"{size / 1000 ** exponent:.1f} {('kB', 'MB', 'GB')[exponent - 1]}"


def _local_time(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromisoformat(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------------------- generate / demo / selftest


def cmd_generate(args: argparse.Namespace) -> int:
    """``azr generate``: print the prompt and a sampled continuation."""
    path = checkpoint_path(args.checkpoint)
    verify_checkpoint(path)
    model, tokenizer = load_pretrained(str(path), device=resolve_device(_device(args.device)))
    prompt = tokenizer(args.prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(model.device)
    room = max_length_of(model) - prompt.shape[1]
    if not prompt.shape[1] or room < 1:
        raise ConfigError(f"The prompt must be 1 to {max_length_of(model) - 1} tokens long for this model, "
                          f"got {prompt.shape[1]}.")
    if args.seed is not None:
        torch.manual_seed(args.seed)
    rollout = generate(model, prompt, min(args.max_new_tokens, room), args.temperature, args.top_k,
                       tokenizer.eos_token_id, tokenizer.pad_token_id)
    print(args.prompt + tokenizer.decode(rollout.continuations()[0], skip_special_tokens=True))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``azr demo``: the seed guide's pause/resume demonstration, narrated, ending with the checkpoint list."""
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="azr-demo-"))
    if runs.is_run_directory(directory):
        raise ConfigError(f"{str(directory)!r} already holds a run; give the demo an empty or new --dir.")
    infos = run_demo(directory, say=_say, on_status=Progress())
    _say(f"\nCheckpoints in {directory}:\n{format_checkpoints(infos)}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    """``azr pull``: a Hub checkpoint into a local run directory."""
    if not hub.is_hub_reference(args.reference):
        raise HubError(f"{args.reference!r} is not a Hub reference; write hf://user/run[@revision][/checkpoint-name].")
    path = hub.pull(args.reference, to=args.to or Path(DEFAULT_RUNS_DIR) / _repo_run(args.reference))
    print(f"Pulled {args.reference} to {path}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """``azr push``: one local checkpoint to a Hub repo."""
    path = checkpoint_path(args.checkpoint)
    commit = hub.push(path, args.repo_id, private=not args.public, corpus_root=path.parent)
    print(f"Pushed {args.checkpoint} to {args.repo_id} (commit {commit})")
    return 0


def cmd_space_deploy(args: argparse.Namespace) -> int:
    """``azr space deploy``: the app as a Hugging Face Space."""
    url = deploy_space(args.space_id, private=args.private, set_token_secret=args.set_token_secret)
    print(f"Deployed {args.space_id}: {url}")
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    """``azr selftest``: exit 0 only when a stopped and resumed run is bit-identical to an uninterrupted one."""
    return 0 if run_selftest(args.iterations, device=_device(args.device), say=_say) else 1
