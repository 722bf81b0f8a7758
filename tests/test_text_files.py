"""Training files read a file at a time on every pass (``TextFiles``): what a run reads, and what it holds."""
from __future__ import annotations

import json
import os
import sys
import tracemalloc

import pytest

from azr import AZRTrainer, DataError, ModelConfig, TextFiles, build_model, load_texts, train_tokenizer
from azr.checkpoints.checkpoint import Checkpoint
from azr.data.corpus import fingerprint
from azr.training import session
from conftest import FAST


LINE = "Thou art more lovely and more temperate 🌹 rough winds do shake the darling buds of May.\n"


def write_corpus(directory, files: int, chars: int) -> list:
    """``files`` files of about ``chars`` characters each (.txt, .md, .jsonl and .csv in turn), every line holding a
    character beyond U+FFFF, so that a text held as a Python string takes four bytes a character."""
    body = LINE * (chars // len(LINE))
    paths = []
    for index in range(files):
        path = directory / f"{index:02d}{('.txt', '.md', '.jsonl', '.csv')[index % 4]}"
        if path.suffix == ".jsonl":
            half = len(body) // 2
            path.write_text("".join(json.dumps({"text": part}) + "\n" for part in (body[:half], body[half:])))
        elif path.suffix == ".csv":
            path.write_text("id,text\n1," + json.dumps(body) + "\n", encoding="utf-8")
        else:
            path.write_text(body, encoding="utf-8")
        paths.append(path)
    return paths


def held_bytes(texts: list[str]) -> int:
    return sum(sys.getsizeof(text) for text in texts)


def test_each_pass_reads_the_texts_a_list_holds(tmp_path):
    paths = write_corpus(tmp_path, 4, 3000)
    (tmp_path / "bom.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "first"}\r\n{"text": "sep \\u2028 kept"}\n')
    files = TextFiles([*paths, tmp_path / "bom.jsonl"])
    first = list(files)
    assert first == list(files) == load_texts([*paths, tmp_path / "bom.jsonl"])
    assert first[-2:] == ["first", "sep \u2028 kept"] and len(first) == 7  # the .jsonl of write_corpus holds two
    assert files.summary() == (fingerprint(first), 7)


def test_an_undecodable_line_is_named_by_its_byte_in_the_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=rf"not valid UTF-8 text \(byte {path.read_bytes().index(0xE9)}\)"):
        list(TextFiles(path))


def test_reading_training_files_holds_one_files_texts_at_a_time(tmp_path):
    paths = write_corpus(tmp_path, 24, 100_000)
    whole = held_bytes(load_texts(paths))
    files = TextFiles(paths)
    tracemalloc.start()
    try:
        files.summary()
        count = sum(1 for _ in files)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 30
    assert peak < whole / 3, f"{peak / 2**20:.1f} MiB held reading {whole / 2**20:.1f} MiB of texts"


def test_a_run_over_training_files_never_holds_the_corpus(tmp_path, monkeypatch):
    """A run given training files holds less than one given the same texts as a list, by about the texts' size.

    The tokenizer is trained on the corpus (about five characters a token, as real tokenizers give on their text,
    so that the run's ids are small beside the texts), and the reward functions' corpus sample, a fixed cost of up
    to 32 MiB, is made small."""
    monkeypatch.setattr(session, "REWARD_CORPUS_TOKENS", 4096)
    paths = write_corpus(tmp_path, 24, 100_000)
    tokenizer = train_tokenizer([LINE * 4], 1000)
    config = ModelConfig(vocab_size=len(tokenizer), d_model=32, num_layers=1, num_heads=2, d_ff=64, max_seq_len=32)
    whole = held_bytes(load_texts(paths))

    def peak_of_a_run(read, directory) -> tuple[int, AZRTrainer]:
        trainer = AZRTrainer(build_model(config), tokenizer, device="cpu")
        tracemalloc.start()
        try:
            list(trainer.train(read(paths), 2, directory, **dict(FAST, self_play_every=0, val_every=0)))
            return tracemalloc.get_traced_memory()[1], trainer
        finally:
            tracemalloc.stop()
    peak_of_a_run(TextFiles, tmp_path / "warm-up")  # first-use imports and caches are not the run's
    files_peak, trainer = peak_of_a_run(TextFiles, tmp_path / "files")
    list_peak, _ = peak_of_a_run(load_texts, tmp_path / "list")
    assert files_peak + 0.8 * whole < list_peak, \
        f"{files_peak / 2**20:.1f} and {list_peak / 2**20:.1f} MiB held, {whole / 2**20:.1f} MiB of texts"
    texts = load_texts(paths)
    corpus = Checkpoint.open(trainer.last_status.checkpoint).corpus
    assert corpus["fingerprint"] == fingerprint(texts) and corpus["num_texts"] == len(texts)
    assert load_texts(tmp_path / "files" / corpus["file"]) == texts  # the stored copy is the same texts


def test_a_file_changed_after_it_was_fingerprinted_is_one_data_error(tmp_path):
    [path] = write_corpus(tmp_path, 1, 3000)
    files = TextFiles(path)
    files.summary()
    path.write_text("Other words entirely.\n", encoding="utf-8")
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1))
    with pytest.raises(DataError, match="changed while the run started"):
        list(files)


def test_a_csv_cell_longer_than_the_csv_modules_default_limit_is_read(tmp_path):
    path = tmp_path / "long.csv"
    text = "word " * 40_000  # 200,000 characters: the csv module refuses a field over 131,072 by default
    path.write_text("id,text\n1," + json.dumps(text) + "\n", encoding="utf-8")
    assert load_texts(path) == [text]
