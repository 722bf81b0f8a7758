"""The data path: tokenising a corpus into the run's token file against ``datasets.map(batched=True)``.

Both contenders tokenise the same generated corpus (:func:`write_corpus`: many .txt, .md and .jsonl files of
paragraphs of the embedded corpus, the test fixtures' texts and the project's docs, in seeded random order) with the
same tokenizer, each in a fresh process (``python -m benchmarks.data azr|datasets ...``) whose last stdout line is a
JSON object of its loading and tokenising times and peak RSS (its own, or with its children's at the same time
where larger: the project tokenises in a child process). The project's side checks the files as a run does
(``TextFiles``), then (timed) reads and fingerprints the texts, reads them again to tokenise them in batches and
writes the token file (a file at a time: the texts are never held whole); the baseline loads the files into a
``datasets`` Arrow table (the text builder, one document per file, and the JSON builder; not timed) and (timed) maps
the tokenizer over it in batches.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from transformers import AutoTokenizer

from azr import TextFiles, default_corpus
from azr.data.corpus import fingerprint
from azr.data.encoder_process import encode
from azr.data.tokens import TokenFile

from .common import TOKENIZER_DIR, Bench, Entry, alternate, progress
from .processes import REPO, TreePeak, peak_rss_mb, run_python

DOCUMENT_CHARS = 4000  # about this many characters per document of a .jsonl file
FILE_SIZE_LOG2 = (14, 22)  # file sizes, drawn log-uniformly between 16 KB and 4 MB
KINDS = ((".txt", 6), (".md", 2), (".jsonl", 2))  # file types and their weights
# Texts per datasets.map batch: it bounds a batch by count only, and 1,024 of the corpus's whole-file documents (up to
# 4 MB each) made a batch of ~250 MB of text whose encodings ran out of 24 GB at 500 MB (BENCHMARKS.md, "Tokenising").
DATASETS_BATCH_TEXTS = 32
SOURCES = ("tests/fixtures/licenses/*", "docs/*.md", "README.md", "BENCHMARKS.md")  # besides the embedded corpus


def run(bench: Bench, sizes_mb: tuple[float, ...]) -> list[Entry]:
    """Alternate the two contenders on a generated corpus of each size; MB/s and peak RSS, each with its ratio."""
    entries = []
    for megabytes in sizes_mb:
        files = write_corpus(bench.directory("data"), megabytes)
        rounds: dict[str, list[float]] = {}

        def measure(kind: str) -> float:
            result = run_python("-m", "benchmarks.data", kind, str(bench.scratch / TOKENIZER_DIR),
                                str(bench.directory(f"data-{kind}")), *map(str, files))
            rounds.setdefault(f"{kind}_rss", []).append(result["maxrss_mb"])
            rounds.setdefault(f"{kind}_load", []).append(result["load_s"])
            return megabytes / result["seconds"]

        progress(f"data: tokenising {megabytes:g} MB in {len(files)} files (the run's token file vs "
                 "datasets.map(batched=True))")
        speed = alternate({"azr_token_file": lambda: measure("azr"), "datasets_map": lambda: measure("datasets")},
                          bench.sizes.data_repeats, warmup=0)
        rss = {"azr_token_file": rounds["azr_rss"], "datasets_map": rounds["datasets_rss"]}
        detail = {"corpus_mb": megabytes, "files": len(files), "load_s": {"azr_token_file": rounds["azr_load"],
                                                                            "datasets_map": rounds["datasets_load"]}}
        entries += [bench.entry(f"data_tokenise_mb_per_s@{megabytes:g}MB", speed, "MB/s", "azr_token_file",
                                "datasets_map", goal=(">=", 0.9), **detail),
                    bench.entry(f"data_peak_rss_mb@{megabytes:g}MB", rss, "MB", "azr_token_file", "datasets_map",
                                **detail)]
        for path in files:  # hundreds of MB: gone before the next size is written
            path.unlink()
    return entries


def paragraphs() -> list[str]:
    """The paragraphs the generated corpora are made of: the embedded corpus', the fixtures' and the docs'."""
    texts = [default_corpus()[0]] + [path.read_text(encoding="utf-8") for pattern in SOURCES
                                     for path in sorted(REPO.glob(pattern)) if path.is_file()]
    return [p.strip() for text in texts for p in text.split("\n\n") if p.strip()]


