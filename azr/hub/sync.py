"""Hugging Face Hub: ``hf://`` references, and pushing, listing, pulling and resolving checkpoints.

Repo layout: every checkpoint under ``checkpoints/<name>/``; an index ``checkpoints/index.json`` with one
entry per checkpoint; the run's corpus once under ``corpus/``; its TensorBoard event files under ``runs/``; and
at the root the newest weights (or LoRA adapter), config, tokenizer and a model card, so that
``from_pretrained("user/run")`` gives the newest model.

Settings come from the environment at call time (``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HOME`` /
``HF_HUB_CACHE``, ``AZR_HUB_TIMEOUT_S``) and the token from the argument, ``HF_TOKEN`` or ``huggingface-cli
login``. The token is never written, logged or put in a message: errors only say whether one was used.

Every request has a timeout (see :mod:`azr.hub.http`). The index is changed with
``create_commit(parent_commit=…)``: when another pusher committed in between, the Hub refuses (HTTP 412) and
the change is made again on the new head, so two pushers to one repo never lose an index entry.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token, snapshot_download
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from azr.checkpoints import checkpoint as ckpt
from azr.checkpoints import containment, info, names, runs, storage
from azr.checkpoints.history import CHUNK_DIR
from azr.checkpoints.statefile import STATE_FILE
from azr.checkpoints.writing import copy_checkpoint
from azr.errors import CheckpointError, HubError
from azr.hub.card import chart_svg, model_card
from azr.hub.http import check_repo_id, request_timeout, use_timeout

SCHEME = names.HUB_SCHEME
CHECKPOINTS = "checkpoints"
INDEX = f"{CHECKPOINTS}/index.json"
CHART = "training_curves.svg"
ROOT_FILES = ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
              "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "adapter_model.safetensors",
              "adapter_config.json")
REFERENCE = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[^/]+))?(?:/(?P<name>[^/]+))?/?$")
CONFLICT_ATTEMPTS = 10  # each refused commit means another pusher's commit went in: progress is certain
HEAD_CHANGED = 412  # the Hub's answer to a commit whose parent_commit is no longer the branch head

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubReference:
    """A parsed ``hf://user/run[@revision][/checkpoint-name]``."""

    repo_id: str
    revision: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        return f"{SCHEME}{self.repo_id}{revision}" + (f"/{self.name}" if self.name else "")


is_hub_reference = names.is_hub_reference  # defined with the checkpoint references, which stay light to import


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


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", hf_constants.ENDPOINT).rstrip("/")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _cache_dir() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return hf_constants.HF_HUB_CACHE


def api(token: str | None = None) -> HfApi:
    """Return an HfApi for the current endpoint and token (its requests time out, see :func:`request_timeout`)."""
    use_timeout()
    return HfApi(endpoint=_endpoint(), token=token)


def _token_note(token: str | None) -> str:
    return "a token was used" if (token or get_token()) else "no token was used"


def hub_error(exc: Exception, repo_id: str, token: str | None, revision: str | None = None) -> HubError:
    """Translate a huggingface_hub/httpx exception into one clear HubError (never containing the token)."""
    if isinstance(exc, RepositoryNotFoundError):
        return HubError(f"Repository {repo_id!r} was not found or you have no access ({_token_note(token)}).")
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"Revision {revision!r} was not found in {repo_id!r}.")
    if isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
        return HubError(f"Cannot reach {repo_id!r}: offline (or the Hub is unreachable) and nothing is cached.")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        if status in (401, 403):
            return HubError(f"Access to {repo_id!r} was refused (HTTP {status}; {_token_note(token)}).")
        return HubError(f"The Hub answered HTTP {status} for {repo_id!r}; try again later.")
    if isinstance(exc, (httpx2.TransportError, ConnectionError, TimeoutError)):
        return HubError(f"Cannot reach the Hub at {_endpoint()} for {repo_id!r} ({type(exc).__name__}).")
    return HubError(f"Hub operation on {repo_id!r} failed: {type(exc).__name__}.")


HUB_EXCEPTIONS = (HfHubHTTPError, OfflineModeIsEnabled, LocalEntryNotFoundError, httpx2.TransportError,
                  ConnectionError, TimeoutError)


