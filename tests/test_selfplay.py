"""Self-play: the REINFORCE update moves probability toward the better continuation; batched generation."""
from __future__ import annotations

import pytest
import torch

from azr.selfplay import Rollout, generate, reinforce_loss

PROMPT = [17, 42, 8, 99]
CONTINUATIONS = [[120, 33, 250, 7, 64], [5, 211, 76, 150, 1]]


def token_log_probs(model, rollout: Rollout) -> torch.Tensor:
    """(batch, new) log-probability of each generated token, from one forward pass per prefix."""
    columns = []
    with torch.no_grad():
        for end in range(rollout.prompt_len, rollout.sequences.shape[1]):
            logits = model(input_ids=rollout.sequences[:, :end]).logits[:, -1]
            columns.append(torch.log_softmax(logits, dim=-1).gather(-1, rollout.sequences[:, end : end + 1]))
    return torch.cat(columns, dim=1)


def fixed_rollout(mask: torch.Tensor | None = None) -> Rollout:
    sequences = torch.tensor([PROMPT + continuation for continuation in CONTINUATIONS])
    return Rollout(sequences, len(PROMPT), torch.ones(2, 5) if mask is None else mask)


@pytest.mark.parametrize("rewards", [[1.0, 0.0], [0.0, 1.0], [2.0, 1.5], [-3.0, -1.0]])
def test_one_step_raises_the_better_and_lowers_the_worse(make_model, rewards):
    """Only the reward relative to the batch mean counts: the worse row falls even with a positive reward."""
    model = make_model(seed=0)
    rollout = fixed_rollout()
    better = max(range(2), key=rewards.__getitem__)
    before = token_log_probs(model, rollout).sum(dim=1)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    reinforce_loss(model, rollout, torch.tensor(rewards)).backward()
    optimizer.step()

    after = token_log_probs(model, rollout).sum(dim=1)
    assert after[better] > before[better]
    assert after[1 - better] < before[1 - better]


def test_loss_is_advantage_weighted_mean_of_token_log_probs(make_model):
    model = make_model(seed=1)
    mask = torch.tensor([[1.0, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    rollout = fixed_rollout(mask)
    rewards = torch.tensor([0.9, 0.2])
    advantages = rewards - rewards.mean()
    expected = -(advantages[:, None] * token_log_probs(model, rollout) * mask).sum() / mask.sum()
    assert reinforce_loss(model, rollout, rewards).item() == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize("training", [True, False])
def test_generate_shapes_mask_and_mode(make_model, training):
    """A vocabulary of 8 makes EOS (id 1) frequent, so some rows end early."""
    eos, pad, new = 1, 2, 12
    model = make_model(seed=0, vocab_size=8)
    model.train(training)
    torch.manual_seed(0)
    prompts = torch.randint(3, 8, (6, 4))
    rollout = generate(model, prompts, max_new_tokens=new, temperature=2.0, top_k=0, eos_token_id=eos,
                       pad_token_id=pad)

    assert model.training is training
    assert rollout.prompt_len == 4
    assert torch.equal(rollout.sequences[:, :4], prompts)
    generated = rollout.sequences[:, 4:]
    assert 1 <= generated.shape[1] <= new
    assert rollout.mask.shape == generated.shape
    ended_early = 0
    for row, mask, continuation in zip(generated.tolist(), rollout.mask.tolist(), rollout.continuations()):
        length = row.index(eos) + 1 if eos in row else len(row)
        assert mask == [1.0] * length + [0.0] * (len(row) - length)
        assert continuation == row[:length]
        assert row[length:] == [pad] * (len(row) - length)
        ended_early += length < len(row)
    assert ended_early  # the mask's zeros were exercised
