"""A reward that scores text: how much better a smoothed n-gram model of the training corpus predicts the
continuation (given the prompt's last tokens as context) than the same model of the corpus with its words in a
random order, with penalties for repeats and greedy chains.

Per continuation token the gain is ``log P_ngram(token | context) - log P_bag(token | context)`` (both interpolated
absolute discounting, Ney's discounts per order; the bag model is counted on the word-shuffled corpus, so it knows
the words, their spelling in tokens and their frequencies, but not their order). Real text gains (its word order
is the corpus'); shuffled text and salads of frequent or of rare words do not (about 0 or below); random tokens
lose. Tokens that repeat an n-gram already seen in the prompt tail or the continuation count ``-repeat_penalty``
instead of their gain, and a continuation whose token pairs are far more predictable than the corpus' own (a
greedy chain) loses the excess. The mean is divided by the corpus' own gain (leave-one-out, as if each corpus
token were unseen): the corpus' text scores about 1, new text of its kind less (0.2 to 0.8 in the probes), random
tokens below 0 (not clamped: in a group of poor samples the least poor still stands out). A continuation shorter
than ``max_new_tokens`` gets that fraction of its score.

Not a grounded signal: training text the model memorised scores above new text, since the counts were taken on it
(tests/test_reward_probes.py asserts this); the ``chrf`` reward is grounded in each prompt's real continuation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

KEY_LIMIT = 2**62  # n-gram keys are base-vocab integers: order is capped so that vocab**order stays below this
CALIBRATION_POSITIONS = 4_000  # corpus positions scored leave-one-out to find the reward's scale
CHUNK_CELLS = 2**22  # (tokens x vocab) probabilities held at once
TYPICAL_MARGIN = 0.5  # nats of bigram predictability above the corpus' own that a continuation may have unpenalised


@dataclass
class _Order:
    """The n-grams of one order (n >= 2) as sorted base-vocab keys with their counts, and its discount."""

    keys: torch.Tensor
    counts: torch.Tensor
    discount: float

    @classmethod
    def count(cls, ids: torch.Tensor, n: int, vocab: int) -> _Order:
        """Count every n-gram of the 1-D ``ids``; the discount is Ney's estimate n1 / (n1 + 2 n2)."""
        keys, counts = torch.unique(_keys(ids.unfold(0, n, 1), vocab), return_counts=True)
        once, twice = int((counts == 1).sum()), int((counts == 2).sum())
        discount = once / (once + 2 * twice) if once else 0.5
        return cls(keys, counts, min(max(discount, 0.1), 0.9))

    def dense(self, context: torch.Tensor, vocab: int) -> torch.Tensor:
        """Return the (rows, vocab) counts of each row's context followed by every token (0 for no context)."""
        valid = (context >= 0).all(dim=1)
        base = _keys(context.clamp(min=0), vocab) * vocab
        low = torch.searchsorted(self.keys, base)
        lengths = torch.where(valid, torch.searchsorted(self.keys, base + vocab) - low, torch.zeros_like(low))
        rows = torch.repeat_interleave(torch.arange(context.shape[0]), lengths)
        starts = torch.cumsum(lengths, 0) - lengths
        index = low[rows] + torch.arange(rows.numel()) - starts[rows]
        out = torch.zeros(context.shape[0], vocab)
        out[rows, self.keys[index] % vocab] = self.counts[index].float()
        return out


@dataclass
class _Model:
    """An interpolated absolute-discounting n-gram model: add-one unigram counts and the counts of each order."""

    unigram_counts: torch.Tensor
    orders: list[_Order]

    @classmethod
    def count(cls, ids: torch.Tensor, order: int, vocab: int) -> _Model:
        orders = [_Order.count(ids, n, vocab) for n in range(2, order + 1)]
        return cls(torch.bincount(ids, minlength=vocab).float(), orders)

    def probabilities(self, history: torch.Tensor, tokens: torch.Tensor, leave_one_out: bool) -> list[torch.Tensor]:
        """Return the (tokens, vocab) next-token distributions of each order (1 to ``order``) given rows of
        ``order - 1`` previous tokens (-1: none); ``leave_one_out`` takes each token's own count away first."""
        rows, vocab = torch.arange(tokens.numel()), self.unigram_counts.numel()
        counts = self.unigram_counts.expand(tokens.numel(), -1)
        if leave_one_out:
            counts = counts.clone()
            counts[rows, tokens] = (counts[rows, tokens] - 1).clamp(min=0)
        probs = [(counts + 1) / (counts.sum(dim=1, keepdim=True) + vocab)]
        for n, order in enumerate(self.orders, start=2):
            counts = order.dense(history[:, history.shape[1] - (n - 1):], vocab)
            if leave_one_out:
                counts[rows, tokens] = (counts[rows, tokens] - 1).clamp(min=0)
            total = counts.sum(dim=1, keepdim=True)
            types = (counts > 0).sum(dim=1, keepdim=True)
            smoothed = (counts - order.discount).clamp(min=0.0) + order.discount * types * probs[-1]
            smoothed = smoothed / total.clamp(min=1)
            probs.append(torch.where(total > 0, smoothed, probs[-1]))
        return probs


