"""Byte-level BPE training, special ids, lossless round-trips and save/load."""
from __future__ import annotations

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from azr import ConfigError, DataError, train_tokenizer
from azr.data.tokenizer import decode_parts

SAMPLES = ["Hello world, it's  me.\n\tx", "Привет, мир", "日本語 🎉 naïve café", "  leading and trailing  "]


def test_special_tokens_are_0_1_2(tokenizer):
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (0, 1, 2)


@pytest.mark.parametrize("text", SAMPLES)
def test_decode_encode_round_trip(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


@pytest.mark.parametrize("vocab_size", [300, 5000])
def test_vocabulary_never_exceeds_the_request(texts, vocab_size):
    assert len(train_tokenizer(texts[:1], vocab_size)) <= vocab_size


@pytest.mark.parametrize("vocab_size", [258, 100, 0])
def test_vocab_below_byte_alphabet_is_a_config_error(texts, vocab_size):
    with pytest.raises(ConfigError, match="vocab_size must be at least 259"):
        train_tokenizer(texts, vocab_size)


@pytest.mark.parametrize("empty", [[], ["", ""]])
def test_no_text_is_a_data_error(empty):
    with pytest.raises(DataError):
        train_tokenizer(empty, 300)


def test_save_and_reload_gives_identical_ids(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert (reloaded.bos_token_id, reloaded.eos_token_id, reloaded.pad_token_id) == (0, 1, 2)
    for text in SAMPLES:
        assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
        assert reloaded.decode(tokenizer(text)["input_ids"]) == text


@pytest.fixture(scope="module")
def bytes_only():
    """A tokenizer of the byte alphabet alone: a three-byte character ("’") is three tokens."""
    return train_tokenizer(["x’y"], 259)


def test_a_character_split_between_prompt_and_continuation_shows_whole(bytes_only):
    ids = bytes_only("ab’cd’", add_special_tokens=False)["input_ids"]
    assert len(ids) == 10
    assert decode_parts(bytes_only, ids[:3], ids[3:]) == ("ab", "’cd’")  # the prompt ends inside ’


def test_a_character_cut_off_at_either_end_is_left_out(bytes_only):
    ids = bytes_only("ab’cd’", add_special_tokens=False)["input_ids"]
    assert decode_parts(bytes_only, ids[3:7], ids[7:9]) == ("cd", "")  # starts and ends inside ’
    assert decode_parts(bytes_only, ids[4:5], ids[5:7]) == ("", "cd")  # a prompt of a character's last byte