# ---------------------------------------------------------------------------- reading


def _checkpoint_names(files: list[str]) -> list[str]:
    names = {parts[1] for parts in (f.split("/") for f in files)
             if len(parts) == 3 and parts[0] == CHECKPOINTS and names.NAME_PATTERN.match(parts[1])}
    return sorted(names)


def _read_index(hf: HfApi, repo_id: str, revision: str | None) -> dict[str, Any]:
    """Return the repo's checkpoint index (empty when there is none)."""
    try:
        path = hf.hf_hub_download(repo_id, INDEX, revision=revision, cache_dir=_cache_dir(),
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
        index = _read_index(hf, reference.repo_id, reference.revision)
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
                                  cache_dir=_cache_dir(), token=token, endpoint=_endpoint(),
                                  local_files_only=_offline(), etag_timeout=use_timeout()))


def open_checkpoint(ref: str | os.PathLike | ckpt.Checkpoint, *, token: str | None = None, verify: bool = True
                    ) -> ckpt.Checkpoint:
    """Return the checkpoint at a local path or ``hf://user/run[@rev][/name]`` (downloaded and verified).

    Raises CheckpointError for a missing, unreadable, newer-format or (with ``verify``) damaged checkpoint,
    HubError when a Hub checkpoint cannot be fetched.
    """
    if is_hub_reference(ref):
        return download_checkpoint(str(ref), token)
    return ckpt.Checkpoint.open(ref, verify=verify)


def resolve_checkpoint(ref: str | os.PathLike, token: str | None = None) -> Path:
    """Return a local checkpoint directory for a local path or a Hub reference (downloaded and verified)."""
    return download_checkpoint(str(ref), token).path if is_hub_reference(ref) else Path(ref)


def download_checkpoint(ref: str, token: str | None = None) -> ckpt.Checkpoint:
    """Return a Hub checkpoint (the newest one when no name is given), downloaded into the HF cache with its
    history chunks and the run's corpus, and verified.

    Raises HubError for Hub problems, CheckpointError for a checkpoint failing its checksums.
    """
    reference = parse_reference(str(ref))
    try:
        name = reference.name or _newest_name(reference, token)
        if not _offline():
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
    if _offline():
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


# ---------------------------------------------------------------------------- writing


def push(checkpoint: str | Path, repo_id: str, token: str | None = None, private: bool = True,
         corpus_root: str | Path | None = None, push_corpus: bool = True) -> str:
    """Upload one checkpoint (plus root files, index and model card) in one commit; return the commit id.

    The repo is created (private by default) when missing. Raises HubError or CheckpointError.
    """
    check_repo_id(repo_id)
    opened = ckpt.Checkpoint.open(Path(checkpoint))
    checkpoint, state = opened.path, opened.state
    name = checkpoint.name if names.NAME_PATTERN.match(checkpoint.name) else state["name"]
    corpus_file = containment.corpus_file(opened, Path(corpus_root)) if push_corpus and corpus_root else None

    def add(files: set[str], index: dict[str, Any]) -> list:
        index[name] = _index_entry(checkpoint, state)
        operations = [CommitOperationAdd(f"{CHECKPOINTS}/{name}/{f.name}", str(f))
                      for f in sorted(checkpoint.iterdir()) if f.is_file()]
        operations += [CommitOperationAdd(f"{CHECKPOINTS}/{CHUNK_DIR}/{chunk.name}", str(chunk))
                       for chunk in containment.history_files(opened)
                       if f"{CHECKPOINTS}/{CHUNK_DIR}/{chunk.name}" not in files]
        newest = max(index, key=lambda n: (index[n].get("timestamp") or "", index[n].get("iteration") or 0))
        if newest == name:
            operations += [CommitOperationAdd(f.name, str(f)) for f in sorted(checkpoint.iterdir())
                           if f.name in ROOT_FILES]
            operations.append(CommitOperationAdd(CHART, chart_svg(opened.history()).encode()))
            operations.append(CommitOperationAdd("README.md", str(model_card(repo_id, name, state, CHART)).encode()))
        operations += [CommitOperationAdd(f"{runs.LOG_DIR}/{log.name}", str(log)) for log in _logs(checkpoint)]
        corpus = state.get("corpus", {}).get("file")
        if corpus_file is not None and corpus not in files:
            operations.append(CommitOperationAdd(corpus, str(corpus_file)))
        return operations

    hf = api(token)
    try:
        hf.create_repo(repo_id, private=private, exist_ok=True)
    except HUB_EXCEPTIONS as exc:
        raise hub_error(exc, repo_id, token) from exc
    return _change_index(hf, repo_id, token, add, f"Add checkpoint {name}")


