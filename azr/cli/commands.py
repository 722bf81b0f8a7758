"""The ``azr`` commands that train: train, resume, demo and selftest (the parser is in :mod:`azr.cli.main`, the
checkpoint and Hub commands in :mod:`azr.cli.checkpoint_commands`). Each drives the library and renders what it
reports through :mod:`azr.cli.terminal`; user errors are AZRError exceptions, turned into one line by ``cli.main``.

torch, transformers and huggingface_hub are imported inside the commands that use them, so ``azr --help`` and a
usage error answer at once.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azr.checkpoints import runs
from azr.checkpoints.names import is_hub_reference
from azr.checkpoints.runs import list_checkpoints
from azr.cli.defaults import DEFAULT_PRESET, DEFAULT_RUNS_DIR, EXIT_INTERRUPTED
from azr.cli.resolve import checked_device, hub_repo, open_checkpoint, repo_run
from azr.cli.terminal import Progress, format_checkpoints, say, say_resume
from azr.config import TrainConfig, preset
from azr.data.files import TextFiles
from azr.errors import ConfigError
from azr.training.signals import EXIT_CODES, graceful_stop

if TYPE_CHECKING:
    import torch

    from azr.data.hub_datasets import HubDataset
    from azr.training.status import TrainingStatus
    from azr.training.trainer import AZRTrainer

SHAPE_OPTIONS = ("vocab_size", "d_model", "num_layers", "num_heads", "d_ff", "max_seq_len")


def _process_device(name: str) -> str | torch.device:
    """Return the device of this process after checking it, joining torchrun's process group when launched by
    torchrun; there only rank 0 reports progress (every process still reports its errors)."""
    from azr.training import distributed  # noqa: PLC0415 - torch: see the module docstring

    device = distributed.join(checked_device(name))
    if not distributed.is_main():
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for the rest of the process
    return device


def cmd_train(args: argparse.Namespace) -> int:
    """``azr train``: a new model (or a base model) trained from iteration 0 in a new run directory."""
    from azr.training import distributed  # noqa: PLC0415
    from azr.training.trainer import AZRTrainer  # noqa: PLC0415

    lora = _lora(args)
    device = _process_device(args.device)
    settings, hub_options, dataset = _settings(args), _hub(args), _dataset(args)
    texts = _text_files(args.texts)
    model, tokenizer = _new_model(args, dataset.texts() if dataset else texts, settings.get("seed", TrainConfig.seed),
                                  lora)
    trainer = AZRTrainer(model, tokenizer, device=device)
    directory, created = distributed.from_main(lambda: _new_run_directory(Path(args.runs_dir).expanduser(), args.run))
    created = created if distributed.is_main() else []
    try:
        say(f"Run directory: {directory}")
        return _drive(trainer, directory,
                      lambda: trainer.train(texts, checkpoint_dir=directory, dataset=dataset, **settings,
                                            **hub_options))
    finally:
        for path in created:  # nothing saved (an error, a second Ctrl+C): leave no empty directories behind
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def _dataset(args: argparse.Namespace) -> HubDataset | None:
    """Return the Hub dataset ``--dataset`` names (None without it); raises ConfigError with ``--texts`` too."""
    if args.dataset is None:
        return None
    from azr.data.hub_datasets import HubDataset  # noqa: PLC0415
    if args.texts:
        raise ConfigError("--texts and --dataset exclude each other; train on files or on a Hub dataset.")
    return HubDataset.parse(args.dataset, split=args.split, text_column=args.text_column, max_mb=args.dataset_max_mb)


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


def _lora(args: argparse.Namespace):
    """The LoRA settings of the options (None without ``--lora-r``, which turns LoRA on); raises ConfigError for a
    scaling or target given without a rank, which would otherwise train every weight unasked."""
    from azr.models.lora import LoraSettings  # noqa: PLC0415

    if args.lora_r is None:
        given = [option for option, value in (("--lora-alpha", args.lora_alpha), ("--lora-target", args.lora_target))
                 if value is not None]
        if given:
            raise ConfigError(f"{given[0]} needs --lora-r (the adapter rank, which turns LoRA on).")
        return None
    given = {"alpha": args.lora_alpha, "target": args.lora_target}
    return LoraSettings(args.lora_r, **{name: value for name, value in given.items() if value is not None})


def _text_files(paths: list[str] | None) -> TextFiles | None:
    """The training files named on the command line, checked and fingerprinted in one pass, so a bad file is one
    message before anything is built or written; None: the default corpus."""
    if not paths:
        return None
    texts = TextFiles(paths)
    texts.summary()
    return texts


def _new_model(args: argparse.Namespace, texts: Iterable[str] | None, seed: int, lora=None):
    """Return ``(model, tokenizer)``: the base model (with LoRA adapters when ``lora``), or a new model of the preset
    with the size options applied."""
    from azr import services  # noqa: PLC0415
    from azr.models.causal_lm import model_config_of  # noqa: PLC0415

    shape = {name: getattr(args, name) for name in SHAPE_OPTIONS if getattr(args, name) is not None}
    if args.base_model is None:
        return services.new_model(texts, preset(args.preset or DEFAULT_PRESET, **shape), seed=seed, lora=lora)
    if args.preset is not None:
        raise ConfigError("--preset and --base-model exclude each other: a base model brings its own size.")
    model, tokenizer = services.new_model(texts, base_model=args.base_model, seed=seed, lora=lora)
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
    hub_options = _hub(args)
    checkpoint = open_checkpoint(args.checkpoint)  # verified once, before torch loads; the trainer reuses it
    from azr.training.trainer import AZRTrainer  # noqa: PLC0415

    directory = _resume_directory(args, checkpoint.path)
    texts = _text_files(args.texts)
    trainer = AZRTrainer.from_checkpoint(checkpoint, device=_process_device(args.device))
    say(f"Run directory: {directory}")
    return _drive(trainer, directory, lambda: trainer.train(
        texts, checkpoint_dir=directory, resume_from=checkpoint.path, load_optimizer=not args.no_load_optimizer,
        **_settings(args), **hub_options))


def _resume_directory(args: argparse.Namespace, path: Path) -> Path:
    """Return the run directory a resume continues in: a local checkpoint's own (its parent) unless --runs-dir or
    --run is given, else ``<runs-dir>/<run>`` with the checkpoint's run or the Hub repo's name as the default run."""
    if is_hub_reference(args.checkpoint):
        own_run = repo_run(args.checkpoint)
    elif args.runs_dir is None and args.run is None:
        return path.parent
    else:
        own_run = runs.check_run_name(path.resolve().parent.name)
    return Path(args.runs_dir or DEFAULT_RUNS_DIR).expanduser() / (args.run or own_run)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Return the TrainConfig fields given on the command line (the others are the defaults, or the checkpoint's)."""
    return {field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)
            if getattr(args, field.name, None) is not None}


