"""Nothing outside a checkpoint is read, zipped, pushed or deleted as its own.

A checkpoint that is a symbolic link, or holds one (its files, the run's ``history/`` or a chunk in it), is refused
with one sentence; the corpus name a checkpoint records must stay inside its run. The one exception are the links
of a Hugging Face cache snapshot to the cached repo's own blobs (see :func:`azr.checkpoints.storage.link_out`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from azr.checkpoints import storage
from azr.checkpoints.history import chunk_path
from azr.errors import CheckpointError

if TYPE_CHECKING:
    from azr.checkpoints.checkpoint import Checkpoint


def check_contained(path: Path, link: Path | None = None) -> None:
    """Raise CheckpointError when the checkpoint directory ``path`` is or holds a symbolic link (or ``link``, one
    found elsewhere, is given)."""
    link = link or (storage.link_out(path) if path.is_dir() or path.is_symlink() else None)
    if link is not None:
        what = "is a symbolic link" if link == path else f"holds a symbolic link ({link.name})"
        raise CheckpointError(f"Checkpoint {str(path)!r} is invalid: it {what}, and nothing outside a checkpoint "
                              "is read or sent; replace the link by a copy of the files.")


def history_files(checkpoint: Checkpoint) -> list[Path]:
    """Return the files of the run's history chunks that ``checkpoint`` uses."""
    return [chunk_path(checkpoint.chunk_dir, digest) for digest in checkpoint.history_chunks]


def check_history(checkpoint: Checkpoint) -> None:
    """Raise CheckpointError when the run's ``history/`` folder or a chunk the checkpoint uses is a link out."""
    links = [path for path in (checkpoint.chunk_dir, *history_files(checkpoint)) if storage.is_link_out(path)]
    if links:
        check_contained(checkpoint.path, links[0])


def corpus_file(checkpoint: Checkpoint, root: Path) -> Path | None:
    """Return the run's stored corpus file under ``root`` (None: none recorded, or not there).

    Raises CheckpointError when the recorded name leads out of ``root`` or through a symbolic link.
    """
    corpus = checkpoint.corpus.get("file")
    try:
        return storage.contained_file(root, corpus) if corpus else None
    except ValueError:
        raise CheckpointError(f"Checkpoint {str(checkpoint.path)!r} is invalid: its corpus {corpus!r} is not a file "
                              "of its run.") from None
