"""Loading training files, token windows and the resumable sampler."""
from __future__ import annotations

import pytest
import torch

from azr import DataError, default_corpus, load_texts
from azr.data.corpus import ResumableSampler, TokenWindows, check_texts, fingerprint, save_corpus


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("plain.txt", "To be, or not to be.\nThat is the question.\n", ["To be, or not to be.\nThat is the question.\n"]),
        ("notes.md", "# Title\n\nSome *text*.", ["# Title\n\nSome *text*."]),
        ("rows.jsonl", '{"text": "first", "id": 1}\n\n{"text": "zweite \\u00fc"}\n', ["first", "zweite ü"]),
        ("table.csv", 'id,text\n1,hello\n2,"two\nlines, quoted"\n', ["hello", "two\nlines, quoted"]),
    ],
)
def test_load_texts_reads_each_format(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8", newline="")
    assert load_texts(path) == expected
    assert load_texts([str(path), path]) == expected * 2


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("missing.txt", None, "does not exist"),
        ("folder.txt", "dir", "is a directory"),
        ("image.txt", b"GIF89a\x00\x01\x02", "binary"),
        ("latin1.txt", b"caf\xe9 au lait", "not valid UTF-8"),
        ("paper.pdf", b"plain words", "unsupported type"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": \n', "line 2 is not valid JSON"),
        ("field.jsonl", b'{"text": "ok"}\n{"text": "ok"}\n{"body": "no"}\n', "line 3 has no string field 'text'"),
        ("columns.csv", b"title,body\na,b\n", "no 'text' column"),
        ("empty.txt", b"", "contains no text"),
    ],
)
def test_load_texts_errors_name_the_file(tmp_path, name, content, fragment):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_texts(path)
    message = str(info.value)
    assert str(path) in message
    assert fragment in message


@pytest.mark.parametrize("texts", [[], ["", "  \n"], ["ok", 3]])
def test_check_texts_rejects_unusable_lists(texts):
    with pytest.raises(DataError):
        check_texts(texts)


def test_too_short_corpus_says_how_many_tokens(tokenizer):
    count = len(tokenizer("Hi there", add_special_tokens=False)["input_ids"]) + 1  # + the EOS after the text
    with pytest.raises(DataError, match=rf"has {count} tokens but one training window needs 33"):
        TokenWindows.from_texts(["Hi there"], tokenizer, seq_len=32)


def test_windows_shape_and_90_10_split(texts, tokenizer):
    seq_len = 16
    windows = TokenWindows.from_texts(texts, tokenizer, seq_len)
    ids = [i for piece in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in [*piece, tokenizer.eos_token_id]]
    count = len(ids) // (seq_len + 1)
    everything = torch.tensor(ids[: count * (seq_len + 1)]).view(count, seq_len + 1)
    position = {tuple(row): index for index, row in enumerate(everything.tolist())}
    assert len(position) == count  # every window is distinct, so rows identify positions

    assert windows.num_tokens == len(ids)
    assert windows.train.dtype == windows.val.dtype == torch.long
    assert windows.train.shape[1] == windows.val.shape[1] == seq_len + 1
    assert len(windows.val) == pytest.approx(count / 10, abs=1)
    train = {position[tuple(row)] for row in windows.train[:].tolist()}
    val = {position[tuple(row)] for row in windows.val[:].tolist()}
    assert not train & val
    assert train | val == set(range(count))


def test_sampler_is_deterministic_from_seed():
    assert torch.equal(ResumableSampler(20, seed=3).next_indices(50), ResumableSampler(20, seed=3).next_indices(50))
    assert not torch.equal(ResumableSampler(20, seed=3).next_indices(20), ResumableSampler(20, seed=4).next_indices(20))


def test_sampler_epochs_are_permutations():
    sampler = ResumableSampler(11, seed=0)
    drawn = torch.cat([sampler.next_indices(4) for _ in range(11)])  # 44 samples = 4 epochs, batches straddle them
    epochs = drawn.view(4, 11)
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(11))
    assert len({tuple(epoch.tolist()) for epoch in epochs}) == 4  # each epoch is shuffled anew
    assert sampler.state_dict() == {"epoch": 4, "offset": 0, "seed": 0, "num_samples": 11}