def _hub(args: argparse.Namespace) -> dict[str, Any]:
    """Return the trainer's Hub push and reporting options given on the command line; raises HubError for an
    invalid repo id."""
    if not args.push_to_hub:
        return {"report_to": args.report_to}
    return {"hub_repo_id": hub_repo(args.push_to_hub), "hub_private": not args.hub_public,
            "hub_push_corpus": not args.no_push_corpus, "report_to": args.report_to}


def _drive(trainer: AZRTrainer, directory: Path, start: Callable[[], Iterator[TrainingStatus]]) -> int:
    """Run ``start()``'s statuses to the end under graceful_stop, render them, and return the exit status."""
    from azr.training import distributed  # noqa: PLC0415
    from azr.training.callbacks import OnStep  # noqa: PLC0415
    progress = Progress(None if distributed.is_main() else sys.stdout)  # the other ranks: sys.stdout is os.devnull
    guard, stepping = graceful_stop(trainer), OnStep(progress.step)
    trainer.callbacks.append(stepping)
    try:
        with guard:
            try:
                for status in start():
                    progress(status)
            finally:
                progress.close()
                trainer.callbacks.remove(stepping)
    except KeyboardInterrupt:
        say("Stopped at once by a second signal; every checkpoint on disk is complete.")
        newest = list_checkpoints(directory, verify=False) if directory.is_dir() else []  # the run's own only
        if newest and progress.last:
            say_resume(newest[0].path, progress.last.max_iterations)
        return guard.exit_code or EXIT_INTERRUPTED
    finally:
        if guard.received is not None:
            let_signals_end_the_process()
    final = progress.last
    say(final.message)
    say(f"Checkpoint: {final.checkpoint}")
    if final.state in ("interrupted", "paused"):
        say_resume(final.checkpoint, final.max_iterations)
    return (guard.exit_code or EXIT_INTERRUPTED) if final.state == "interrupted" else 0


def let_signals_end_the_process() -> None:
    """Once a signal has stopped the run, make a further SIGINT or SIGTERM end the process at once (the default
    action: nothing is left to save, and Python's shutdown must not be interrupted half-way)."""
    for signum in EXIT_CODES:
        signal.signal(signum, signal.SIG_DFL)


def cmd_demo(args: argparse.Namespace) -> int:
    """``azr demo``: the seed guide's pause/resume demonstration, narrated, ending with the checkpoint list."""
    from azr.cli.demo import run_demo  # noqa: PLC0415

    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="azr-demo-"))
    if runs.is_run_directory(directory):
        raise ConfigError(f"{str(directory)!r} already holds a run; give the demo an empty or new --dir.")
    infos = run_demo(directory, say=say, on_status=Progress())
    say(f"\nCheckpoints in {directory}:\n{format_checkpoints(infos)}")
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    """``azr selftest``: exit 0 only when a stopped and resumed run is bit-identical to an uninterrupted one."""
    from azr.cli.selftest import run_selftest  # noqa: PLC0415

    return 0 if run_selftest(args.iterations, device=checked_device(args.device), say=say) else 1


