"""The self-play estimator (GRPO, as in DeepSeekMath and TRL's ``GRPOTrainer``, with TRL's option names):
group-relative advantages, log-probabilities under the distribution that was sampled, a KL penalty to a frozen
reference policy, and the blend of the RL gradient into the step's LM gradient at the share ``rl_weight``.

For each prompt, ``num_generations`` continuations o_i get rewards r_i; the advantage is
A_i = (r_i - mean(r)) / (s + eps) within the group, s the group's std (``scale_rewards="group"``), the whole
round's std ("batch") or 1 ("none"). With ``loss_type="grpo"`` the loss is
L = -mean_i [ (1/|o_i|) sum_t ( A_i log pi(o_it) - beta KL_t ) ]; with "dr_grpo" (Dr. GRPO) the inner 1/|o_i| is
replaced by the constant 1/max_new_tokens, so no length is favoured. log pi is taken under the sampler's own
distribution (temperature applied, renormalised over the tokens top-k/top-p left to sample from) and KL_t is the
exact KL(pi || pi_ref) of the model's untempered next-token distributions at that position.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call

from azr.models.causal_lm import evaluating

ADVANTAGE_EPS = 1e-4  # as TRL: a group whose rewards all agree gets advantages of 0


@dataclass
class Rollout:
    """Generated continuations of a batch of prompts (rows of a group are consecutive)."""

    sequences: torch.Tensor  # (batch, prompt_len + new) prompt followed by generated ids
    prompt_len: int
    mask: torch.Tensor  # (batch, new) 1.0 for generated tokens up to and including the first EOS
    support: torch.Tensor | None = None  # (batch, new, vocab) True for the tokens the sampler could pick
    temperature: float = 1.0

    def continuations(self) -> list[list[int]]:
        """Return each sample's generated ids (without padding after EOS)."""
        new = self.sequences[:, self.prompt_len :]
        return [row[: int(m.sum().item())].tolist() for row, m in zip(new, self.mask)]


def group_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str = "group") -> torch.Tensor:
    """Return (r - group mean) / (std + eps) for rewards whose groups are consecutive runs of ``num_generations``:
    the group's std (``scale_rewards`` "group"), the std of all the rewards ("batch") or no division ("none"); std
    with Bessel's correction, as TRL. Exactly 0 in a group whose rewards all agree (not the rounding error of its
    mean)."""
    groups = rewards.view(-1, num_generations)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale_rewards == "group":
        centred = centred / (groups.std(dim=1, keepdim=True) + ADVANTAGE_EPS)
    elif scale_rewards == "batch":
        centred = centred / (rewards.std() + ADVANTAGE_EPS)
    agree = (groups == groups[:, :1]).all(dim=1, keepdim=True)
    return torch.where(agree, 0.0, centred).reshape(-1)


def _logits(model, rollout: Rollout, tensors: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """(batch, new, vocab) next-token logits at the generated positions, of ``model`` or of ``tensors`` in it."""
    inputs = {"input_ids": rollout.sequences}
    output = model(**inputs) if tensors is None else functional_call(model, tensors, args=(), kwargs=inputs)
    return output.logits[:, rollout.prompt_len - 1 : -1].float()


def sampled_log_probs(logits: torch.Tensor, rollout: Rollout) -> torch.Tensor:
    """(batch, new) log-probability of each generated token under the sampler's distribution: ``logits`` over the
    temperature, renormalised over the tokens the sampler could pick (all of them without a support mask)."""
    scores = logits / rollout.temperature
    if rollout.support is not None:
        allowed = rollout.support | (rollout.mask[..., None] == 0)  # positions after EOS stay finite (masked out)
        scores = scores.masked_fill(~allowed, float("-inf"))
    targets = rollout.sequences[:, rollout.prompt_len :]
    return torch.log_softmax(scores, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def token_kl(logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """(batch, new) exact KL(p || p_ref) of the next-token distributions at each position."""
    log_p, log_ref = torch.log_softmax(logits, dim=-1), torch.log_softmax(reference_logits, dim=-1)
    return (log_p.exp() * (log_p - log_ref)).sum(dim=-1)


def grpo_loss(model, rollout: Rollout, advantages: torch.Tensor, beta: float, reference: Reference | None,
              loss_type: str = "grpo") -> tuple[torch.Tensor | None, float | None]:
    """Return the GRPO loss of ``rollout`` and the mean KL to the reference (None without one or with beta 0);
    ``loss_type`` "grpo" averages each continuation's tokens then the continuations, "dr_grpo" sums every token
    over (continuations x generated length).

    The forward passes run in eval mode, as the sampling did (with dropout the train-mode log-probs would not be
    the sampling policy's). The loss is None when every advantage is 0 (every group's rewards agree): such a round
    has no reward signal, and its KL term alone is not an RL step.
    """
    signal = bool(advantages.any())
    with evaluating(model), torch.set_grad_enabled(signal and torch.is_grad_enabled()):
        logits = _logits(model, rollout)
        per_token = advantages[:, None] * sampled_log_probs(logits, rollout)
        kl_mean = None
        if beta and reference is not None and reference.tensors is not None:
            with torch.no_grad():
                reference_logits = _logits(model, rollout, reference.tensors)
            kl = token_kl(logits, reference_logits)
            per_token = per_token - beta * kl
            kl_mean = float(_sequence_means(kl.detach(), rollout.mask).mean())
    if not signal:
        return None, kl_mean
    if loss_type == "dr_grpo":
        return -(per_token * rollout.mask).sum() / rollout.mask.numel(), kl_mean
    return -_sequence_means(per_token, rollout.mask).mean(), kl_mean


def _sequence_means(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch,) mean of ``values`` over each row's generated tokens."""
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def blend_rl_gradient(model, rl_loss: torch.Tensor | None, rl_weight: float, rescale: bool = True) -> None:
    """Turn the LM gradients in the parameters' ``.grad`` into (1 - w) g_lm + w (|g_lm| / |g_rl|) g_rl: the RL
    gradient is scaled to the LM gradient's norm, so ``rl_weight`` w is the RL share of the step whatever the
    reward's scale; without ``rescale``, (1 - w) g_lm + w g_rl, so a weak RL signal stays weak. Without an RL
    gradient (``rl_loss`` None, or a gradient of zero) the LM gradients stay as they are: there is nothing to
    share the step with."""
    if rl_loss is None:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    rl = torch.autograd.grad(rl_loss, params, allow_unused=True)
    lm = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
    rl = [torch.zeros_like(p) if g is None else g for p, g in zip(params, rl)]
    rl_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in rl]))
    if rl_norm == 0:
        return
    lm_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in lm]))
    scale = rl_weight * lm_norm / rl_norm if rescale else rl_weight
    for p, a, b in zip(params, lm, rl):
        p.grad = (1.0 - rl_weight) * a + scale * b


class Reference:
    """The frozen reference policy: a copy of the model's parameters and the iteration it was taken at."""

    def __init__(self, tensors: dict[str, torch.Tensor] | None = None, iteration: int | None = None) -> None:
        self.tensors, self.iteration = tensors, iteration

    def due(self, iteration: int, every: int) -> bool:
        """True when there is no copy yet, or ``every`` (> 0) iterations have passed since it was taken."""
        return self.tensors is None or (every > 0 and iteration - self.iteration >= every)

    def refresh(self, model, iteration: int) -> None:
        """Copy the model's current parameters."""
        self.tensors = {name: p.detach().clone() for name, p in model.named_parameters()}
        self.iteration = iteration
