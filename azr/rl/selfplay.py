"""Self-play rollouts: prompts cut from the training windows, ``num_generations`` sampled continuations of each
(a group), their rewards, and a few samples to show. The estimator that learns from them is :mod:`azr.rl.grpo`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from azr.config import TrainConfig
from azr.data.tokenizer import decode_parts
from azr.models.causal_lm import evaluating, max_length_of
from azr.models.generation import exact_generate
from azr.rl.grpo import Rollout
from azr.rl.rewards import RewardSet

PROMPT_FRACTION = 4  # self-play prompts are a quarter of a window
SHOWN_SAMPLES = 3  # samples kept for the status
SHOWN_CHARS = 160  # characters of a shown prompt or continuation
HELD_OUT_PROMPTS = 8  # validation prompts whose self-play reward the status shows
HELD_OUT_SAMPLES = 2  # sampled continuations of each


@torch.no_grad()
def generate(model, prompts: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int,
             eos_token_id: int, pad_token_id: int, top_p: float = 1.0, with_support: bool = False) -> Rollout:
    """Sample continuations of equal-length ``prompts`` in one batched, KV-cached ``generate`` call, under exactly
    these settings (``top_k`` 0 and ``top_p`` 1: no limit; the model's own generation settings are not applied).

    With ``with_support`` the rollout records, per position, which tokens top-k/top-p left to sample from.
    """
    with evaluating(model):
        output = exact_generate(model, prompts, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
                                pad_token_id=pad_token_id, temperature=temperature, top_k=top_k, top_p=top_p,
                                output_scores=with_support)
    sequences = output.sequences
    support = torch.stack([torch.isfinite(s) for s in output.scores], dim=1) if with_support else None
    return Rollout(sequences, prompts.shape[1], _mask_after_eos(sequences[:, prompts.shape[1] :], eos_token_id),
                   support, temperature)


def _mask_after_eos(new_tokens: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1.0 for every token up to and including the first EOS of each row, 0.0 after it."""
    is_eos = (new_tokens == eos_token_id).int()
    eos_before = torch.cumsum(is_eos, dim=1) - is_eos
    return (eos_before == 0).float()


def _through_eos(tokens: torch.Tensor, eos_token_id: int) -> list[list[int]]:
    """Each row's ids up to and including its first EOS."""
    return [row[: int(m.sum())].tolist() for row, m in zip(tokens, _mask_after_eos(tokens, eos_token_id))]


@dataclass
class SelfPlay:
    """One self-play round: the rollout, each continuation's reward, and what the status shows of it."""

    rollout: Rollout
    rewards: torch.Tensor  # (batch,) weighted totals, on the model's device
    by_function: dict[str, float]  # mean reward of each function
    samples: list[dict[str, Any]] = field(default_factory=list)


def self_play_round(model, tokenizer, windows: torch.Tensor, rewards: RewardSet, config: TrainConfig,
                    iteration: int) -> SelfPlay:
    """Generate ``num_generations`` continuations of each of ``self_play_batch / num_generations`` prompts cut
    from training ``windows`` and score them with ``rewards``, which are offered each prompt's real continuation
    (the window's next tokens, as many as are generated, through its first EOS) as ``references``.

    Deterministic in (seed, iteration): prompts and sampling use their own seeded generators, so resuming replays
    them exactly and the global RNG is left as it was.
    """
    picker = torch.Generator().manual_seed(config.seed * 7_919 + iteration)
    rows = torch.randint(len(windows), (config.self_play_batch // config.num_generations,), generator=picker)
    rollout, totals, each, prompt_ids, completion_ids = _play(
        model, tokenizer, windows[rows], rewards, config, config.num_generations, config.seed * 104_729 + iteration,
        with_support=True)
    shown = range(0, len(completion_ids), max(1, len(completion_ids) // SHOWN_SAMPLES))  # one per group first
    samples = [_sample(tokenizer, prompt_ids[i], completion_ids[i], float(totals[i]))
               for i in list(shown)[:SHOWN_SAMPLES]]
    return SelfPlay(rollout, totals.to(model.device), dict(zip(rewards.labels, each.mean(dim=1).tolist())), samples)


def _sample(tokenizer, prompt_ids: list[int], completion_ids: list[int], reward: float) -> dict[str, Any]:
    """What the status shows of one continuation: the ends of its prompt and its start, as whole characters."""
    prompt, continuation = decode_parts(tokenizer, prompt_ids, completion_ids)
    return {"prompt": prompt[-SHOWN_CHARS:], "continuation": continuation[:SHOWN_CHARS], "reward": reward}


def held_out_reward(model, tokenizer, val_windows: torch.Tensor, rewards: RewardSet, config: TrainConfig,
                    iteration: int) -> float | None:
    """The mean reward of sampled continuations (self-play's settings, ``HELD_OUT_SAMPLES`` per prompt) of the
    first ``HELD_OUT_PROMPTS`` validation windows' prompts, scored against their real continuations: what
    self-play does on text it never trains on. None without validation windows.

    Sampling uses its own seeded generator (from seed and iteration), so the run's RNG is left as it was.
    """
    rows = val_windows[:HELD_OUT_PROMPTS]
    if not len(rows):
        return None
    _, totals, *_ = _play(model, tokenizer, rows, rewards, config, HELD_OUT_SAMPLES,
                          config.seed * 15_485_863 + iteration, with_support=False)
    return float(totals.mean())


def _play(model, tokenizer, rows: torch.Tensor, rewards: RewardSet, config: TrainConfig, copies: int, seed: int,
          with_support: bool) -> tuple[Rollout, torch.Tensor, torch.Tensor, list[list[int]], list[list[int]]]:
    """Sample ``copies`` continuations of the prompt of each window of ``rows`` (under the generator seeded with
    ``seed``) and score them; return the rollout, the totals and each function's rewards (on the CPU), the prompts'
    and the continuations' token ids."""
    device = model.device
    prompt_len = max(1, config.seq_len // PROMPT_FRACTION)
    new_tokens = max(1, min(config.gen_max_new_tokens, max_length_of(model) - prompt_len))
    prompts = rows[:, :prompt_len].repeat_interleave(copies, dim=0).to(device)
    real = rows[:, prompt_len : prompt_len + new_tokens].repeat_interleave(copies, dim=0)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        rollout = generate(model, prompts, new_tokens, config.temperature, config.top_k, tokenizer.eos_token_id,
                           tokenizer.pad_token_id, config.top_p, with_support=with_support)
    prompt_ids, completion_ids = prompts.tolist(), rollout.continuations()
    reference_ids = _through_eos(real, tokenizer.eos_token_id)
    prompt_texts, completions = tokenizer.batch_decode(prompt_ids), tokenizer.batch_decode(completion_ids)
    totals, each = rewards.score(prompt_texts, completions, prompt_ids=prompt_ids, completion_ids=completion_ids,
                                 max_new_tokens=new_tokens, references=tokenizer.batch_decode(reference_ids),
                                 reference_ids=reference_ids)
    return rollout, totals, each, prompt_ids, completion_ids
