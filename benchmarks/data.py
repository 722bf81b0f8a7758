"""The data path: tokenising a corpus into the run's token file against ``datasets.map(batched=True)``.

Both contenders tokenise the same generated corpus (documents of paragraphs of the embedded corpus, written once
as JSON lines) with the same tokenizer, each in a fresh process (``python -m benchmarks.data azr|datasets ...``)
whose last stdout line is a JSON object of its tokenising time and peak RSS. The project's side reads the texts as
a run does (``load_texts``), fingerprints them, tokenises in batches and writes the token file; the baseline loads
the JSON lines into a ``datasets`` Arrow table (not timed) and maps the tokenizer over it in batches.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from transformers import AutoTokenizer

from azr import default_corpus, load_texts
from azr.data.corpus import fingerprint
from azr.data.tokens import BATCH_TEXTS, TokenFile, encode

from .common import TOKENIZER_DIR, Bench, Entry, alternate, progress
from .processes import peak_rss_mb, run_python

DOCUMENT_CHARS = 4000  # about this many characters per generated document


def run(bench: Bench, sizes_mb: tuple[float, ...]) -> list[Entry]:
    """Alternate the two contenders on a generated corpus of each size; MB/s and peak RSS, each with its ratio."""
    entries = []
    for megabytes in sizes_mb:
        path = write_corpus(bench.directory("data") / "corpus.jsonl", megabytes)
        rounds: dict[str, list[float]] = {}

        def measure(kind: str) -> float:
            result = run_python("-m", "benchmarks.data", kind, str(path), str(bench.scratch / TOKENIZER_DIR),
                                str(bench.directory(f"data-{kind}")))
            rounds.setdefault(f"{kind}_rss", []).append(result["maxrss_mb"])
            return megabytes / result["seconds"]

        progress(f"data: tokenising {megabytes:g} MB (the run's token file vs datasets.map(batched=True))")
        speed = alternate({"azr_token_file": lambda: measure("azr"), "datasets_map": lambda: measure("datasets")},
                          bench.sizes.data_repeats, warmup=0)
        rss = {"azr_token_file": rounds["azr_rss"], "datasets_map": rounds["datasets_rss"]}
        entries += [bench.entry(f"data_tokenise_mb_per_s@{megabytes:g}MB", speed, "MB/s", "azr_token_file",
                                "datasets_map", goal=(">=", 0.9), corpus_mb=megabytes),
                    bench.entry(f"data_peak_rss_mb@{megabytes:g}MB", rss, "MB", "azr_token_file", "datasets_map",
                                corpus_mb=megabytes)]
    return entries


def write_corpus(path: Path, megabytes: float) -> Path:
    """Write about ``megabytes`` of documents (paragraphs of the embedded corpus, shuffled) as JSON lines."""
    paragraphs = [p for p in default_corpus()[0].split("\n\n") if p.strip()]
    pick = random.Random(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    written, target = 0, int(megabytes * 2**20)
    with open(path, "w", encoding="utf-8") as handle:
        while written < target:
            document = []
            while sum(map(len, document)) < DOCUMENT_CHARS:
                document.append(pick.choice(paragraphs))
            line = json.dumps({"text": "\n\n".join(document)}) + "\n"
            handle.write(line)
            written += len(line)
    return path


# ---------------------------------------------------------------------------- the child processes


def _azr(corpus: Path, tokenizer, directory: Path) -> float:
    texts = load_texts(corpus)
    started = time.perf_counter()
    TokenFile.of(directory, fingerprint(texts), tokenizer).write(encode(texts, tokenizer))
    return time.perf_counter() - started


def _datasets(corpus: Path, tokenizer, directory: Path) -> float:
    import datasets  # noqa: PLC0415 - only the baseline's process needs it

    datasets.disable_progress_bars()
    table = datasets.load_dataset("json", data_files=str(corpus), split="train", cache_dir=str(directory))
    eos = tokenizer.eos_token_id

    def tokenise(batch):
        ids = tokenizer(batch["text"], add_special_tokens=False, return_attention_mask=False)["input_ids"]
        return {"ids": [[*piece, eos] for piece in ids]}

    started = time.perf_counter()
    table.map(tokenise, batched=True, batch_size=BATCH_TEXTS, remove_columns=["text"])
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    """Run one contender and print its JSON result as the last line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data")
    parser.add_argument("kind", choices=("azr", "datasets"))
    parser.add_argument("corpus", type=Path)
    parser.add_argument("tokenizer", type=Path)
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    seconds = (_azr if args.kind == "azr" else _datasets)(args.corpus, tokenizer, args.directory)
    print(json.dumps({"seconds": seconds, "maxrss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
