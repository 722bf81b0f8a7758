"""The app's checkpoints by name: the runs under one runs root, and the checkpoints of the configured Hub repos.

A local checkpoint is named ``<run>/<checkpoint>`` (``run-20261129-083512/model_paused_120``), a Hub one
``hf://<repo>/<checkpoint>``. Only such names are accepted, never paths, so a request cannot reach outside
the runs root or another Hub repo.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azr.checkpoints import runs
from azr.checkpoints.checkpoint import Checkpoint
from azr.checkpoints.history import History
from azr.checkpoints.info import CheckpointInfo
from azr.checkpoints.names import NAME_PATTERN
from azr.checkpoints.runs import list_checkpoints
from azr.errors import CheckpointError, HubError
from azr.hub import sync as hub

LOCAL_NAME = re.compile(r"^(?P<run>[^/]+)/(?P<checkpoint>[^/]+)$")
EXAMPLE = "run-20261129-083512/model_paused_120"


@dataclass(frozen=True)
class HubSettings:
    """Where checkpoints are pushed and listed. The token is never shown (``repr``) nor stored on disk."""

    repo_id: str = ""
    token: str | None = field(default=None, repr=False)
    private: bool = True
    push_checkpoints: bool = False

    def train_kwargs(self) -> dict[str, Any]:
        """Return the Hub keyword arguments of ``AZRTrainer.train``."""
        return {"hub_repo_id": self.repo_id if self.push_checkpoints and self.repo_id else None,
                "hub_token": self.token, "hub_private": self.private}


class Catalog:
    """Resolves and lists checkpoint names for one runs root and the Hub repos of the settings in use."""

    def __init__(self, root: Path, hub_repo: str = "") -> None:
        self.root = root
        self.hub_repo = hub_repo
        self._hub_listings: dict[str, list[dict[str, Any]]] = {}

    # ------------------------------------------------------------------ names

    def name_of(self, path: str | Path) -> str:
        """Return the listed name of a local checkpoint directory (``<run>/<checkpoint>``)."""
        path = Path(path)
        return f"{path.parent.name}/{path.name}"

    def local_path(self, name: str) -> Path:
        """Return the directory of a local checkpoint name; raises CheckpointError for any other name."""
        name = (name or "").strip()
        match = LOCAL_NAME.match(name)
        if not match or not NAME_PATTERN.match(match["checkpoint"]) or not runs.RUN_NAME.match(match["run"]):
            raise CheckpointError(f"{name!r} is not a listed checkpoint; pick a name from the list "
                                  f"(like {EXAMPLE}), not a path.")
        path = self.root / match["run"] / match["checkpoint"]
        if not path.is_dir():
            raise CheckpointError(f"There is no checkpoint {name!r}; refresh the list and pick a listed one.")
        return path

    def is_hub_name(self, name: str, settings: HubSettings) -> bool:
        """True for ``hf://<repo>/<checkpoint>`` of a configured repo (``AZR_HUB_REPO`` or the settings')."""
        if not (name or "").startswith(hub.SCHEME):
            return False
        try:
            reference = hub.parse_reference(name)
        except HubError:
            return False
        return bool(reference.name) and reference.revision is None and reference.repo_id in self.hub_repos(settings)

    def open(self, name: str, settings: HubSettings | None = None, verify: bool = True) -> Checkpoint:
        """Return the checkpoint of a listed name; a Hub one is downloaded to the HF cache and always verified.

        Raises CheckpointError for a name that is not listed or a damaged checkpoint, HubError for the Hub.
        """
        settings = settings or HubSettings()
        name = (name or "").strip()
        if not name:
            raise CheckpointError("Choose a checkpoint from the list first.")
        if self.is_hub_name(name, settings):
            return hub.open_checkpoint(name, token=settings.token)
        return Checkpoint.open(self.local_path(name), verify=verify)

    def run_directory(self, name: str, checkpoint: Checkpoint) -> Path:
        """Return where a resume of the listed checkpoint ``name`` trains: a local one's own run directory; for a
        Hub one, the local run of the same id, else a new run named after the repo (or a generated name)."""
        if not name.startswith(hub.SCHEME):
            return checkpoint.path.parent
        for directory in runs.list_runs(self.root):
            info = runs.read_run(directory)
            if info is not None and checkpoint.run_id is not None and info.id == checkpoint.run_id:
                return directory
        repo_name = hub.parse_reference(name).repo_id.split("/")[-1]
        if runs.RUN_NAME.match(repo_name) and not (self.root / repo_name).exists():
            return self.root / repo_name
        return self.root / runs.new_run_name(self.root)

    # ------------------------------------------------------------------ listings

    def hub_repos(self, settings: HubSettings) -> set[str]:
        """Return the Hub repos whose checkpoints are listed."""
        return {repo for repo in (self.hub_repo, settings.repo_id) if repo}

    def runs(self) -> list[dict[str, Any]]:
        """Return the runs under the root, newest first: ``{"run", "id", "created", "seed", "base_model",
        "checkpoints"}`` where ``checkpoints`` counts the run's checkpoint directories."""
        entries = []
        for directory in runs.list_runs(self.root):
            info = runs.read_run(directory)
            entries.append({"run": directory.name, "id": info.id if info else None,
                            "created": info.created if info else None, "seed": info.seed if info else None,
                            "base_model": info.base_model if info else None,
                            "checkpoints": len(runs.checkpoint_names(directory))})
        return entries

    def run_history(self, run: str) -> History:
        """Return the history of the run named ``run`` under the root: its newest valid checkpoint's (empty when
        it has none yet). Raises CheckpointError for a name that is not a run there."""
        name = (run or "").strip()
        directory = self.root / name
        if not runs.RUN_NAME.match(name) or not runs.is_run_directory(directory):
            raise CheckpointError(f"There is no run {name!r}; pick one from the runs list.")
        newest = next((c for c in list_checkpoints(directory, verify=False) if c.valid), None)
        return Checkpoint.open(newest.path, verify=False).history() if newest else History()

    def checkpoints(self, settings: HubSettings | None = None, verify: bool = False,
                    refresh_hub: bool = True) -> tuple[list[dict[str, Any]], str | None]:
        """Return ``(checkpoints, warning)``: local and Hub checkpoints, newest first, as JSON-able dicts.

        Each dict is a CheckpointInfo without its path, plus ``source`` ("local" or "hub"), ``run`` (the run
        directory, or the Hub repo) and ``run_id``. A Hub checkpoint is left out when the same checkpoint (name
        and time) is on local disk. With ``refresh_hub`` False the last Hub listing is reused. ``warning``
        says why the Hub could not be listed.
        """
        local = []
        for directory in runs.list_runs(self.root):
            info = runs.read_run(directory)
            local += [_entry(c, "local", self.name_of(c.path), directory.name, info.id if info else None)
                      for c in list_checkpoints(directory, verify)]
        settings = settings or HubSettings()
        warning = None
        for repo in sorted(self.hub_repos(settings)):
            if refresh_hub or repo not in self._hub_listings:
                try:
                    infos = hub.list_checkpoints(f"{hub.SCHEME}{repo}", settings.token)
                except HubError as exc:
                    warning = str(exc)
                    continue
                self._hub_listings[repo] = [_entry(c, "hub", c.path, f"{hub.SCHEME}{repo}", None) for c in infos]
        on_disk = {(e["name"].split("/")[-1], e["timestamp"]) for e in local}
        remote = [e for repo in self.hub_repos(settings) for e in self._hub_listings.get(repo, [])
                  if (e["name"].split("/")[-1], e["timestamp"]) not in on_disk]
        entries = sorted(local + remote, key=lambda e: (e["timestamp"] or "", e["iteration"] or 0,
                                                         e["source"] == "local"), reverse=True)
        return entries, warning


def _entry(info: CheckpointInfo, source: str, name: str, run: str, run_id: str | None) -> dict[str, Any]:
    values = info.as_dict()
    del values["path"]
    values.update(name=name, source=source, run=run, run_id=run_id)
    return values
