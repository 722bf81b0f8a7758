"""The run's token file: tokenised once, reused on resume, keyed by corpus and tokenizer, rebuilt when damaged."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST
from tokenizers import pre_tokenizers

from azr import AZRTrainer, ConfigError, DataError, train_tokenizer
from azr.data import encoder_process, files, tokens
from azr.data.corpus import ResumableSampler, TokenWindows, fingerprint
from azr.data.tokenizer import EOS
from azr.data.tokens import TOKENS_DIR, TokenFile
from azr.training import session


@pytest.fixture
def counted_encode(monkeypatch):
    """Count the runs' tokenisations (the real encoder still does the work)."""
    calls = []

    def encode(texts, tokenizer):
        calls.append(sum(1 for _ in texts))
        return tokens.encode(texts, tokenizer)
    monkeypatch.setattr(session, "encode", encode)
    return calls


def direct_ids(texts, tokenizer) -> list[int]:
    """The ids of one tokenizer call over all ``texts``, each followed by EOS (the path before token files)."""
    return [i for piece in tokenizer(texts, add_special_tokens=False)["input_ids"]
            for i in [*piece, tokenizer.eos_token_id]]


def token_files(run_dir):
    return sorted((run_dir / TOKENS_DIR).glob("*.tokens"))


def test_a_resume_reads_the_token_file_without_tokenising(texts, tokenizer, make_model, tmp_path, counted_encode):
    list(AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 10, tmp_path, **FAST))
    [path] = token_files(tmp_path)
    before = path.stat()
    assert counted_encode == [len(texts)]
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    list(trainer.train(texts, 20, tmp_path, resume_from=tmp_path / "model_iter_10", **FAST))
    assert counted_encode == [len(texts)]  # no second tokenisation
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert trainer.history[-1]["iteration"] == 20


def test_a_damaged_token_file_is_rebuilt_not_trusted(texts, tokenizer, make_model, tmp_path, counted_encode):
    list(AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 10, tmp_path, **FAST))
    [path] = token_files(tmp_path)
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size - 2)
    list(AZRTrainer(make_model(), tokenizer, device="cpu").train(
        texts, 20, tmp_path, resume_from=tmp_path / "model_iter_10", **FAST))
    assert counted_encode == [len(texts), len(texts)]
    assert token_files(tmp_path) == [path] and path.stat().st_size == size


@pytest.mark.parametrize("model_overrides, settings, message", [
    ({}, {"rewards": "azr_no_such_module:reward"}, "cannot be imported"), ({"vocab_size": 8}, {}, "vocab_size")])
def test_a_start_refused_after_tokenising_writes_no_token_file(texts, tokenizer, make_model, tmp_path,
                                                              model_overrides, settings, message):
    with pytest.raises(ConfigError, match=message):
        AZRTrainer(make_model(**model_overrides), tokenizer, device="cpu").train(texts, 10, tmp_path / "run",
                                                                                 **{**FAST, **settings})
    assert not (tmp_path / "run").exists()


def test_the_key_names_the_corpus_and_the_tokenizer(texts, tokenizer, tmp_path):
    same = TokenFile.of(tmp_path, fingerprint(texts), tokenizer)
    assert same.path == TokenFile.of(tmp_path, fingerprint(list(texts)), tokenizer).path
    other_corpus = TokenFile.of(tmp_path, fingerprint(texts[:-1]), tokenizer)
    other_tokenizer = TokenFile.of(tmp_path, fingerprint(texts), train_tokenizer(texts, len(tokenizer) - 20))
    assert len({same.path, other_corpus.path, other_tokenizer.path}) == 3
    same.write(tokens.encode(texts, tokenizer))
    other_corpus.path.write_bytes(same.path.read_bytes())  # a file under another file's name is not read
    assert other_corpus.read() is None and same.read() is not None


@pytest.mark.parametrize("damage", ["truncate", "extend", "magic", "empty"])
def test_a_file_whose_header_or_size_is_wrong_reads_as_missing(texts, tokenizer, tmp_path, damage):
    cache = TokenFile.of(tmp_path, fingerprint(texts), tokenizer)
    cache.write(tokens.encode(texts, tokenizer))
    data = cache.path.read_bytes()
    changed = {"truncate": data[:-1], "extend": data + b"\0\0", "magic": b"X" + data[1:], "empty": b""}[damage]
    cache.path.write_bytes(changed)
    assert cache.read() is None


