"""Byte-level BPE tokenizers trained with the `tokenizers` library."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from azr.data.files import LongText
from azr.errors import ConfigError, DataError

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIAL_TOKENS = [BOS, EOS, PAD]  # ids 0, 1, 2, matching build_model's bos/eos/pad ids
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and return it with BOS/EOS/PAD set.

    The result may hold fewer than ``vocab_size`` tokens when the texts are small.
    Raises ConfigError for a vocabulary below the byte alphabet, DataError for no text.
    """
    if not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB:
        raise ConfigError(f"vocab_size must be at least {MIN_VOCAB} for a byte-level BPE, got {vocab_size!r}.")
    read = {"texts": 0}

    def non_empty() -> Iterator[str]:  # read as the trainer goes: training files are never held whole
        for text in texts:
            for piece in text.slices() if isinstance(text, LongText) else (text,):
                if piece:
                    read["texts"] += 1
                    yield piece
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(non_empty(), trainer=trainer)
    if not read["texts"]:
        raise DataError("Cannot train a tokenizer on no text; give at least one non-empty text.")
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        clean_up_tokenization_spaces=False,
    )


REPLACEMENT = "\ufffd"  # what decoding shows for bytes that are not a whole UTF-8 character


def decode_parts(tokenizer, prompt_ids: Sequence[int], continuation_ids: Sequence[int]) -> tuple[str, str]:
    """Return a prompt and its continuation as text, decoded as one sequence, for showing them.

    A byte-level tokenizer may split a character's bytes over several tokens: decoded apart, each part is a
    "\ufffd". Here a character that straddles prompt and continuation shows whole (in the continuation), and the
    bytes of a character cut off at the start of the prompt or the end of the continuation are left out.
    """
    prompt = tokenizer.decode(list(prompt_ids), skip_special_tokens=True)
    whole = tokenizer.decode([*prompt_ids, *continuation_ids], skip_special_tokens=True)
    head = prompt.rstrip(REPLACEMENT)
    if not whole.startswith(head):  # a tokenizer whose decoding depends on what follows: shown apart
        return prompt, tokenizer.decode(list(continuation_ids), skip_special_tokens=True)
    shown, rest = head.lstrip(REPLACEMENT), whole[len(head):].rstrip(REPLACEMENT)
    return shown, rest if shown else rest.lstrip(REPLACEMENT)
