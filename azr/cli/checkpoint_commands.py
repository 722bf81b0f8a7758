"""The ``azr`` commands on checkpoints and the Hub: list, inspect, generate, merge, pull, push and space deploy
(the training commands are in :mod:`azr.cli.commands`). User errors are AZRError exceptions, turned into one line by
``cli.main``; torch, transformers and huggingface_hub are imported inside the commands that use them, so ``azr list``
of local checkpoints answers at once.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from azr.checkpoints import runs
from azr.checkpoints.checkpoint import Checkpoint, CheckpointError
from azr.checkpoints.info import checkpoint_size
from azr.checkpoints.names import CONFIG_FILE, hub_hint, is_hub_reference
from azr.checkpoints.runs import list_checkpoints
from azr.cli.defaults import DEFAULT_RUNS_DIR
from azr.cli.resolve import checked_device, chosen, hub_repo, open_checkpoint, repo_run
from azr.cli.terminal import format_checkpoints, format_report
from azr.errors import ConfigError, HubError

INSPECT_FIELDS = ("kind", "iteration", "max_iterations", "loss", "val_loss", "reward", "timestamp", "lr",
                  "train_config", "data_position", "corpus", "device_type", "versions", "format_version")


def cmd_list(args: argparse.Namespace) -> int:
    """``azr list``: the checkpoints of a run directory, of every run in a runs directory, or of a Hub repo, as a
    table or JSON."""
    where, path, run_names = args.dir, Path(args.dir).expanduser(), None
    if is_hub_reference(where):
        from azr.hub import sync as hub  # noqa: PLC0415

        infos = hub.list_checkpoints(where)
    elif not path.exists():
        print(f"No checkpoints yet in {where}; train a run with `azr train`{hub_hint(where)}.")
        return 0
    elif not path.is_dir():
        raise ConfigError(f"{where!r} is a file, not a run or runs directory; give the directory of a run.")
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
    report = inspect_checkpoint(open_checkpoint(args.checkpoint, verify=False))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def inspect_checkpoint(checkpoint: Checkpoint) -> dict[str, Any]:
    """Return what a checkpoint holds, read from its state, plus whether its files match their checksums."""
    from azr.models.causal_lm import ARCHITECTURE_FIELDS  # noqa: PLC0415

    try:
        checkpoint.verify()
        valid, reason = True, None
    except CheckpointError as exc:
        valid, reason = False, str(exc).split(" is invalid: ", 1)[-1].rstrip(".")
    state = checkpoint.state
    architecture = {label: checkpoint.model_config[key] for key, label in ARCHITECTURE_FIELDS.items()
                    if key in checkpoint.model_config} if (checkpoint.path / CONFIG_FILE).is_file() else None
    run = runs.read_run(checkpoint.path.parent)
    return {
        "name": checkpoint.path.name, "path": str(checkpoint.path), "run": run.name if run else None,
        "run_id": checkpoint.run_id,
        **{field: state.get(field) for field in INSPECT_FIELDS},
        "has_optimizer": checkpoint.has_optimizer, "history_length": checkpoint.history_length,
        "model_config": state.get("model_config") or architecture, "files": len(checkpoint.files),
        "size_bytes": checkpoint_size(checkpoint.path), "valid": valid, "reason": reason,
    }


def cmd_generate(args: argparse.Namespace) -> int:
    """``azr generate``: print the prompt and a sampled continuation."""
    checkpoint = open_checkpoint(chosen(args), verify=False)  # first: a wrong path is refused before torch loads
    from azr import services  # noqa: PLC0415
    from azr.training.trainer import resolve_device  # noqa: PLC0415

    print(services.sample_text(checkpoint, args.prompt, temperature=args.temperature, top_k=args.top_k,
                               max_new_tokens=args.max_new_tokens, seed=args.seed,
                               device=resolve_device(checked_device(args.device))))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """``azr merge``: a LoRA checkpoint's adapter folded into its base model, saved as a full model."""
    path = open_checkpoint(args.checkpoint).path  # first: a wrong path is refused before torch loads
    from azr.models.lora import merge  # noqa: PLC0415

    out = merge(path, Path(args.out_dir).expanduser())
    print(f"Merged {args.checkpoint} into {out}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    """``azr pull``: a Hub checkpoint into a local run directory."""
    from azr.hub import sync as hub  # noqa: PLC0415

    if not is_hub_reference(args.reference):
        raise HubError(f"{args.reference!r} is not a Hub reference; write hf://user/run[@revision][/checkpoint-name].")
    path = hub.pull(args.reference, to=args.to or Path(DEFAULT_RUNS_DIR) / repo_run(args.reference))
    print(f"Pulled {args.reference} to {path}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """``azr push``: one local checkpoint to a Hub repo, or (``--pending``) what runs have pending."""
    from azr.hub import publish  # noqa: PLC0415

    if args.pending:
        return _push_pending(args)
    if args.checkpoint is None or args.repo_id is None:
        raise ConfigError("azr push needs a CHECKPOINT and a REPO (or --pending [DIR]); see `azr push --help`.")
    repo_id = hub_repo(args.repo_id)
    path = open_checkpoint(chosen(args), verify=False).path  # push verifies it
    commit = publish.push(path, repo_id, private=not args.public, corpus_root=path.parent)
    print(f"Pushed {args.checkpoint} to {repo_id} (commit {commit})")
    return 0


def _push_pending(args: argparse.Namespace) -> int:
    """Push what a run (or every run of a runs directory) has pending, newest first; exit 1 when some stay."""
    from azr.hub.uploader import push_pending  # noqa: PLC0415

    if args.repo_id is not None:
        raise ConfigError("azr push --pending takes one DIR (a run or a runs directory), not a repo.")
    where = Path(args.checkpoint or DEFAULT_RUNS_DIR).expanduser()
    if not where.is_dir():
        raise ConfigError(f"{str(where)!r} is not a directory; give a run or a runs directory.")
    left = done = 0
    for push, state in push_pending(where):
        print(f"{push.run_dir.name}/{push.checkpoint} -> {push.target.repo_id}: {state}")
        left, done = left + state.startswith("pending"), done + 1
    print(f"Nothing pending in {where}." if not done else
          f"{left} pushes still pending; run `azr push --pending` again when the Hub answers." if left else
          "Every pending push is done.")
    return 1 if left else 0


def cmd_space_deploy(args: argparse.Namespace) -> int:
    """``azr space deploy``: the app as a Hugging Face Space."""
    from azr.hub.space import deploy_space  # noqa: PLC0415

    url = deploy_space(args.space_id, private=args.private, set_token_secret=args.set_token_secret)
    print(f"Deployed {args.space_id}: {url}")
    return 0
