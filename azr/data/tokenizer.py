"""Byte-level BPE tokenizers trained with the `tokenizers` library."""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

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
    texts = [t for t in texts if t]
    if not texts:
        raise DataError("Cannot train a tokenizer on no text; give at least one non-empty text.")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        clean_up_tokenization_spaces=False,
    )
