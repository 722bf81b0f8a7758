"""Training files read a file at a time on every pass (``TextFiles``): what a run reads, and what it holds."""
from __future__ import annotations

import copy
import json
import os
import re
import sys
import tracemalloc

import pytest
from tokenizers import pre_tokenizers

from azr import AZRTrainer, DataError, ModelConfig, TextFiles, build_model, load_texts, train_tokenizer
from azr.checkpoints.checkpoint import Checkpoint
from azr.data import encoder_process, files, tokens
from azr.data.corpus import fingerprint, save_corpus
from azr.data.files import LongText
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


@pytest.mark.parametrize("layout", ["many files", "one long text file"])
def test_a_run_over_training_files_never_holds_the_corpus(tmp_path, monkeypatch, layout):
    """A run given training files holds a fraction of the texts (held, they are the ``whole``): many files are
    read one at a time, and one long text in slices.

    The tokenizer is trained on the corpus (about five characters a token, as real tokenizers give on their text,
    so that the run's ids are small beside the texts), and the reward functions' corpus sample, a fixed cost of up
    to 32 MiB, is made small; a long text and its slices are scaled down with the corpus."""
    monkeypatch.setattr(session, "REWARD_CORPUS_TOKENS", 4096)
    monkeypatch.setattr(files, "LONG_TEXT_BYTES", 2**20)
    monkeypatch.setattr(files, "READ_BYTES", 2**16)
    monkeypatch.setattr(files, "SLICE_CHARS", 2**16)
    if layout == "many files":
        paths = write_corpus(tmp_path, 24, 100_000)
    else:
        paths = [tmp_path / "long.txt"]
        paths[0].write_text(LINE * (2_400_000 // len(LINE)), encoding="utf-8")
    tokenizer = train_tokenizer([LINE * 4], 1000)
    config = ModelConfig(vocab_size=len(tokenizer), d_model=32, num_layers=1, num_heads=2, d_ff=64, max_seq_len=32)
    whole = held_bytes(load_texts(paths))

    def peak_of_a_run(directory) -> tuple[int, AZRTrainer]:
        trainer = AZRTrainer(build_model(config), tokenizer, device="cpu")
        tracemalloc.start()
        try:
            list(trainer.train(TextFiles(paths), 2, directory, **dict(FAST, self_play_every=0, val_every=0)))
            return tracemalloc.get_traced_memory()[1], trainer
        finally:
            tracemalloc.stop()
    peak_of_a_run(tmp_path / "warm-up")  # first-use imports and caches are not the run's
    peak, trainer = peak_of_a_run(tmp_path / "files")
    assert peak < 0.6 * whole, f"{peak / 2**20:.1f} MiB held training on {whole / 2**20:.1f} MiB of texts"
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


@pytest.fixture
def long_text_file(tmp_path, monkeypatch):
    """A .txt file read as a LongText: over a lowered LONG_TEXT_BYTES, with a BOM, characters of 1 to 4 UTF-8 bytes
    that reads of 777 bytes cut through, and slices of about 1,000 characters."""
    monkeypatch.setattr(files, "LONG_TEXT_BYTES", 10_000)
    monkeypatch.setattr(files, "READ_BYTES", 777)
    monkeypatch.setattr(files, "SLICE_CHARS", 1000)
    text = "".join(f"{n} naïve café — 🌹 {LINE}" + ("  indented\n" if n % 7 else "") for n in range(600))
    path = tmp_path / "long.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    return path, text


def test_a_long_text_file_is_read_in_slices_cut_at_line_starts(long_text_file):
    path, text = long_text_file
    [long] = list(TextFiles(path))
    assert isinstance(long, LongText) and long.size == len(text.encode("utf-8"))
    slices = list(long.slices())
    assert "".join(slices) == text and load_texts(path) == [text]
    assert all(1000 <= len(piece) <= 2000 and piece.endswith("\n") for piece in slices[:-1]) and len(slices) > 20
    assert TextFiles(path).summary() == (fingerprint([text]), 1)


def test_a_long_text_is_tokenised_with_the_ids_of_one_call(long_text_file, tokenizer, monkeypatch):
    """Here and in the tokenising process, slices and pieces cut where the ids do not change; with a tokenizer
    whose ids change at every cut (a prefix space on each piece), the slices are joined again."""
    path, text = long_text_file
    monkeypatch.setattr(tokens, "PIECE_CHARS", 300)
    prefixed = copy.deepcopy(tokenizer)
    prefixed.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    for each in (tokenizer, prefixed):
        whole = [i for i in each([text], add_special_tokens=False)["input_ids"][0]] + [each.eos_token_id]
        assert tokens.encode(TextFiles(path), each).tolist() == whole
        assert encoder_process.encode(TextFiles(path), each).tolist() == whole


@pytest.mark.parametrize("stored", [False, True], ids=["a text file", "a run's stored copy"])
def test_tokenising_a_long_text_holds_a_few_slices_of_it(tmp_path, monkeypatch, stored):
    """From a .txt file, and from the record that a run's stored corpus keeps it in (read when a resume elsewhere
    has no token file). Reads, slices and batches are scaled down with the text (at their real sizes they are a few
    MB of a corpus of hundreds)."""
    monkeypatch.setattr(files, "LONG_TEXT_BYTES", 2**20)
    monkeypatch.setattr(files, "READ_BYTES", 2**16)
    monkeypatch.setattr(files, "SLICE_CHARS", 2**16)
    monkeypatch.setattr(tokens, "BATCH_CHARS", 2**16)
    path = tmp_path / "long.txt"
    path.write_text(LINE * (4_000_000 // len(LINE)), encoding="utf-8")
    if stored:
        path = tmp_path / "run" / save_corpus(TextFiles(path), tmp_path / "run")
    tokenizer = train_tokenizer([LINE * 4], 1000)
    whole = held_bytes(load_texts(path))
    tracemalloc.start()
    try:
        ids = tokens.encode(TextFiles(path), tokenizer)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(ids) > 100_000
    assert peak < whole / 2, f"{peak / 2**20:.1f} MiB held tokenising {whole / 2**20:.1f} MiB of text"


def test_a_long_text_is_stored_as_one_record_written_a_slice_at_a_time(long_text_file, tmp_path):
    path, text = long_text_file
    relative = save_corpus(TextFiles(path), tmp_path / "run")
    assert load_texts(tmp_path / "run" / relative) == [text]


@pytest.mark.parametrize("content, fragment", [
    (b"word " * 3000 + b"caf\xe9" + b" word" * 3000, "not valid UTF-8 text (byte 15003)"),
    (b"word " * 3000 + b"\x00" + b" word" * 3000, "looks like a binary file"),
    (b"\n   \t" * 5000, "contains no text"),
    (b"word " * 3000 + b"\xf0\x9f", "not valid UTF-8 text (byte 15000)"),  # a character cut off at the end
])
def test_a_long_text_files_errors_are_found_on_the_first_pass(tmp_path, monkeypatch, content, fragment):
    monkeypatch.setattr(files, "LONG_TEXT_BYTES", 10_000)
    monkeypatch.setattr(files, "READ_BYTES", 777)
    path = tmp_path / "long.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(fragment)):
        TextFiles(path).summary()


def test_a_stored_long_text_is_read_back_a_slice_at_a_time(long_text_file, tokenizer, tmp_path):
    """A run's stored copy keeps a long text as one .jsonl record; reading it back (a resume elsewhere, without
    the token file) decodes the record a slice at a time, escapes, quotes and backslashes included."""
    path, text = long_text_file
    text = text + 'a "quote", a \\ backslash, a written \\n, \r\n, \u2028, \x07 and \U0001f339\n' * 40
    path.write_text(text, encoding="utf-8")
    stored = tmp_path / "run" / save_corpus(TextFiles(path), tmp_path / "run")
    [record] = list(TextFiles(stored))
    assert isinstance(record, LongText) and record.read() == text and load_texts(stored) == [text]
    assert TextFiles(stored).summary() == (fingerprint([text]), 1)
    whole = [*tokenizer([text], add_special_tokens=False)["input_ids"][0], tokenizer.eos_token_id]
    assert encoder_process.encode(TextFiles(stored), tokenizer).tolist() == whole


def test_a_long_jsonl_line_of_another_shape_is_read_whole(long_text_file, tmp_path):
    path, text = long_text_file
    lines = tmp_path / "rows.jsonl"
    lines.write_text(json.dumps({"id": 1, "text": text}) + "\n" + json.dumps({"text": text, "id": 2}) + "\n"
                     + json.dumps({"text": "short"}) + "\n", encoding="utf-8")
    assert [each if isinstance(each, str) else None for each in TextFiles(lines)] == [text, text, "short"]


def test_a_broken_long_record_is_one_data_error_naming_its_line(long_text_file, tmp_path):
    path, text = long_text_file
    stored = tmp_path / "rows.jsonl"
    escaped = json.dumps({"text": text}, ensure_ascii=False)
    stored.write_text(json.dumps({"text": "short"}) + "\n" + escaped[:5000] + "\\q" + escaped[5000:] + "\n",
                      encoding="utf-8")
    with pytest.raises(DataError, match="rows.jsonl' line 2 is not valid JSON text"):
        TextFiles(stored).summary()
