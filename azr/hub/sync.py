"""Hugging Face Hub, reading: ``hf://`` references, and listing, downloading and pulling checkpoints.

Repo layout: every checkpoint under ``checkpoints/<name>/``; an index ``checkpoints/index.json`` with one
entry per checkpoint; the run's corpus once under ``corpus/``; its TensorBoard event files under ``runs/``; and
at the root the newest weights (or LoRA adapter), config, tokenizer and a model card, so that
``from_pretrained("user/run")`` gives the newest model.

Pushing is in :mod:`azr.hub.publish`; settings, timeouts and errors in :mod:`azr.hub.http`.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import EntryNotFoundError

from azr.checkpoints import checkpoint as ckpt
from azr.checkpoints import containment, info, names, runs, storage
from azr.checkpoints.history import CHUNK_DIR
from azr.checkpoints.statefile import STATE_FILE
from azr.checkpoints.writing import copy_checkpoint
from azr.errors import CheckpointError, HubError
from azr.hub.http import HUB_EXCEPTIONS, api, cache_dir, endpoint, hub_error, offline, request_timeout, use_timeout

SCHEME = names.HUB_SCHEME
CHECKPOINTS = "checkpoints"
INDEX = f"{CHECKPOINTS}/index.json"
REFERENCE = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[^/]+))?(?:/(?P<name>[^/]+))?/?$")


@dataclass(frozen=True)
class HubReference:
    """A parsed ``hf://user/run[@revision][/checkpoint-name]``."""

    repo_id: str
    revision: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        return f"{SCHEME}{self.repo_id}{revision}" + (f"/{self.name}" if self.name else "")


def parse_reference(ref: str) -> HubReference:
    """Parse a Hub reference; raises HubError for a malformed one."""
    text = str(ref).removeprefix(SCHEME)
    match = REFERENCE.match(text)
    if not match:
        raise HubError(f"{ref!r} is not a Hub reference; use hf://user/run[@revision][/checkpoint-name].")
    name = match.group("name")
    if name and not names.NAME_PATTERN.match(name):
        raise HubError(f"{name!r} is not a checkpoint name (like model_iter_1000) in {ref!r}.")
    return HubReference(match.group("repo"), match.group("revision"), name)


# ---------------------------------------------------------------------------- reading


def _checkpoint_names(files: list[str]) -> list[str]:
    found = {parts[1] for parts in (f.split("/") for f in files)
             if len(parts) == 3 and parts[0] == CHECKPOINTS and names.NAME_PATTERN.match(parts[1])}
    return sorted(found)


def read_index(hf: HfApi, repo_id: str, revision: str | None) -> dict[str, Any]:
    """Return the repo's checkpoint index (empty when there is none)."""
    try:
        path = hf.hf_hub_download(repo_id, INDEX, revision=revision, cache_dir=cache_dir(),
                                  etag_timeout=request_timeout())
    except EntryNotFoundError:
        return {}
    return json.loads(Path(path).read_text())


def list_checkpoints(ref: str, token: str | None = None) -> list[info.CheckpointInfo]:
    """Return the checkpoints of a Hub repo, newest first (the same records as for a local directory).

    A checkpoint is invalid when a file its index entry names is missing from the repo.
    Raises HubError for an unknown repo or revision, no access, or no connection.
    """
    reference = parse_reference(ref)
    hf = api(token)
    try:
        files = hf.list_repo_files(reference.repo_id, revision=reference.revision)
        index = read_index(hf, reference.repo_id, reference.revision)
    except HUB_EXCEPTIONS as exc:
        raise hub_error(exc, reference.repo_id, token, reference.revision) from exc
    present = set(files)
    infos = []
    for name in _checkpoint_names(files):
        entry = index.get(name, {})
        recorded = entry.get("files") or {}
        missing = [f for f in recorded if f"{CHECKPOINTS}/{name}/{f}" not in present]
        if not recorded and f"{CHECKPOINTS}/{name}/{STATE_FILE}" not in present:
            missing = [STATE_FILE]
        match = names.NAME_PATTERN.match(name)
        infos.append(info.CheckpointInfo(
            name=name, path=str(HubReference(reference.repo_id, reference.revision, name)), kind=match.group(1),
            iteration=entry.get("iteration", int(match.group(2))), max_iterations=entry.get("max_iterations"),
            loss=entry.get("loss"), val_loss=entry.get("val_loss"), timestamp=entry.get("timestamp"),
            size_bytes=entry.get("size_bytes", 0), has_optimizer=names.OPTIMIZER_FILE in recorded,
            valid=not missing, reason=f"{missing[0]} is missing" if missing else None,
        ))
    infos.sort(key=lambda i: (i.timestamp or "", i.iteration or 0), reverse=True)
    return infos


