"""The ``azr`` command line: the parser, with an option for every TrainConfig field, and the entry point.

The commands themselves are in :mod:`azr.cli.commands` (training) and :mod:`azr.cli.checkpoint_commands`. User
errors (any :class:`AZRError`, a bad argument) become one line on stderr and exit status 2; Ctrl+C and SIGTERM
leave a resumable checkpoint and exit with 130 and 143.
This module and the command modules import only light modules, so help and usage errors answer at once.
"""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import gc
import importlib
import os
import re
import sys
import typing
from typing import NoReturn

from azr import __version__
from azr.cli.defaults import DEFAULT_PRESET, DEFAULT_RUNS_DIR, EXIT_INTERRUPTED, EXIT_USAGE
from azr.cli.options import POSITIVE_FLOAT, POSITIVE_INT, checked, ranged, run_name, setting_type
from azr.config import CHOICES as SETTING_CHOICES
from azr.config import (
    DATASET_MAX_MB,
    FIXED_ON_RESUME,
    LORA_ALPHA,
    LORA_R,
    LORA_TARGET,
    PRESETS,
    REPORT_TO,
    SAMPLING_RANGES,
    ModelConfig,
    TrainConfig,
)
from azr.config.ranges import Range
from azr.errors import AZRError
from azr.training.signals import last_exit_code

DEVICES = ("auto", "cpu", "cuda", "mps")
SETTING_METAVARS = {int: "N", float: "F", str: "TEXT"}
SIZE_OPTIONS = ("d_model", "num_layers", "num_heads", "d_ff", "max_seq_len", "vocab_size")  # ModelConfig fields
SAMPLING_HELP = {"max_new_tokens": "tokens to generate", "temperature": "sampling temperature",
                 "top_k": "sample from the k most likely tokens (0: no limit)", "seed": "makes the sample reproducible"}


# ---------------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``azr: error: <what>``, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"azr: error: {message.removeprefix('argument ')} (see `{self.prog} --help`)\n")