def test_ids_beyond_uint16_are_stored_as_uint32(tmp_path):
    ids = np.array([0, 70_000, 2**32 - 1, 5], dtype=np.uint32)
    cache = TokenFile(tmp_path, b"k" * 32, np.dtype(np.uint32))
    cache.write(ids)
    assert cache.read().tolist() == ids.tolist()
    assert TokenFile(tmp_path, b"k" * 32, np.dtype(np.uint16)).read() is None


def test_windows_from_the_token_file_equal_a_direct_tokenisation(texts, tokenizer, tmp_path):
    """The file holds exactly the ids the one-call tokenisation gives; its windows and draws are the same."""
    seq_len = 16
    ids = direct_ids(texts, tokenizer)
    cache = TokenFile.of(tmp_path, fingerprint(texts), tokenizer)
    cache.write(tokens.encode(texts, tokenizer))
    mapped = cache.read()
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.uint16
    assert mapped.tolist() == ids
    windows, direct = TokenWindows.from_tokens(mapped, seq_len), TokenWindows.from_texts(texts, tokenizer, seq_len)
    width, count = seq_len + 1, len(ids) // (seq_len + 1)
    cut = torch.tensor(ids[: count * width]).view(count, width)
    assert torch.equal(windows.stream, cut.reshape(-1))
    assert torch.equal(windows.train[:], cut[torch.arange(count) % 10 != 9])
    assert torch.equal(windows.val[:], cut[torch.arange(count) % 10 == 9])
    assert torch.equal(windows.val[:3, :5], cut[torch.arange(count) % 10 == 9][:3, :5])
    for sampling in ("random_offset", "windows"):
        first, second = ResumableSampler(len(windows.train), 2), ResumableSampler(len(direct.train), 2)
        for _ in range(10):
            assert torch.equal(windows.draw(first, 8, sampling), direct.draw(second, 8, sampling))


def test_texts_are_tokenised_in_batches(texts, tokenizer, monkeypatch):
    monkeypatch.setattr(tokens, "BATCH_TEXTS", 2)
    many = [text[i:i + 500] for text in texts for i in range(0, len(text), 500)]
    chunks = list(tokens.encode_chunks(many, tokenizer))
    assert len(chunks) == (len(many) + 1) // 2
    assert np.concatenate(chunks).tolist() == direct_ids(many, tokenizer)


def test_the_batch_encoder_gives_the_ids_of_the_tokenizers_own_call(texts, tokenizer):
    batch = [texts[0][:300] + EOS + texts[1][:300], "plain words"]  # a special token written in the text
    truncating = copy.deepcopy(tokenizer)
    truncating.backend_tokenizer.enable_truncation(8)  # as a tokenizer.json may say; the call ignores it
    for each in (tokenizer, truncating):
        encoded = tokens.batch_encoder(each)(batch)
        assert encoded == each(batch, add_special_tokens=False)["input_ids"]
        assert len(encoded[0]) > 8 and tokenizer.eos_token_id in encoded[0]


@pytest.fixture
def encoded_batches(monkeypatch):
    """Record the texts of every call to the batch encoder (the real encoder still does the work)."""
    calls = []
    real = tokens.batch_encoder

    def recording(tokenizer):
        encode = real(tokenizer)
        return lambda batch: (calls.append(list(batch)), encode(batch))[1]
    monkeypatch.setattr(tokens, "batch_encoder", recording)
    return calls


def test_a_long_text_is_tokenised_in_pieces_with_the_ids_of_one_call(texts, tokenizer, monkeypatch, encoded_batches):
    monkeypatch.setattr(tokens, "PIECE_CHARS", 3000)
    long_text, short = "".join(texts), "A short text."
    ids = tokens.encode([short, long_text, short], tokenizer)
    assert ids.tolist() == direct_ids([short, long_text, short], tokenizer)
    pieces = [text for batch in encoded_batches for text in batch if text != short and len(text) > 2 * 256]
    assert "".join(pieces) == long_text and len(pieces) >= len(long_text) // 3000 - 1  # cut, and nothing lost
    assert all(len(piece) < 2 * 3000 for piece in pieces)


def test_a_tokenizer_that_changes_ids_at_a_cut_tokenises_the_text_whole(texts, tokenizer, monkeypatch,
                                                                        encoded_batches):
    prefixed = copy.deepcopy(tokenizer)  # a prefix space before every piece would change the first ids of a piece
    prefixed.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    monkeypatch.setattr(tokens, "PIECE_CHARS", 3000)
    long_text = "".join(texts)
    assert tokens.encode([long_text], prefixed).tolist() == direct_ids([long_text], prefixed)
    assert [long_text] in encoded_batches


