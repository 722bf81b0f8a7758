"""Self-play: batched generation of continuations, their rewards, and the REINFORCE loss on the generated tokens."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig

from .config import TrainConfig
from .model import max_length_of
from .reward import ReferenceStats, RewardFn, mean_components, score_tokens

PROMPT_FRACTION = 4  # self-play prompts are a quarter of a window


@dataclass
class Rollout:
    """Generated continuations of a batch of prompts."""

    sequences: torch.Tensor  # (batch, prompt_len + new) prompt followed by generated ids
    prompt_len: int
    mask: torch.Tensor  # (batch, new) 1.0 for generated tokens up to and including the first EOS

    def continuations(self) -> list[list[int]]:
        """Return each sample's generated ids (without padding after EOS)."""
        new = self.sequences[:, self.prompt_len :]
        return [row[: int(m.sum().item())].tolist() for row, m in zip(new, self.mask)]


@torch.no_grad()
def generate(model, prompts: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int,
             eos_token_id: int, pad_token_id: int) -> Rollout:
    """Sample continuations of equal-length ``prompts`` in one batched, KV-cached ``generate`` call."""
    was_training = model.training
    model.eval()
    try:
        config = GenerationConfig(
            do_sample=True, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k or None,
            eos_token_id=eos_token_id, pad_token_id=pad_token_id, use_cache=True,
        )
        attention = torch.ones_like(prompts)
        sequences = model.generate(input_ids=prompts, attention_mask=attention, generation_config=config)
    finally:
        model.train(was_training)
    return Rollout(sequences, prompts.shape[1], _mask_after_eos(sequences[:, prompts.shape[1] :], eos_token_id))


def _mask_after_eos(new_tokens: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1.0 for every token up to and including the first EOS of each row, 0.0 after it."""
    is_eos = (new_tokens == eos_token_id).int()
    eos_before = torch.cumsum(is_eos, dim=1) - is_eos
    return (eos_before == 0).float()


def reinforce_loss(model, rollout: Rollout, rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE with a mean-reward baseline: minimising it raises the log-probability of
    continuations whose reward is above the batch mean and lowers the others."""
    advantages = rewards - rewards.mean()
    logits = model(input_ids=rollout.sequences).logits[:, rollout.prompt_len - 1 : -1]
    targets = rollout.sequences[:, rollout.prompt_len :]
    log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    weighted = advantages.unsqueeze(1) * log_probs * rollout.mask
    return -weighted.sum() / rollout.mask.sum().clamp(min=1.0)


def self_play_round(model, tokenizer, windows: torch.Tensor, stats: ReferenceStats, config: TrainConfig,
                    iteration: int, reward_fn: RewardFn | None = None
                    ) -> tuple[Rollout, torch.Tensor, dict[str, float]]:
    """Generate continuations of prompts cut from training ``windows`` and score them.

    Returns the rollout, one reward per continuation (on the model's device) and the mean reward components
    (empty with a custom ``reward_fn``). Deterministic in (seed, iteration): prompts and sampling use their own
    seeded generators, so resuming replays them exactly and the global RNG is left as it was.
    """
    device = model.device
    prompt_len = max(1, config.seq_len // PROMPT_FRACTION)
    new_tokens = max(1, min(config.gen_max_new_tokens, max_length_of(model) - prompt_len))
    picker = torch.Generator().manual_seed(config.seed * 7_919 + iteration)
    rows = torch.randint(len(windows), (config.self_play_batch,), generator=picker)
    prompts = windows[rows, :prompt_len].to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed * 104_729 + iteration)
        rollout = generate(model, prompts, new_tokens, config.temperature, config.top_k, tokenizer.eos_token_id,
                           tokenizer.pad_token_id)
    continuations = rollout.continuations()
    if reward_fn is not None:
        values, components = [float(v) for v in reward_fn(tokenizer.batch_decode(continuations))], {}
    else:
        scores = [score_tokens(c, stats, new_tokens) for c in continuations]
        values, components = [s["total"] for s in scores], mean_components(scores)
    return rollout, torch.tensor(values, dtype=torch.float32, device=device), components
