"""Nothing outside a checkpoint is read, zipped, pushed or deleted as its own.

A checkpoint that is a symbolic link, or holds one (its files, the run's ``history/`` or a chunk in it), is refused
with one sentence; the corpus a checkpoint records must be a file of its run, reached without a symbolic link
(:func:`check_corpus`: opening a checkpoint checks it, so listing, resuming, downloading and pushing refuse such a
checkpoint alike). The one exception are the links of a Hugging Face cache snapshot to the cached repo's own blobs
(see :func:`azr.checkpoints.storage.link_out`).
"""
from __future__ import annotations

import os
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


def corpus_root(checkpoint: Checkpoint) -> Path:
    """Return the folder that the checkpoint's corpus name is relative to: its run directory, or (when the name is
    not there) a Hub snapshot's root."""
    corpus = _corpus_name(checkpoint)
    run_dir = checkpoint.path.parent
    return run_dir if not isinstance(corpus, str) or os.path.lexists(run_dir / corpus) else run_dir.parent


def check_corpus(checkpoint: Checkpoint) -> None:
    """Raise CheckpointError when the corpus the checkpoint records is not a file of its run (a name that leads out
    of it, or a symbolic link); a corpus that is not there is no error (a resume then needs texts)."""
    corpus_file(checkpoint, corpus_root(checkpoint))


def corpus_file(checkpoint: Checkpoint, root: Path) -> Path | None:
    """Return the run's stored corpus file under ``root`` (None: none recorded, or not there).

    Raises CheckpointError when the recorded name leads out of ``root`` or through a symbolic link.
    """
    corpus = _corpus_name(checkpoint)
    try:
        if corpus is not None and not isinstance(corpus, str):
            raise ValueError(f"{corpus!r} is not a file name")
        return storage.contained_file(root, corpus) if corpus else None
    except ValueError:
        raise CheckpointError(f"Checkpoint {str(checkpoint.path)!r} is invalid: its corpus {corpus!r} is not a file "
                              "of its run.") from None


def _corpus_name(checkpoint: Checkpoint) -> object:
    """The corpus file name the checkpoint records (None: none; anything else than a str is refused by the caller)."""
    record = checkpoint.corpus
    return record.get("file") if isinstance(record, dict) else record
