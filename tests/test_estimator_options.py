"""The estimator options, with TRL's names: ``scale_rewards``, ``loss_type`` and ``rl_norm_rescale`` change the
advantages, the loss and the blend as documented, are checked, recorded in checkpoints and resume exactly."""
from __future__ import annotations

import pytest
import torch
from conftest import FAST
from test_selfplay import fixed_rollout, lm_gradient, prefix_logits

from azr import AZRTrainer, ConfigError, TrainConfig
from azr.checkpoints.checkpoint import Checkpoint
from azr.rl.grpo import blend_rl_gradient, group_advantages, grpo_loss, sampled_log_probs


def test_scale_rewards_divides_by_the_group_std_the_round_std_or_nothing():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.2, 0.8, 0.4, 0.6])
    centred = torch.tensor([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0, -0.3, 0.3, -0.1, 0.1])
    assert group_advantages(rewards, 4, "none").tolist() == pytest.approx(centred.tolist(), abs=1e-6)
    batch = group_advantages(rewards, 4, "batch")
    assert batch.tolist() == pytest.approx((centred / (rewards.std() + 1e-4)).tolist(), abs=1e-6)
    assert torch.equal(group_advantages(rewards, 4, "group"), group_advantages(rewards, 4))
    assert all(torch.equal(group_advantages(rewards, 4, kind)[4:8], torch.zeros(4)) for kind in ("none", "batch"))


def test_dr_grpo_sums_every_token_over_a_constant_instead_of_each_continuations_mean(make_model):
    model = make_model(seed=1)
    mask = torch.tensor([[1.0, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]])
    rollout, advantages = fixed_rollout(mask), torch.tensor([1.2, -0.4, 0.5, -1.3])
    terms = advantages[:, None] * sampled_log_probs(prefix_logits(model, rollout), rollout) * mask
    grpo = grpo_loss(model, rollout, advantages, 0.0, None)[0]
    dr_grpo = grpo_loss(model, rollout, advantages, 0.0, None, loss_type="dr_grpo")[0]
    assert grpo.item() == pytest.approx(-(terms.sum(dim=1) / mask.sum(dim=1)).mean().item(), rel=1e-5)
    assert dr_grpo.item() == pytest.approx(-terms.sum().item() / (4 * 5), rel=1e-5)


def test_without_norm_rescale_the_rl_gradient_is_blended_as_it_is(make_model):
    model, rollout, advantages = make_model(seed=4), fixed_rollout(), torch.tensor([1.0, -1.0, 0.5, -0.5])

    def flat_grad() -> torch.Tensor:
        return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in model.parameters()])

    model.zero_grad(set_to_none=True)
    grpo_loss(model, rollout, advantages, 0.0, None)[0].backward()
    rl_grad = flat_grad()
    lm_grad = lm_gradient(model)
    blend_rl_gradient(model, grpo_loss(model, rollout, advantages, 0.0, None)[0], 0.3, rescale=False)
    assert torch.allclose(flat_grad(), 0.7 * lm_grad + 0.3 * rl_grad, atol=1e-7)


@pytest.mark.parametrize("name, bad", [("scale_rewards", "std"), ("loss_type", "dapo"), ("rl_norm_rescale", 1)])
def test_estimator_options_are_checked_and_an_old_config_gets_todays_estimator(name, bad):
    with pytest.raises(ConfigError, match=name):
        TrainConfig(**{name: bad})
    old = TrainConfig.from_dict({"rl_weight": 0.2})
    assert (old.scale_rewards, old.loss_type, old.rl_norm_rescale) == ("group", "grpo", True)


def test_estimator_options_change_training_and_resume_exactly(texts, tokenizer, make_model, tmp_path):
    options = dict(FAST, self_play_every=2, scale_rewards="batch", loss_type="dr_grpo", rl_norm_rescale=False)
    default = AZRTrainer(make_model(), tokenizer, device="cpu")
    list(default.train(texts, 6, tmp_path / "default", **{**options, "scale_rewards": "group", "loss_type": "grpo",
                                                          "rl_norm_rescale": True}))
    whole = AZRTrainer(make_model(), tokenizer, device="cpu")
    list(whole.train(texts, 6, tmp_path / "whole", **options))
    assert [r["loss"] for r in whole.history][:2] == [r["loss"] for r in default.history][:2]
    assert [r["loss"] for r in whole.history] != [r["loss"] for r in default.history]
    first = AZRTrainer(make_model(), tokenizer, device="cpu")
    for status in first.train(texts, 6, tmp_path / "split", **options):
        if status.iteration == 3 and status.state == "running":
            first.stop_training()
    assert Checkpoint.open(status.checkpoint).train_config.loss_type == "dr_grpo"
    second = AZRTrainer.from_checkpoint(status.checkpoint, device="cpu")
    list(second.train(max_iterations=6, checkpoint_dir=tmp_path / "split"))
    assert [r["loss"] for r in second.history] == [r["loss"] for r in whole.history]
    for name, value in whole.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], value), name