def delete_remote(repo_id: str, names: list[str], token: str | None = None) -> str | None:
    """Delete checkpoints from a Hub repo (and from its index) in one commit; return the commit id."""
    if not names:
        return None

    def delete(files: set[str], index: dict[str, Any]) -> list:
        for name in names:
            index.pop(name, None)
        return [CommitOperationDelete(f"{CHECKPOINTS}/{name}/") for name in names]

    return _change_index(api(token), check_repo_id(repo_id), token, delete, f"Delete {', '.join(names)}")


def _change_index(hf: HfApi, repo_id: str, token: str | None, change, message: str) -> str:
    """Commit ``change(files, index)``'s operations and the index it changed on top of the repo's head; return the
    commit id. When another pusher committed in between (HTTP 412), the change is made again on the new head."""
    try:
        for _ in range(CONFLICT_ATTEMPTS):
            head = hf.repo_info(repo_id, timeout=request_timeout()).sha
            files = set(hf.list_repo_files(repo_id, revision=head))
            index = _read_index(hf, repo_id, head) if INDEX in files else {}
            operations = change(files, index)
            operations.append(CommitOperationAdd(INDEX, json.dumps(index, indent=1, sort_keys=True).encode()))
            try:
                return hf.create_commit(repo_id, operations, commit_message=message, parent_commit=head).oid
            except HfHubHTTPError as exc:
                if exc.response is None or exc.response.status_code != HEAD_CHANGED:
                    raise
                log.info("%s changed while committing %r; committing again on its new head", repo_id, message)
    except HUB_EXCEPTIONS as exc:
        raise hub_error(exc, repo_id, token) from exc
    raise HubError(f"{repo_id!r} changed {CONFLICT_ATTEMPTS} times while pushing to it; try again.")


def _index_entry(checkpoint: Path, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "iteration": state.get("iteration"), "max_iterations": state.get("max_iterations"),
        "kind": state.get("kind"), "timestamp": state.get("timestamp"), "loss": state.get("loss"),
        "val_loss": state.get("val_loss"), "files": state.get("files", {}),
        "size_bytes": sum(f.stat().st_size for f in checkpoint.iterdir() if f.is_file()),
    }


def _logs(checkpoint: Path) -> list[Path]:
    """The run's TensorBoard event files beside a checkpoint (``<run>/runs/``), pushed with it."""
    logs = checkpoint.parent / runs.LOG_DIR
    return sorted(p for p in logs.iterdir() if p.is_file()) if logs.is_dir() else []


def staging_copy(checkpoint: Path) -> Path:
    """Hard-link a checkpoint and its history chunks into a hidden sibling, so that local rotation cannot delete
    them mid-upload; return the staged checkpoint (``<staging>/<name>``, chunks in ``<staging>/history``).

    A symbolic link is staged as the link itself (never what it points to), so the push refuses it."""
    opened = ckpt.Checkpoint.open(checkpoint, verify=False)
    staging = storage.hidden_sibling(checkpoint.parent, storage.STAGING_PREFIX, checkpoint.name)
    sources = [*(p for p in checkpoint.iterdir() if p.is_file()), *containment.history_files(opened)]
    for source in sources:
        target = staging / (checkpoint.name if source.parent == checkpoint else CHUNK_DIR) / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target, follow_symlinks=False)
        except OSError:
            shutil.copy2(source, target, follow_symlinks=False)
    for log in _logs(checkpoint):  # copied as they are now: the writer keeps appending to them
        (staging / runs.LOG_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copy2(log, staging / runs.LOG_DIR / log.name, follow_symlinks=False)
    return staging / checkpoint.name
