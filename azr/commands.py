"""What each ``azr`` command does (the parser is in :mod:`azr.cli`): each drives the library and renders what it
reports through :mod:`azr.terminal`; user errors are AZRError exceptions, turned into one line by ``cli.main``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from . import hub, runs, services
from .checkpoint import CONFIG_FILE, Checkpoint, CheckpointError, hub_hint
from .config import TrainConfig, preset
from .data import load_texts
from .demo import run_demo
from .errors import ConfigError, HubError
from .model import ARCHITECTURE_FIELDS, model_config_of
from .runs import list_checkpoints
from .selftest import run_selftest
from .signals import EXIT_CODES, graceful_stop
from .space import deploy_space
from .status import TrainingStatus
from .terminal import Progress, format_checkpoints, format_report, say, say_resume
from .trainer import AZRTrainer, resolve_device

EXIT_INTERRUPTED = 130
DEFAULT_RUNS_DIR = "checkpoints"
DEFAULT_PRESET = "tiny"
SHAPE_OPTIONS = ("vocab_size", "d_model", "num_layers", "num_heads", "d_ff", "max_seq_len")
INSPECT_FIELDS = ("kind", "iteration", "max_iterations", "loss", "val_loss", "reward", "timestamp", "lr",
                  "train_config", "data_position", "corpus", "device_type", "versions", "format_version")


def _device(name: str) -> str:
    """Return ``name`` after checking that the device exists; raises ConfigError otherwise."""
    missing = (name == "cuda" and not torch.cuda.is_available()) or \
        (name == "mps" and not torch.backends.mps.is_available())
    if missing:
        raise ConfigError(f"--device {name} is not available on this machine; use --device auto or cpu.")
    return name


def cmd_train(args: argparse.Namespace) -> int:
    """``azr train``: a new model (or a base model) trained from iteration 0 in a new run directory."""
    device = _device(args.device)
    settings = _settings(args)
    texts = load_texts(args.texts) if args.texts else None
    model, tokenizer = _new_model(args, texts, settings.get("seed", TrainConfig.seed))
    trainer = AZRTrainer(model, tokenizer, device=device)
    directory, created = _new_run_directory(Path(args.runs_dir).expanduser(), args.run)
    try:
        say(f"Run directory: {directory}")
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
        return services.new_model(texts, preset(args.preset or DEFAULT_PRESET, **shape), seed=seed)
    if args.preset is not None:
        raise ConfigError("--preset and --base-model exclude each other: a base model brings its own size.")
    model, tokenizer = services.new_model(texts, base_model=args.base_model)
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
    checkpoint = Checkpoint.open(args.checkpoint)  # verified once; the trainer reuses it
    directory = _resume_directory(args, checkpoint.path)
    texts = load_texts(args.texts) if args.texts else None
    trainer = AZRTrainer.from_checkpoint(checkpoint, device=_device(args.device))
    say(f"Run directory: {directory}")
    return _drive(trainer, directory, lambda: trainer.train(
        texts, checkpoint_dir=directory, resume_from=checkpoint.path, load_optimizer=not args.no_load_optimizer,
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


def cmd_list(args: argparse.Namespace) -> int:
    """``azr list``: the checkpoints of a run directory, of every run in a runs directory, or of a Hub repo, as a
    table or JSON."""
    where, path, run_names = args.dir, Path(args.dir).expanduser(), None
    if hub.is_hub_reference(where):
        infos = hub.list_checkpoints(where)
    elif not path.exists():
        print(f"No checkpoints yet in {where}; train a run with `azr train`{hub_hint(where)}.")
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


def cmd_inspect(args: argparse.Namespace) -> int:
    """``azr inspect``: what one checkpoint holds."""
    report = inspect_checkpoint(Checkpoint.open(args.checkpoint, verify=False))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def inspect_checkpoint(checkpoint: Checkpoint) -> dict[str, Any]:
    """Return what a checkpoint holds, read from its state, plus whether its files match their checksums."""
    try:
        checkpoint.verify()
        valid, reason = True, None
    except CheckpointError as exc:
        valid, reason = False, str(exc).split(" is invalid: ", 1)[-1].rstrip(".")
    state = checkpoint.state
    architecture = {label: checkpoint.model_config[key] for key, label in ARCHITECTURE_FIELDS.items()
                    if key in checkpoint.model_config} if (checkpoint.path / CONFIG_FILE).is_file() else None
    return {
        "name": checkpoint.path.name, "path": str(checkpoint.path), "run_id": checkpoint.run_id,
        **{field: state.get(field) for field in INSPECT_FIELDS},
        "has_optimizer": checkpoint.has_optimizer, "history_length": checkpoint.history_length,
        "model_config": state.get("model_config") or architecture, "files": len(checkpoint.files),
        "size_bytes": checkpoint.info().size_bytes, "valid": valid, "reason": reason,
    }


def cmd_generate(args: argparse.Namespace) -> int:
    """``azr generate``: print the prompt and a sampled continuation."""
    checkpoint = Checkpoint.open(_chosen(args), verify=False)  # sample_text verifies it
    print(services.sample_text(checkpoint, args.prompt, temperature=args.temperature, top_k=args.top_k,
                               max_new_tokens=args.max_new_tokens, seed=args.seed,
                               device=resolve_device(_device(args.device))))
    return 0


def _chosen(args: argparse.Namespace) -> str | Path:
    """The checkpoint a command works on: the one named, or with ``--best`` its run's model_best."""
    return runs.best_checkpoint(args.checkpoint) if args.best else args.checkpoint


def cmd_demo(args: argparse.Namespace) -> int:
    """``azr demo``: the seed guide's pause/resume demonstration, narrated, ending with the checkpoint list."""
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="azr-demo-"))
    if runs.is_run_directory(directory):
        raise ConfigError(f"{str(directory)!r} already holds a run; give the demo an empty or new --dir.")
    infos = run_demo(directory, say=say, on_status=Progress())
    say(f"\nCheckpoints in {directory}:\n{format_checkpoints(infos)}")
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
    path = Checkpoint.open(_chosen(args), verify=False).path  # push verifies it
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
    return 0 if run_selftest(args.iterations, device=_device(args.device), say=say) else 1
