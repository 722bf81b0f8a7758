"""Hub datasets as a corpus: one split's text column of ``user/name[:config]``, pinned to a commit.

The first load resolves the dataset's revision to a commit sha; the run records it (in ``run.json`` and every
checkpoint's corpus record), so a resume anywhere loads exactly the same data, even after later commits to the
dataset. Loading goes through ``datasets`` (its HF cache, so a cached revision loads offline); ``datasets`` is
imported only when a dataset is used.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from azr.config import DATASET_MAX_MB
from azr.data.corpus import describe
from azr.data.files import StreamedTexts
from azr.errors import DataError
from azr.utils.quiet import progress_bars_off
from azr.utils.units import MIB, mib_text

SOURCE = "hub_dataset"
BATCH_ROWS = 1024  # rows of the Arrow table sliced at a time (zero-copy; each row becomes a string on its own)
SPEC = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?::(?P<config>[\w.-]+))?$")


class HubDataset:
    """A Hub dataset split used as training texts; :meth:`texts` loads it once and pins :attr:`revision`.

    Args:
        repo_id: ``user/name`` of the dataset repo.
        config: the dataset's configuration (subset), if it has several.
        split: the split to train on.
        text_column: the column holding the texts (strings).
        revision: a branch, tag or commit; None for the newest commit of the default branch.
        max_mb: refuse a dataset whose data files are larger than this many megabytes.
    """

    def __init__(self, repo_id: str, config: str | None = None, split: str = "train", text_column: str = "text",
                 revision: str | None = None, max_mb: float = DATASET_MAX_MB) -> None:
        if not SPEC.match(repo_id) or not split or not text_column:
            raise DataError(f"{repo_id!r} does not name a Hub dataset; write user/name (with a split and a column).")
        if not max_mb > 0:
            raise DataError(f"The dataset size cap must be a positive number of megabytes, got {max_mb!r}.")
        self.repo_id, self.config, self.split, self.text_column = repo_id, config, split, text_column
        self.revision, self.max_mb = revision, max_mb
        self._texts: TextColumn | None = None

    @classmethod
    def parse(cls, spec: str, **options: Any) -> HubDataset:
        """Return the dataset ``user/name[:config]`` with the given options; raises DataError for a bad spec."""
        match = SPEC.match(spec.strip())
        if not match:
            raise DataError(f"{spec!r} does not name a Hub dataset; write user/name or user/name:config.")
        return cls(match.group("repo"), match.group("config"), **options)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> HubDataset:
        """Return the dataset a run's corpus record names, at its recorded revision."""
        return cls(record["dataset"], record.get("config"), record["split"], record["text_column"],
                   record["revision"], record.get("max_mb") or DATASET_MAX_MB)

    def __str__(self) -> str:
        return self.repo_id + (f":{self.config}" if self.config else "")

    def record(self) -> dict[str, Any]:
        """Return the run's corpus record: the dataset, split, column, pinned revision and the texts' fingerprint."""
        digest, count = describe(self.texts())
        return {"source": SOURCE, "dataset": self.repo_id, "config": self.config, "split": self.split,
                "text_column": self.text_column, "revision": self.revision, "max_mb": self.max_mb,
                "fingerprint": digest, "num_texts": count}

    def texts(self) -> TextColumn:
        """Return the split's non-blank texts (loaded once, read on each pass); raises DataError naming what is
        wrong."""
        if self._texts is None:
            self._texts = self._load()
        return self._texts

    def _load(self) -> TextColumn:
        from datasets.utils import logging as datasets_logging  # noqa: PLC0415 - heavy: only for a dataset

        with progress_bars_off(datasets_logging):
            return self._prepare()

    def _prepare(self) -> TextColumn:
        import datasets  # noqa: PLC0415
        from datasets.exceptions import DatasetsError  # noqa: PLC0415

        try:
            builder = datasets.load_dataset_builder(self.repo_id, self.config, revision=self.revision)
            if self.revision is not None and builder.hash != self.revision and _is_sha(self.revision):
                raise DataError(f"Dataset {str(self)!r} at revision {self.revision[:12]} is not in the HF cache and "
                                "the Hub is offline; go online once to fetch it.")
            self._check_size(builder)
            builder.download_and_prepare()
            split = builder.as_dataset(split=self.split)
        except (DatasetsError, FileNotFoundError, ConnectionError) as exc:
            raise DataError(f"Cannot load dataset {str(self)!r} ({type(exc).__name__}): check the name, your "
                            "access, and the connection (offline, only a cached revision loads).") from exc
        except ValueError as exc:
            if "split" not in str(exc).lower():
                raise
            raise DataError(f"Dataset {str(self)!r} has no split {self.split!r}; "
                            f"choose one of {', '.join(builder.info.splits or []) or 'its splits'}.") from exc
        self.revision = builder.hash
        return self._column(split)

    def _check_size(self, builder) -> None:
        """Refuse data files larger than the cap before downloading them (known only online)."""
        from huggingface_hub import HfApi  # noqa: PLC0415

        files = [f for split in (builder.config.data_files or {}).values() for f in split]
        prefix = f"hf://datasets/{self.repo_id}@{builder.hash}/"
        paths = [f.removeprefix(prefix) for f in files if f.startswith(prefix)]
        if not paths:
            return
        infos = HfApi().get_paths_info(self.repo_id, paths, revision=builder.hash, repo_type="dataset")
        size = sum(getattr(info, "size", 0) or 0 for info in infos)
        if size > self.max_mb * MIB:
            raise DataError(f"Dataset {str(self)!r} has {mib_text(size)} of data files, over the cap of "
                            f"{self.max_mb:g} MiB; raise the cap (--dataset-max-mb) or pick a smaller dataset.")

    def _column(self, split) -> TextColumn:
        if self.text_column not in split.column_names:
            raise DataError(f"Dataset {str(self)!r} split {self.split!r} has no column {self.text_column!r} "
                            f"(columns: {', '.join(split.column_names)}); name one with --text-column.")
        if getattr(split.features[self.text_column], "dtype", None) not in ("string", "large_string"):
            raise DataError(f"Column {self.text_column!r} of dataset {str(self)!r} does not hold strings; "
                            "name a text column with --text-column.")
        texts = TextColumn(split, self.text_column)
        if not texts.summary()[1]:
            raise DataError(f"Dataset {str(self)!r} split {self.split!r} is empty (no text in column "
                            f"{self.text_column!r}); choose another split.")
        return texts


class TextColumn(StreamedTexts):
    """A split's text column, read from its memory-mapped Arrow table on each pass a row at a time (never held as a
    list of strings, nor a batch of them: a row may be a whole book): its non-blank texts, in order."""

    def __init__(self, split, column: str) -> None:
        self.rows, self.column = split.select_columns([column]).with_format("arrow"), column

    def __iter__(self) -> Iterator[str]:
        for batch in self.rows.iter(batch_size=BATCH_ROWS):
            for cell in batch.column(self.column):
                text = cell.as_py()
                if text is not None and text.strip():
                    yield text


def _is_sha(revision: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{40}", revision))