def _word_shuffled(ids: torch.Tensor, tokenizer, vocab: int) -> torch.Tensor:
    """Return the corpus with its words in a fixed random order (a word: a token that begins with white space and
    the tokens after it that do not)."""
    starts = torch.zeros(vocab, dtype=torch.bool)
    starts[: len(tokenizer)] = torch.tensor([text[:1].isspace() for text in tokenizer.batch_decode(
        [[i] for i in range(len(tokenizer))])])
    word = torch.cumsum(starts[ids].long(), dim=0)
    rank = torch.randperm(int(word[-1]) + 1 if ids.numel() else 1, generator=torch.Generator().manual_seed(0))
    return ids[torch.argsort(rank[word] * ids.numel() + torch.arange(ids.numel()))]


def _keys(grams: torch.Tensor, vocab: int) -> torch.Tensor:
    """Return one int64 key per row of ``grams`` (the row read as a number in base ``vocab``)."""
    keys = torch.zeros(grams.shape[0], dtype=torch.long)
    for column in range(grams.shape[1]):
        keys = keys * vocab + grams[:, column]
    return keys


class NgramReward:
    """Score continuations by their n-gram gain over a model of the same words in random order, conditioned on the
    prompt.

    ``corpus_ids``: 1-D LongTensor of the training tokens. Options: ``order`` (default 4; lowered when the
    vocabulary is too large for int64 keys), ``repeat_ngram`` (default 4: a token whose n-gram ending at it
    already occurred is a repeat), ``repeat_penalty`` (default 1.0 nats per repeated token), ``typical_weight``
    (default 1.0: weight of the excess bigram predictability, which greedy chains of likely pairs have), ``scale``
    (default: the corpus' own leave-one-out score per token).
    """

    def __init__(self, tokenizer, corpus_ids: torch.Tensor, *, order: int = 4, repeat_ngram: int = 4,
                 repeat_penalty: float = 1.0, typical_weight: float = 1.0, scale: float | None = None) -> None:
        ids = torch.as_tensor(corpus_ids, dtype=torch.long).reshape(-1)
        self.vocab = max(len(tokenizer), int(ids.max()) + 1 if ids.numel() else 1)
        self.order = max(1, min(order, ids.numel(), _max_order(self.vocab)))
        self.repeat_ngram = repeat_ngram
        self.repeat_penalty = repeat_penalty
        self.typical_weight = typical_weight
        self.model = _Model.count(ids, self.order, self.vocab)
        self.bag = _Model.count(_word_shuffled(ids, tokenizer, self.vocab), self.order, self.vocab)
        history, tokens = _corpus_sample(ids, self.order - 1)
        gain, deficit = self.token_measures(history, tokens, leave_one_out=True)
        self.typical_deficit = deficit.mean(dim=0) if tokens.numel() else torch.zeros(deficit.shape[1])
        self.scale = 1.0
        self.scale = max(scale if scale is not None else float(self._raw_score(gain, deficit)), 0.1)

    def __call__(self, prompts: list[str], completions: list[str], *, prompt_ids: list[list[int]],
                 completion_ids: list[list[int]], max_new_tokens: int | None = None, **kwargs) -> list[float]:
        """Return one reward per completion: about 1 for text like the corpus, below 0 for random tokens; one
        shorter than ``max_new_tokens`` gets that fraction of its score (a short piece of text is not text)."""
        rows = [self._rows(prompt, completion) for prompt, completion in zip(prompt_ids, completion_ids)]
        history = torch.tensor([h for row in rows for h in row[0]], dtype=torch.long).reshape(-1, self.order - 1)
        tokens = torch.tensor([t for row in rows for t in row[1]], dtype=torch.long).clamp(0, self.vocab - 1)
        gain, deficit = self.token_measures(history, tokens)
        repeated = torch.tensor([flag for prompt, completion in zip(prompt_ids, completion_ids)
                                 for flag in _repeats(prompt, completion, self.repeat_ngram)], dtype=torch.bool)
        gain = torch.where(repeated, torch.full_like(gain, -self.repeat_penalty), gain)
        scores, start = [], 0
        for history_rows, _ in rows:
            end = start + len(history_rows)
            share = (end - start) / max(end - start, max_new_tokens or 0, 1)
            scores.append(share * float(self._raw_score(gain[start:end], deficit[start:end])) if end > start else 0.0)
            start = end
        return scores

    def token_measures(self, history: torch.Tensor, tokens: torch.Tensor,
                       leave_one_out: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Return per token its gain ``log P_ngram - log P_unigram`` and its deficits ``entropy - surprisal``
        under the model of each order (columns: 1 to ``order``), given rows of ``order - 1`` previous tokens
        (-1: none). ``leave_one_out`` scores corpus positions as if each were unseen."""
        gains, deficits = [], []
        for begin in range(0, tokens.numel(), max(1, CHUNK_CELLS // self.vocab)):
            end = begin + max(1, CHUNK_CELLS // self.vocab)
            gain, deficit = self._measures(history[begin:end], tokens[begin:end], leave_one_out)
            gains.append(gain)
            deficits.append(deficit)
        if not gains:
            return torch.empty(0), torch.empty(0, self.order)
        return torch.cat(gains), torch.cat(deficits)

    def _measures(self, history, tokens, leave_one_out):
        rows = torch.arange(tokens.numel())
        probs = self.model.probabilities(history, tokens, leave_one_out)
        bag = self.bag.probabilities(history, tokens, leave_one_out)[-1]
        deficits = torch.stack([_deficit(prob, rows, tokens) for prob in probs], dim=1)
        return (probs[-1][rows, tokens] / bag[rows, tokens]).log(), deficits

    def _raw_score(self, gain: torch.Tensor, deficit: torch.Tensor) -> torch.Tensor:
        """Mean gain less the weighted excess of the bigram deficit over the corpus' own beyond ``TYPICAL_MARGIN``
        (a greedy chain of likely pairs; real text's excess stays within the margin), over the scale."""
        column = min(1, deficit.shape[1] - 1)
        excess = deficit[:, column].mean() - self.typical_deficit[column] - TYPICAL_MARGIN
        penalty = self.typical_weight * excess.clamp(min=0.0)
        return (gain.mean() - penalty) / self.scale

    def _rows(self, prompt: list[int], completion: list[int]) -> tuple[list[list[int]], list[int]]:
        """Return each completion token's ``order - 1`` previous tokens (prompt tail included, -1 padded)."""
        width = self.order - 1
        sequence = (list(prompt[-width:]) if width else []) + list(completion)
        start = len(sequence) - len(completion)
        history = [[-1] * max(0, width - p) + sequence[max(0, p - width):p] for p in range(start, len(sequence))]
        return history, sequence[start:]


def _deficit(prob: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Return entropy minus surprisal of each row's token: above 0 when it is more predictable than usual."""
    log_prob = prob.log()
    return log_prob[rows, tokens] - (prob * log_prob).sum(dim=1)


def _repeats(prompt: list[int], completion: list[int], n: int) -> list[bool]:
    """Flag each completion token whose n-gram ending at it already occurred in the prompt tail or before."""
    sequence = (list(prompt[-(n - 1):]) if n > 1 else []) + list(completion)
    start = len(sequence) - len(completion)
    seen, flags = set(), []
    for position in range(len(sequence)):
        gram = tuple(sequence[position - n + 1:position + 1]) if position >= n - 1 else None
        if position >= start:
            flags.append(gram is not None and gram in seen)
        if gram is not None:
            seen.add(gram)
    return flags


def _corpus_sample(ids: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return evenly spaced corpus positions as (previous ``width`` tokens, token) for calibration."""
    if ids.numel() <= width:
        return torch.empty(0, width, dtype=torch.long), torch.empty(0, dtype=torch.long)
    step = max(1, (ids.numel() - width) // CALIBRATION_POSITIONS)
    positions = torch.arange(width, ids.numel(), step)
    history = torch.stack([ids[positions - width + i] for i in range(width)], dim=1) if width else \
        torch.empty(positions.numel(), 0, dtype=torch.long)
    return history, ids[positions]


def _max_order(vocab: int) -> int:
    """Return the largest n for which ``vocab**n`` stays below the key limit."""
    order = 1
    while vocab ** (order + 1) < KEY_LIMIT:
        order += 1
    return order