def _draw(sampler: ResumableSampler, batch_size: int, total: int) -> list[int]:
    return [index for _ in range(total // batch_size) for index in sampler.next_indices(batch_size).tolist()]


@pytest.mark.parametrize("first_batches, later_batch", [(0, 6), (1, 6), (4, 6), (3, 3), (5, 12)])
def test_sampler_order_survives_batch_size_change_and_restore(first_batches, later_batch):
    """The index sequence depends only on how many samples were drawn, not on batch sizes or restarts."""
    reference = _draw(ResumableSampler(13, seed=7), 4, 96)
    assert _draw(ResumableSampler(13, seed=7), 6, 96) == reference

    first = ResumableSampler(13, seed=7)
    head = _draw(first, 4, 4 * first_batches)
    state = first.state_dict()
    assert all(type(value) is int for value in state.values())
    restored = ResumableSampler(**state)
    tail = _draw(restored, later_batch, 96 - len(head))
    assert head + tail == reference[: len(head) + len(tail)]
    assert len(head) + len(tail) > 90


def test_random_offset_windows_stay_in_training_tokens_and_resume_exactly(texts, tokenizer):
    """Random-offset samples are contiguous corpus slices that never read a validation window; a sampler
    restored from its position mid-epoch draws the very same batches."""
    seq_len = 16
    windows = TokenWindows.from_texts(texts, tokenizer, seq_len)
    width, count = seq_len + 1, windows.stream.numel() // (seq_len + 1)
    val_positions = {w * width + i for w in range(count) if w % 10 == 9 for i in range(width)}
    sampler = ResumableSampler(len(windows.train), seed=1)
    batches = [windows.draw(sampler, 8) for _ in range(40)]
    stream = windows.stream.tolist()
    slices = {tuple(stream[s:s + width]): s for s in reversed(range(len(stream) - width + 1))}
    starts = [slices[tuple(row)] for batch in batches for row in batch.tolist()]  # each is a corpus slice
    assert not any(start + i in val_positions for start in starts for i in range(width))
    assert sum(start % width != 0 for start in starts) > 0.7 * len(starts)  # most start between window edges
    fixed = ResumableSampler(len(windows.train), seed=1)
    assert torch.equal(windows.draw(fixed, 8, "windows"), windows.train[ResumableSampler(len(windows.train), 1).next_indices(8)])

    first = ResumableSampler(len(windows.train), seed=1)
    [windows.draw(first, 8) for _ in range(5)]
    restored = ResumableSampler(**first.state_dict())
    for batch in batches[5:12]:
        assert torch.equal(windows.draw(restored, 8), batch)


def test_default_corpus_is_tiny_shakespeare():
    corpus = default_corpus()
    assert len(corpus) == 1
    assert len(corpus[0]) > 1_000_000
    assert corpus[0].startswith("First Citizen")


@pytest.mark.parametrize("other", [["abd", "de"], ["ab", "cde"], ["abcde"], ["de", "abc"], ["abc", "de", ""]])
def test_fingerprint_changes_with_text_and_boundaries(other):
    texts = ["abc", "de"]
    assert fingerprint(texts) == fingerprint(list(texts))
    assert fingerprint(other) != fingerprint(texts)


def test_save_corpus_writes_once_and_reads_back(tmp_path):
    texts = ["First line\nsecond \"quoted\" line", "Привет, мир", "separators \u2028 \u2029 \x85 kept", "tab\there"]
    relative = save_corpus(texts, tmp_path)
    assert relative.startswith("corpus/") and relative.endswith(".jsonl")
    assert load_texts(tmp_path / relative) == texts

    (tmp_path / relative).write_text('{"text": "sentinel"}\n', encoding="utf-8")
    assert save_corpus(texts, tmp_path) == relative
    assert load_texts(tmp_path / relative) == ["sentinel"]  # an existing file is not rewritten
    assert save_corpus(["other"], tmp_path) != relative