def _download(reference: HubReference, patterns: list[str], token: str | None) -> Path:
    return Path(snapshot_download(reference.repo_id, revision=reference.revision, allow_patterns=patterns,
                                  cache_dir=cache_dir(), token=token, endpoint=endpoint(),
                                  local_files_only=offline(), etag_timeout=use_timeout()))


def open_checkpoint(ref: str | os.PathLike | ckpt.Checkpoint, *, token: str | None = None, verify: bool = True
                    ) -> ckpt.Checkpoint:
    """Return the checkpoint at a local path or ``hf://user/run[@rev][/name]`` (downloaded and verified).

    Raises CheckpointError for a missing, unreadable, newer-format or (with ``verify``) damaged checkpoint,
    HubError when a Hub checkpoint cannot be fetched.
    """
    if names.is_hub_reference(ref):
        return download_checkpoint(str(ref), token)
    return ckpt.Checkpoint.open(ref, verify=verify)


def download_checkpoint(ref: str, token: str | None = None) -> ckpt.Checkpoint:
    """Return a Hub checkpoint (the newest one when no name is given), downloaded into the HF cache with its
    history chunks and the run's corpus, and verified.

    Raises HubError for Hub problems, CheckpointError for a checkpoint failing its checksums.
    """
    reference = parse_reference(str(ref))
    try:
        name = reference.name or _newest_name(reference, token)
        if not offline():
            available = [i.name for i in list_checkpoints(str(reference), token)]
            if name not in available:
                raise HubError(f"Checkpoint {name!r} is not in {reference.repo_id!r}; it has: "
                               f"{', '.join(available) or 'no checkpoints'}.")
        root = _download(reference, [f"{CHECKPOINTS}/{name}/*"], token)
        path = root / CHECKPOINTS / name
        if not path.is_dir():
            raise HubError(f"Checkpoint {name!r} of {reference.repo_id!r} is not cached and cannot be downloaded.")
        checkpoint = ckpt.Checkpoint.open(path, verify=False)
        extra = [f"{CHECKPOINTS}/{CHUNK_DIR}/{d}.safetensors" for d in checkpoint.history_chunks]
        if checkpoint.corpus.get("file"):
            extra.append(checkpoint.corpus["file"])
        if extra:
            _download(reference, extra, token)
    except HUB_EXCEPTIONS as exc:
        raise hub_error(exc, reference.repo_id, token, reference.revision) from exc
    try:
        checkpoint.verify()
    except CheckpointError as exc:
        raise CheckpointError(f"The checkpoint downloaded from {reference} failed verification: "
                              f"{str(exc).split(' is invalid: ')[-1]}") from exc
    return checkpoint


def _newest_name(reference: HubReference, token: str | None) -> str:
    if offline():
        cached = _download(reference, [f"{CHECKPOINTS}/*/{STATE_FILE}"], token) / CHECKPOINTS
        infos = runs.list_checkpoints(cached, verify=False) if cached.is_dir() else []
    else:
        infos = list_checkpoints(str(reference), token)
    if not infos:
        raise HubError(f"Repository {reference.repo_id!r} has no checkpoints.")
    return infos[0].name


def pull(ref: str, to: str | Path = "checkpoints", token: str | None = None) -> Path:
    """Download a Hub checkpoint (with its history and corpus) into a local run directory; return its path.

    Raises HubError / CheckpointError as :func:`download_checkpoint` (and CheckpointError for a corpus name that
    leads out of the run), ConfigError while a training writes the run directory.
    """
    source = download_checkpoint(ref, token)
    target_root = Path(to)
    target_root.mkdir(parents=True, exist_ok=True)
    lock = runs.RunLock(target_root, instead="Pull into another directory (--to), or once that training ended.")
    try:
        corpus = containment.corpus_file(source, source.path.parent.parent)
        if corpus is not None and containment.corpus_file(source, target_root) is None:
            storage.write_file_atomically(target_root / source.corpus["file"], corpus.read_bytes)
        return copy_checkpoint(source, target_root)
    finally:
        lock.release()
