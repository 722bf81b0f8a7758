"""Hugging Face Hub, writing: one checkpoint pushed in one commit, and the staged copy a background push reads.

Repo layout: see :mod:`azr.hub.sync`. The index is changed with ``create_commit(parent_commit=…)``: when another
pusher committed in between, the Hub refuses (HTTP 412) and the change is made again on the new head, so two
pushers to one repo never lose an index entry.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from azr.checkpoints import checkpoint as ckpt
from azr.checkpoints import containment, names, runs, storage
from azr.checkpoints.history import CHUNK_DIR
from azr.errors import HubError
from azr.hub.card import chart_svg, model_card
from azr.hub.http import HUB_EXCEPTIONS, api, check_repo_id, hub_error, request_timeout
from azr.hub.sync import CHECKPOINTS, INDEX, read_index

CHART = "training_curves.svg"
ROOT_FILES = ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
              "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "adapter_model.safetensors",
              "adapter_config.json")
CONFLICT_ATTEMPTS = 10  # each refused commit means another pusher's commit went in: progress is certain
HEAD_CHANGED = 412  # the Hub's answer to a commit whose parent_commit is no longer the branch head

log = logging.getLogger(__name__)


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


def _change_index(hf: HfApi, repo_id: str, token: str | None, change, message: str) -> str:
    """Commit ``change(files, index)``'s operations and the index it changed on top of the repo's head; return the
    commit id. When another pusher committed in between (HTTP 412), the change is made again on the new head."""
    try:
        for _ in range(CONFLICT_ATTEMPTS):
            head = hf.repo_info(repo_id, timeout=request_timeout()).sha
            files = set(hf.list_repo_files(repo_id, revision=head))
            index = read_index(hf, repo_id, head) if INDEX in files else {}
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
