"""What a command line names, checked: the device, the checkpoint (a local path or ``hf://``) and the run a Hub
repo gives by default. Shared by the training commands and the checkpoint commands."""
from __future__ import annotations

import argparse
from pathlib import Path

from azr.checkpoints import runs
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.names import is_hub_reference
from azr.errors import ConfigError, HubError


def checked_device(name: str) -> str:
    """Return ``name`` after checking that the device exists; raises ConfigError otherwise."""
    import torch  # noqa: PLC0415 - torch only for the commands that need a device

    missing = (name == "cuda" and not torch.cuda.is_available()) or \
        (name == "mps" and not torch.backends.mps.is_available())
    if missing:
        raise ConfigError(f"--device {name} is not available on this machine; use --device auto or cpu.")
    return name


def open_checkpoint(ref: str | Path, verify: bool = True) -> Checkpoint:
    """The checkpoint a command names, local or ``hf://``: a local one is opened without importing
    huggingface_hub, so a wrong path is refused at once (commands open theirs before they import torch)."""
    if not is_hub_reference(ref):
        return Checkpoint.open(ref, verify=verify)
    from azr.hub.sync import open_checkpoint as open_hub  # noqa: PLC0415

    return open_hub(ref, verify=verify)


def chosen(args: argparse.Namespace) -> str | Path:
    """The checkpoint a command works on: the one named, or with ``--best`` its run's model_best."""
    return runs.best_checkpoint(args.checkpoint) if args.best else args.checkpoint


def hub_repo(text: str) -> str:
    """Return the repo id a command is given as ``hf://user/run`` (like every Hub reference) or ``user/run``;
    raises HubError for a reference to a revision or a checkpoint, or an invalid repo id."""
    from azr.hub.http import check_repo_id  # noqa: PLC0415
    from azr.hub.sync import parse_reference  # noqa: PLC0415

    if not is_hub_reference(text):
        return check_repo_id(text)
    reference = parse_reference(text)
    if reference.revision or reference.name:
        raise HubError(f"{text!r} names a revision or a checkpoint; give a repo, hf://{reference.repo_id}.")
    return check_repo_id(reference.repo_id)


def repo_run(reference: str) -> str:
    """Return the run name a Hub reference gives by default: the repo's name (``run`` of ``hf://user/run``)."""
    from azr.hub.sync import parse_reference  # noqa: PLC0415

    return runs.check_run_name(parse_reference(reference).repo_id.split("/")[1])