TRAINING, CHECKPOINTS = "commands.", "checkpoint_commands."  # the modules of azr.cli that hold the handlers
BEST_HELP = "use the run's model_best checkpoint (lowest validation loss) of CHECKPOINT's run"


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``azr`` command; ``args.handler`` names the subcommand's function as
    ``module.function`` in :mod:`azr.cli` (imported only once the arguments are valid)."""
    parser = _Parser(prog="azr", description="Train small causal LMs with the AZR method; pause and resume exactly.")
    parser.add_argument("--version", action="version", version=f"azr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_resume, _add_list, _add_inspect, _add_generate, _add_demo, _add_selftest, _add_merge,
                _add_pull, _add_push, _add_space):
        add(commands)
    return parser


def _add_train(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a new model", description=(
        "Train a new model. Ctrl+C or SIGTERM saves model_interrupted_<N> after the current batch and prints the "
        "command that resumes it; a second Ctrl+C exits at once (every checkpoint on disk stays complete)."))
    train.add_argument("--preset", help=f"model size: {', '.join(PRESETS)} (default: {DEFAULT_PRESET})")
    sizes = {field.name: field for field in dataclasses.fields(ModelConfig)}
    for name in SIZE_OPTIONS:
        within = sizes[name].metadata["range"]
        train.add_argument(f"--{name.replace('_', '-')}", type=ranged(name, within, int), metavar="N",
                           help=f"{sizes[name].metadata['help']} ({within.describe()}; default: the preset's)")
    train.add_argument("--base-model", metavar="DIR_OR_HUB_ID",
                       help="start from an existing causal LM and its tokenizer instead of a new model")
    lora = train.add_argument_group("LoRA", "With --base-model: train LoRA adapters (peft) instead of every weight.")
    lora.add_argument("--lora-r", type=ranged("lora_r", LORA_R, int), metavar="N", help="adapter rank; turns LoRA on")
    lora.add_argument("--lora-alpha", type=ranged("lora_alpha", LORA_ALPHA, float), metavar="F",
                      help="scaling: the update is scaled by alpha / r (default: 16)")
    lora.add_argument("--lora-target", metavar="MODULES",
                      help=f"comma-separated module names, e.g. q_proj,v_proj (default: {LORA_TARGET})")
    train.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, metavar="DIR",
                       help=f"where runs go: each training gets a new run directory in it (default: "
                            f"{DEFAULT_RUNS_DIR})")
    train.add_argument("--run", "--run-name", type=checked(run_name), metavar="NAME",
                       help="name of the new run directory (default: run-<date>-<time>); under torchrun write "
                            "--run-name (torchrun takes --run for its own --run-path)")
    _add_run_options(train, resume=False)
    data = train.add_argument_group("Hub dataset", "Train on one split of a Hub dataset instead of --texts; the "
                                    "run records its commit, so a resume anywhere loads the same data.")
    data.add_argument("--dataset", metavar="USER/NAME[:CONFIG]", help="the dataset (and its configuration)")
    data.add_argument("--split", default="train", help="the split to train on (default: train)")
    data.add_argument("--text-column", default="text", metavar="NAME", help="the column of texts (default: text)")
    data.add_argument("--dataset-max-mb", type=POSITIVE_FLOAT, default=DATASET_MAX_MB, metavar="MIB",
                      help=f"refuse a dataset with more data than this many MiB (default: {DATASET_MAX_MB:g})")
    train.set_defaults(handler=TRAINING + "cmd_train")


def _add_resume(commands: argparse._SubParsersAction) -> None:
    resume = commands.add_parser("resume", help="continue a run from a checkpoint", description=(
        "Continue a run from a checkpoint, in its own run directory, to the same or a new --max-iterations target. "
        "Settings not given are the checkpoint's; without --texts the run's own corpus is used."))
    resume.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint directory or hf://user/run[@rev][/name]")
    resume.add_argument("--runs-dir", metavar="DIR", help=(
        f"continue in DIR/<run> instead of the checkpoint's own run directory (default: its parent for a local "
        f"checkpoint, {DEFAULT_RUNS_DIR} for hf://)"))
    resume.add_argument("--run", "--run-name", type=checked(run_name), metavar="NAME", help=(
        "run directory to continue in, under --runs-dir (default: the checkpoint's run, or the Hub repo's name)"))
    _add_run_options(resume, resume=True)
    resume.add_argument("--no-load-optimizer", action="store_true",
                        help="start a fresh optimizer instead of the saved one (training then differs slightly)")
    resume.set_defaults(handler=TRAINING + "cmd_resume")


def _add_list(commands: argparse._SubParsersAction) -> None:
    listing = commands.add_parser("list", help="list the checkpoints in a directory or Hub repo",
                                  description="List checkpoints, newest first, each checked against its checksums.")
    listing.add_argument("dir", nargs="?", default=DEFAULT_RUNS_DIR, metavar="DIR",
                         help=f"runs directory, run directory or hf://user/run (default: {DEFAULT_RUNS_DIR})")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(handler=CHECKPOINTS + "cmd_list")


def _add_inspect(commands: argparse._SubParsersAction) -> None:
    inspect = commands.add_parser("inspect", help="show what a checkpoint holds",
                                  description="Show a checkpoint's state, settings and checksum status.")
    inspect.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint directory or hf://user/run[/name]")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(handler=CHECKPOINTS + "cmd_inspect")


def _add_generate(commands: argparse._SubParsersAction) -> None:
    sample = commands.add_parser(
        "generate", help="sample text from a checkpoint",
        description="Sample a continuation of a prompt with a checkpoint's model and tokenizer.")
    sample.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint directory or hf://user/run[/name]")
    sample.add_argument("--prompt", required=True, help="text to continue")
    for name, default in (("max_new_tokens", 100), ("temperature", 1.0), ("top_k", 50), ("seed", None)):
        within = SAMPLING_RANGES[name]
        sample.add_argument(f"--{name.replace('_', '-')}", type=ranged(name, within, int if within.integer else float),
                            default=default, metavar="N" if within.integer else "F",
                            help=f"{SAMPLING_HELP[name]} ({within.describe()}; default: {default or 'none'})")
    sample.add_argument("--device", choices=DEVICES, default="auto", help="(default: auto)")
    sample.add_argument("--best", action="store_true", help=BEST_HELP)
    sample.set_defaults(handler=CHECKPOINTS + "cmd_generate")


def _add_demo(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="the pause/resume demonstration (about a minute)", description=(
        "Train 100 iterations, resume to 250, stop from another thread after 3 seconds, resume with a new target; "
        "a tiny model on the embedded corpus."))
    demo.add_argument("--dir", help="an empty or new directory for its checkpoints (default: a new temporary one)")
    demo.set_defaults(handler=TRAINING + "cmd_demo")


def _add_selftest(commands: argparse._SubParsersAction) -> None:
    selftest = commands.add_parser("selftest", help="prove that stop and resume are exact on this machine",
                                   description=(
        "Train a tiny model uninterrupted, then again with a stop at a random iteration and a resume in a fresh "
        "process; compare every loss and the final weights. Exit status 0 only when they are bit-identical."))
    selftest.add_argument("--iterations", type=POSITIVE_INT, default=30, metavar="N", help="(default: 30)")
    selftest.add_argument("--device", choices=DEVICES, default="auto", help="(default: auto)")
    selftest.set_defaults(handler=TRAINING + "cmd_selftest")


def _add_merge(commands: argparse._SubParsersAction) -> None:
    merge = commands.add_parser("merge", help="fold a LoRA checkpoint into a full model", description=(
        "Merge a LoRA checkpoint's adapter into its base model and save the result with the tokenizer; the output "
        "directory loads with AutoModelForCausalLM.from_pretrained and can be a new --base-model."))
    merge.add_argument("checkpoint", metavar="CHECKPOINT", help="LoRA checkpoint directory or hf://user/run[/name]")
    merge.add_argument("out_dir", metavar="OUT_DIR", help="where the merged model goes")
    merge.set_defaults(handler=CHECKPOINTS + "cmd_merge")


def _add_pull(commands: argparse._SubParsersAction) -> None:
    pull = commands.add_parser("pull", help="download a checkpoint from the Hub", description=(
        "Download a Hub checkpoint (the newest one without a name) and the run's corpus into a checkpoint directory, "
        "verified against its checksums."))
    pull.add_argument("reference", metavar="REFERENCE", help="hf://user/run[@revision][/checkpoint-name]")
    pull.add_argument("--to", metavar="DIR", help=f"run directory (default: {DEFAULT_RUNS_DIR}/<the repo's name>)")
    pull.set_defaults(handler=CHECKPOINTS + "cmd_pull")


def _add_push(commands: argparse._SubParsersAction) -> None:
    push = commands.add_parser("push", help="upload a checkpoint to a Hub repo", usage=(
        "azr push [-h] [--public] CHECKPOINT REPO\n       azr push --pending [DIR]"), description=(
        "Upload one checkpoint to checkpoints/<name>/ of a Hub model repo (created private if missing); the newest "
        "checkpoint also becomes the repo's root model with a model card. With --pending: push what the runs in DIR "
        f"(a run, or a runs directory; default: {DEFAULT_RUNS_DIR}) could not push before, the newest first."))
    push.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?", help="checkpoint directory (with --pending: DIR)")
    push.add_argument("repo_id", metavar="REPO", nargs="?", help="hf://user/run (or user/run)")
    push.add_argument("--public", action="store_true", help="create the repo public (default: private)")
    push.add_argument("--pending", action="store_true",
                      help="push the pending pushes of DIR (kept when the Hub was down, hanging or the run stopped)")
    push.add_argument("--best", action="store_true", help=BEST_HELP)
    push.set_defaults(handler=CHECKPOINTS + "cmd_push")


def _add_space(commands: argparse._SubParsersAction) -> None:
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
    deploy.set_defaults(handler=CHECKPOINTS + "cmd_space_deploy")


def _add_run_options(parser: argparse.ArgumentParser, resume: bool) -> None:
    """Add the options train and resume share, and one per training setting (see :func:`_add_settings`)."""
    parser.add_argument("--texts", nargs="+", metavar="PATH",
                        help="training files: .txt, .md, .jsonl or .csv (default: "
                             + ("the run's own corpus)" if resume else "the embedded corpus)"))
    parser.add_argument("--device", choices=DEVICES, default="auto", help="(default: auto: CUDA, then MPS, then CPU)")
    parser.add_argument("--push-to-hub", metavar="REPO",
                        help="push every checkpoint to this Hub repo (hf://user/run or user/run) in the background; "
                             "the token comes from HF_TOKEN or `huggingface-cli login`")
    parser.add_argument("--hub-public", action="store_true", help="create the Hub repo public (default: private)")
    parser.add_argument("--no-push-corpus", action="store_true",
                        help="do not upload the training corpus (another machine then needs --texts to resume)")
    parser.add_argument("--report-to", nargs="+", choices=REPORT_TO, default=["none"], metavar="TARGET",
                        help="report the metrics to tensorboard (event files in <run>/runs/, pushed with the run) "
                             "and/or trackio (local) (default: none)")
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
        if kind is bool:  # --name / --no-name; neither given: not passed on
            group.add_argument(f"--{field.name.replace('_', '-')}", action=argparse.BooleanOptionalAction,
                               help=f"{text} (default: {'off' if default is False else default})")
            continue
        bounds = f"{field.metadata['range'].describe()}; " if "range" in field.metadata else ""
        help_text = f"{text[:own.start()] if own else text} ({bounds}default: {default})"
        group.add_argument(f"--{field.name.replace('_', '-')}", type=setting_type(field.name, kind),
                           choices=choices, metavar=None if choices else SETTING_METAVARS[kind],
                           help=help_text.replace("%", "%%"))


def range_rows() -> list[tuple[str, str, Range]]:
    """The numeric settings' ranges as ``(option, setting, range)``: the table of docs/cli.md."""
    rows = [(f"`azr train --{f.name.replace('_', '-')}`" if f.name in SIZE_OPTIONS else "(Python only)",
             f"`ModelConfig.{f.name}`", f.metadata["range"]) for f in dataclasses.fields(ModelConfig)
            if "range" in f.metadata]
    rows += [(f"`azr train --{f.name.replace('_', '-')}`", f"`TrainConfig.{f.name}`", f.metadata["range"])
             for f in dataclasses.fields(TrainConfig) if "range" in f.metadata]
    return rows + [(f"`azr generate --{name.replace('_', '-')}`", SAMPLING_HELP[name], within)
                   for name, within in SAMPLING_RANGES.items()]


# ---------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Run the ``azr`` command and return its exit status."""
    atexit.register(gc.freeze)  # at exit, the interpreter's final collections skip what is left: seconds saved
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read by huggingface_hub and transformers on import
    args = build_parser().parse_args(argv)
    module, handler = args.handler.split(".")
    # after parsing: help and usage errors need none of the commands
    run = getattr(importlib.import_module(f"azr.cli.{module}"), handler)
    try:
        return run(args)
    except AZRError as exc:
        print(f"azr: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        from azr.cli.commands import let_signals_end_the_process  # noqa: PLC0415 - light: see the docstring

        let_signals_end_the_process()
        print("azr: interrupted.", file=sys.stderr)
        return last_exit_code() or EXIT_INTERRUPTED