def write_corpus(directory: Path, megabytes: float, seed: int = 0) -> list[Path]:
    """Write about ``megabytes`` of text as files of 16 KB to 4 MB (.txt and .md: paragraphs; .jsonl: documents
    of paragraphs), each drawn in a seeded random order; return the files in name order."""
    pool, pick = paragraphs(), random.Random(seed)
    written, target, files = 0, int(megabytes * 2**20), []
    while written < target:
        suffix = pick.choices([kind for kind, _ in KINDS], [weight for _, weight in KINDS])[0]
        size = min(int(2 ** pick.uniform(*FILE_SIZE_LOG2)), target - written)
        files.append(directory / f"{len(files):05d}{suffix}")
        written += _write_file(files[-1], max(size, 1), pool, pick)
    return files


def _write_file(path: Path, size: int, pool: list[str], pick: random.Random) -> int:
    """Write about ``size`` characters of paragraphs drawn from ``pool`` to ``path``; return the bytes written."""
    lines, chars = [], 0
    while chars < size:
        document, length = [], 0
        while length < (DOCUMENT_CHARS if path.suffix == ".jsonl" else size):
            document.append(pick.choice(pool))
            length += len(document[-1]) + 2
        lines.append(json.dumps({"text": "\n\n".join(document)}) if path.suffix == ".jsonl" else "\n\n".join(document))
        chars += length
    text = "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


# ---------------------------------------------------------------------------- the child processes


def _azr(files: list[Path], tokenizer, directory: Path) -> tuple[float, float]:
    started = time.perf_counter()
    texts = TextFiles(files)
    loaded = time.perf_counter()
    TokenFile.of(directory, fingerprint(texts), tokenizer).write(encode(texts, tokenizer))
    return loaded - started, time.perf_counter() - loaded


def _datasets(files: list[Path], tokenizer, directory: Path) -> tuple[float, float]:
    import datasets  # noqa: PLC0415 - only the baseline's process needs it

    datasets.disable_progress_bars()
    started = time.perf_counter()
    documents = [str(path) for path in files if path.suffix != ".jsonl"]
    records = [str(path) for path in files if path.suffix == ".jsonl"]
    parts = ([datasets.load_dataset("text", data_files=documents, sample_by="document", split="train",
                                    cache_dir=str(directory))] if documents else []) + \
            ([datasets.load_dataset("json", data_files=records, split="train", cache_dir=str(directory))]
             if records else [])
    table = datasets.concatenate_datasets(parts)
    loaded = time.perf_counter()
    eos = tokenizer.eos_token_id

    def tokenise(batch):
        ids = tokenizer(batch["text"], add_special_tokens=False, return_attention_mask=False)["input_ids"]
        return {"ids": [[*piece, eos] for piece in ids]}

    table.map(tokenise, batched=True, batch_size=DATASETS_BATCH_TEXTS, remove_columns=["text"])
    return loaded - started, time.perf_counter() - loaded


def main(argv: list[str] | None = None) -> None:
    """Run one contender and print its JSON result as the last line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data")
    parser.add_argument("kind", choices=("azr", "datasets"))
    parser.add_argument("tokenizer", type=Path)
    parser.add_argument("directory", type=Path)
    parser.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    with TreePeak() as tree:
        load_s, seconds = (_azr if args.kind == "azr" else _datasets)(args.files, tokenizer, args.directory)
    own = peak_rss_mb()
    print(json.dumps({"load_s": load_s, "seconds": seconds, "maxrss_mb": max(own, tree.peak_mb),
                      "process_maxrss_mb": own, "tree_peak_mb": tree.peak_mb}))


if __name__ == "__main__":
    main()