def test_a_resume_of_a_stored_corpus_reads_neither_the_corpus_nor_tokenises(texts, tokenizer, make_model, tmp_path,
                                                                            counted_encode, monkeypatch):
    list(AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 10, tmp_path, **FAST))
    [path] = token_files(tmp_path)
    before = path.stat()
    read = []
    monkeypatch.setattr(session, "TextFiles", lambda paths: read.append(paths))  # reading would fail the resume
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    list(trainer.train(None, 20, tmp_path, resume_from=tmp_path / "model_iter_10", **FAST))
    assert read == [] and counted_encode == [len(texts)]
    assert path.stat().st_mtime_ns == before.st_mtime_ns and trainer.history[-1]["iteration"] == 20


def test_a_resume_of_a_stored_corpus_without_its_token_file_reads_and_checks_the_corpus(texts, tokenizer, make_model,
                                                                                       tmp_path, counted_encode):
    list(AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 10, tmp_path, **FAST))
    [path] = token_files(tmp_path)
    path.unlink()
    list(AZRTrainer(make_model(), tokenizer, device="cpu").train(
        None, 20, tmp_path, resume_from=tmp_path / "model_iter_10", **FAST))
    assert counted_encode == [len(texts), len(texts)] and token_files(tmp_path) == [path]
    [stored] = (tmp_path / "corpus").glob("*.jsonl")
    stored.write_text(stored.read_text().replace("Citizen", "Citoyen"))
    path.unlink()
    with pytest.raises(DataError, match="not the one it was trained on"):
        AZRTrainer(make_model(), tokenizer, device="cpu").train(None, 30, tmp_path,
                                                                resume_from=tmp_path / "model_iter_20", **FAST)


def test_the_rewards_corpus_of_a_large_corpus_is_a_bounded_even_sample(texts, tokenizer):
    windows = TokenWindows.from_texts(texts, tokenizer, 16)
    rows = windows.train[:]
    assert torch.equal(windows.train.flat(10 * len(rows) * 17), rows.reshape(-1))  # within the limit: every row
    sample = windows.train.flat(17 * 10)
    assert torch.equal(sample, rows[torch.arange(10) * len(rows) // 10].reshape(-1))


TOKENISE_IN_A_FRESH_PROCESS = """
import ctypes, gc, json, sys
from azr import default_corpus, train_tokenizer
from azr.training import session

def anon_mb():
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:")) / 1024

texts = default_corpus() * 2
tokenizer = train_tokenizer(texts[:1], 2048)
before = anon_mb()
ids = session.encode(texts, tokenizer)
count = len(ids)
del ids
print(json.dumps({"growth_mb": anon_mb() - before, "tokens": count}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc's malloc_trim")
def test_tokenising_a_runs_corpus_leaves_no_memory_behind_in_the_training_process():
    """The tokenizer's many small allocations (tokens, offsets, per-thread heaps) fragment the heap of the process
    that makes them; a run's corpus is tokenised where that memory goes away with it, so a long-lived process (the
    app, a notebook) is back where it was once the ids are dropped."""
    done = subprocess.run([sys.executable, "-c", TOKENISE_IN_A_FRESH_PROCESS], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[1])
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["tokens"] > 700_000
    assert measured["growth_mb"] < 8, measured  # tokenised here: about 60 MB stays behind


def test_the_tokenising_process_gives_the_ids_of_tokenising_here(texts, tokenizer, monkeypatch):
    monkeypatch.setattr(files, "SLICE_CHARS", 1000)  # texts cross the pipe in many slices
    sample = [texts[0][:5000], "", "naïve café — ünïcode " * 100, texts[1][:300] + EOS + "after", "plain words"]
    ids = encoder_process.encode(sample, tokenizer)
    assert ids.dtype == tokens.token_dtype(tokenizer)
    assert ids.tolist() == tokens.encode(sample, tokenizer).tolist() == direct_ids(sample, tokenizer)


def test_a_failure_while_tokenising_is_one_data_error(texts, tokenizer):
    with pytest.raises(DataError, match=r"^Tokenising the corpus failed: [^\n]+$"):
        encoder_process.encode([texts[0][:100], "a lone surrogate \ud800 cannot be tokenised"], tokenizer)


def test_a_failure_reading_the_texts_is_raised_not_a_shorter_corpus(texts, tokenizer):
    def failing():
        yield texts[0][:100]
        raise OSError("the disk went away")
    with pytest.raises(OSError, match="the disk went away"):
        encoder_process.encode(failing(), tokenizer)
