"""Self-play's estimator (GRPO): group advantages, log-probs under the sampler's distribution, the KL to the
reference, the loss and the blended gradient, each against a hand computation on a tiny model."""
from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from azr import ConfigError, TrainConfig, train_tokenizer
from azr.models.lora import LoraSettings, apply_lora
from azr.rl.grpo import Reference, Rollout, blend_rl_gradient, group_advantages, grpo_loss, sampled_log_probs
from azr.rl.rewards import RewardSet
from azr.rl.selfplay import generate, self_play_round

PROMPT = [17, 42, 8, 99]
CONTINUATIONS = [[120, 33, 250, 7, 64], [5, 211, 76, 150, 1], [120, 33, 9, 9, 9], [44, 2, 2, 2, 2]]


def fixed_rollout(mask: torch.Tensor | None = None, rows: int = 4, temperature: float = 1.0) -> Rollout:
    sequences = torch.tensor([PROMPT + continuation for continuation in CONTINUATIONS[:rows]])
    return Rollout(sequences, len(PROMPT), torch.ones(rows, 5) if mask is None else mask, temperature=temperature)


def prefix_logits(model, rollout: Rollout, tensors=None) -> torch.Tensor:
    """(batch, new, vocab) logits from one forward pass per prefix (no shared computation with the code tested)."""
    if tensors is not None:
        model = type(model)(model.config)
        model.load_state_dict(tensors, strict=False)
    with torch.no_grad():
        return torch.stack([model(input_ids=rollout.sequences[:, :end]).logits[:, -1]
                            for end in range(rollout.prompt_len, rollout.sequences.shape[1])], dim=1)


def test_group_advantages_are_normalised_within_each_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.2, 0.8, 0.4, 0.6])
    # group 1: mean 0.25, sample std sqrt((0.75² + 3·0.25²) / 3) = 0.5; group 2 all equal; group 3: mean 0.5,
    # std sqrt((0.09 + 0.09 + 0.01 + 0.01) / 3)
    std3 = ((0.09 + 0.09 + 0.01 + 0.01) / 3) ** 0.5
    expected = [0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, 0, 0, 0, 0,
                -0.3 / (std3 + 1e-4), 0.3 / (std3 + 1e-4), -0.1 / (std3 + 1e-4), 0.1 / (std3 + 1e-4)]
    assert group_advantages(rewards, 4).tolist() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("value, size", [(0.9, 3), (0.3, 6), (0.1, 7)])
def test_a_group_whose_rewards_agree_has_advantages_of_exactly_zero(value, size):
    """Not the rounding error of its mean over (std + eps), which the blend would scale up to the RL share."""
    rewards = torch.cat([torch.full((size,), value), torch.arange(size, dtype=torch.float32)])
    advantages = group_advantages(rewards, size)
    assert torch.equal(advantages[:size], torch.zeros(size)) and advantages[size:].abs().max() > 0.5


def test_loss_and_kl_match_a_hand_computation(make_model):
    """L = -mean_i (1/|o_i|) sum_t (A_i log pi_T(o_t) - beta KL(pi || pi_ref)_t), KL exact over the vocabulary."""
    model, other = make_model(seed=1), make_model(seed=2)
    mask = torch.tensor([[1.0, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]])
    rollout, beta = fixed_rollout(mask, temperature=0.7), 0.3
    advantages = torch.tensor([1.2, -0.4, 0.5, -1.3])
    reference = Reference()
    reference.refresh(other, iteration=0)

    logits = prefix_logits(model, rollout)
    reference_logits = prefix_logits(model, rollout, reference.tensors)
    expected_loss, expected_kl = 0.0, 0.0
    for i in range(4):
        row_loss, row_kl = 0.0, 0.0
        for t in range(int(mask[i].sum())):
            token = rollout.sequences[i, rollout.prompt_len + t]
            log_pi = torch.log_softmax(logits[i, t] / 0.7, dim=-1)[token]
            p, q = torch.softmax(logits[i, t], dim=-1), torch.softmax(reference_logits[i, t], dim=-1)
            kl = float((p * (p / q).log()).sum())
            row_loss += float(advantages[i] * log_pi) - beta * kl
            row_kl += kl
        expected_loss -= row_loss / mask[i].sum().item() / 4
        expected_kl += row_kl / mask[i].sum().item() / 4

    loss, kl = grpo_loss(model, rollout, advantages, beta, reference)
    assert loss.item() == pytest.approx(expected_loss, rel=1e-4)
    assert kl == pytest.approx(expected_kl, rel=1e-4) and kl > 0
    same = Reference()
    same.refresh(model, iteration=0)
    assert grpo_loss(model, rollout, advantages, beta, same)[1] == pytest.approx(0.0, abs=1e-6)
    assert grpo_loss(model, rollout, advantages, 0.0, reference)[1] is None


@pytest.mark.parametrize("temperature, top_k, top_p", [(0.7, 5, 1.0), (1.3, 0, 0.8), (1.0, 20, 0.9)])
def test_log_probs_equal_the_samplers_distribution(make_model, temperature, top_k, top_p):
    """The sampler's own processed scores (transformers' generate) give the same log-probs as the training pass."""
    model = make_model(seed=3, vocab_size=40)
    prompts = torch.randint(3, 40, (6, 4), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(7)
    rollout = generate(model, prompts, 10, temperature, top_k, eos_token_id=1, pad_token_id=2, top_p=top_p,
                       with_support=True)
    torch.manual_seed(7)
    config = GenerationConfig(do_sample=True, max_new_tokens=10, temperature=temperature, top_k=top_k, top_p=top_p,
                              eos_token_id=1, pad_token_id=2, output_scores=True, return_dict_in_generate=True)
    output = model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), generation_config=config)
    assert torch.equal(output.sequences, rollout.sequences)
    scores = torch.stack(output.scores, dim=1)
    targets = rollout.sequences[:, rollout.prompt_len :]
    sampler = torch.log_softmax(scores, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    logits = model(input_ids=rollout.sequences).logits[:, rollout.prompt_len - 1 : -1]
    trained = sampled_log_probs(logits, rollout)
    live = rollout.mask.bool()
    assert torch.allclose(trained[live], sampler[live], atol=1e-4)
    if top_k or top_p < 1:  # truncation happened, so the full softmax would differ
        full = torch.log_softmax(logits / temperature, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        assert (full[live] < trained[live] - 1e-3).any()


def test_one_step_raises_the_better_and_lowers_the_worse(make_model):
    model = make_model(seed=0)
    rollout = fixed_rollout(rows=2)
    rewards = torch.tensor([2.0, 1.5])  # both positive: only the place in the group counts
    before = torch.log_softmax(prefix_logits(model, rollout), -1).gather(
        -1, rollout.sequences[:, 4:, None]).sum(dim=(1, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    grpo_loss(model, rollout, group_advantages(rewards, 2), 0.0, None)[0].backward()
    optimizer.step()
    after = torch.log_softmax(prefix_logits(model, rollout), -1).gather(
        -1, rollout.sequences[:, 4:, None]).sum(dim=(1, 2))
    assert after[0] > before[0] and after[1] < before[1]


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_the_rl_gradient_is_scaled_to_the_lm_gradient_and_takes_the_share_rl_weight(make_model, weight):
    model = make_model(seed=4)
    rollout = fixed_rollout()
    batch = torch.tensor([PROMPT + CONTINUATIONS[0]])

    def gradients(loss_fn):
        model.zero_grad()
        loss_fn().backward()
        return torch.cat([p.grad.reshape(-1) for p in model.parameters()])

    def lm():
        return torch.nn.functional.cross_entropy(model(input_ids=batch[:, :-1]).logits[0], batch[0, 1:])

    def rl():
        return grpo_loss(model, rollout, torch.tensor([1.0, -1.0, 0.5, -0.5]), 0.0, None)[0]

    lm_grad, rl_grad = gradients(lm), gradients(rl)
    model.zero_grad(set_to_none=True)
    lm().backward()  # the LM gradients, then the RL gradient blended into them
    blend_rl_gradient(model, rl(), weight)
    blended = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    expected = (1 - weight) * lm_grad + weight * lm_grad.norm() / rl_grad.norm() * rl_grad
    assert torch.allclose(blended, expected, atol=1e-6)
    rl_part = blended - (1 - weight) * lm_grad
    assert rl_part.norm().item() == pytest.approx(weight * lm_grad.norm().item(), rel=1e-4, abs=1e-7)


def test_reference_refresh_cadence(make_model):
    reference = Reference()
    assert reference.due(5, every=0)
    reference.refresh(make_model(), 5)
    assert not reference.due(100, every=0)
    assert not reference.due(14, every=10) and reference.due(15, every=10)


@pytest.mark.parametrize("settings, words", [
    (dict(self_play_batch=1, num_generations=2), "multiple of num_generations"),
    (dict(self_play_batch=6, num_generations=4), "multiple of num_generations"),
    (dict(num_generations=1), "at least 2"),
    (dict(top_k=1), "greedily"),
    (dict(top_p=0.0), "top_p"),
    (dict(rewards="no_such_reward"), "Unknown reward"),
    (dict(rl_weight=0.0), "rl_weight 0 .*self_play_every=0"),
])
def test_settings_that_would_silently_disable_rl_are_refused(settings, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**{"self_play_every": 10, **settings})  # self-play is off by default


def test_without_self_play_the_self_play_combinations_are_not_checked():
    TrainConfig(self_play_batch=1, num_generations=2, top_k=1, rl_weight=0.0, self_play_every=0)


def test_a_stored_config_with_rl_weight_0_loads_with_self_play_off():
    """Such a run's self-play never changed its weights; refusing its checkpoints would strand them."""
    config = TrainConfig.from_dict({**TrainConfig().to_dict(), "rl_weight": 0.0, "self_play_every": 10})
    assert (config.self_play_every, config.rl_weight) == (0, 0.0)


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


def test_top_k_zero_and_top_p_one_leave_the_whole_vocabulary_to_sample_from(make_model):
    """0 = no limit: not transformers' default top-50 (the tiny vocabulary has 300 tokens)."""
    model = make_model(seed=5)
    assert model.config.vocab_size > 50
    torch.manual_seed(0)
    rollout = generate(model, torch.randint(3, 200, (4, 4)), 6, 1.0, 0, eos_token_id=1, pad_token_id=2,
                       top_p=1.0, with_support=True)
    live = rollout.mask.bool()
    assert rollout.support[live].all()


@pytest.mark.parametrize("lora", [False, True])
def test_the_models_own_generation_config_does_not_change_what_is_sampled(make_model, lora):
    """A base model's generation_config (repetition penalty, min_p, top_k...) is not applied behind the caller's back,
    with or without LoRA adapters around it: the same seed gives the same tokens and the same support as the same
    weights without it, and the model keeps its own setting."""
    plain, configured = make_model(seed=6), make_model(seed=6)
    configured.generation_config = GenerationConfig(repetition_penalty=3.0, min_p=0.2, top_k=5, top_p=0.5,
                                                    no_repeat_ngram_size=2, suppress_tokens=[7, 8, 9])
    if lora:
        plain, configured = apply_lora(plain, LoraSettings(r=2)), apply_lora(configured, LoraSettings(r=2))
    prompts = torch.randint(3, 200, (4, 4), generator=torch.Generator().manual_seed(1))
    rollouts = []
    for model in (plain, configured):
        torch.manual_seed(3)
        rollouts.append(generate(model, prompts, 12, 0.9, 0, eos_token_id=1, pad_token_id=2, with_support=True))
    assert torch.equal(rollouts[0].sequences, rollouts[1].sequences)
    assert torch.equal(rollouts[0].support, rollouts[1].support) and rollouts[0].support.all()
    assert configured.generation_config.repetition_penalty == 3.0


def lm_gradient(model) -> torch.Tensor:
    """The LM gradient of one fixed window, left in the parameters' ``.grad``; returned flattened."""
    model.zero_grad(set_to_none=True)
    batch = torch.tensor([PROMPT + CONTINUATIONS[0]])
    torch.nn.functional.cross_entropy(model(input_ids=batch[:, :-1]).logits[0], batch[0, 1:]).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone()


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_a_round_without_reward_signal_leaves_the_lm_gradient_as_it_was(make_model, beta):
    """Every group's rewards agree: no advantage, so no RL share (not a damped LM step, nor a KL pull scaled up to
    the share); the KL to the reference is still measured."""
    model, other = make_model(seed=4), make_model(seed=5)
    reference = Reference()
    reference.refresh(other, iteration=0)
    lm_grad = lm_gradient(model)
    advantages = group_advantages(torch.tensor([0.7, 0.7, 0.2, 0.2]), 2)
    rl_loss, kl = grpo_loss(model, fixed_rollout(), advantages, beta, reference)
    blend_rl_gradient(model, rl_loss, 0.4)
    assert torch.equal(torch.cat([p.grad.reshape(-1) for p in model.parameters()]), lm_grad)
    assert (kl is None) == (beta == 0) and (kl is None or kl > 0)


def test_an_rl_gradient_of_zero_leaves_the_lm_gradient_as_it_was(make_model):
    model = make_model(seed=4)
    lm_grad = lm_gradient(model)
    zero_signal = grpo_loss(model, fixed_rollout(), torch.tensor([1.0, -1.0, 0.5, -0.5]), 0.0, None)[0] * 0
    blend_rl_gradient(model, zero_signal, 0.4)
    assert torch.equal(torch.cat([p.grad.reshape(-1) for p in model.parameters()]), lm_grad)


def test_rl_log_probs_and_kl_are_the_sampling_policys_even_with_dropout(make_model):
    """Sampling runs in eval mode, so the loss takes its log-probs and KL there too (dropout off), whatever mode
    the model is in; the mode is left as it was and the loss still has a gradient."""
    model, other = make_model(seed=1, dropout=0.5), make_model(seed=2, dropout=0.5)
    rollout, advantages = fixed_rollout(), torch.tensor([1.2, -0.4, 0.5, -1.3])
    reference = Reference()
    reference.refresh(other, iteration=0)
    model.train()
    assert not torch.equal(model(input_ids=rollout.sequences).logits, model(input_ids=rollout.sequences).logits)
    loss, kl = grpo_loss(model, rollout, advantages, 0.3, reference)
    assert model.training
    model.eval()
    expected_loss, expected_kl = grpo_loss(model, rollout, advantages, 0.3, reference)
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-6) and kl == pytest.approx(expected_kl, rel=1e-6)
    model.train()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_self_play_samples_show_whole_characters_where_a_prompt_cuts_one(make_model):
    """A byte-only tokenizer makes "’" three tokens; the prompts (a quarter of 32-token windows) start and end
    inside one, as prompts cut from training windows do."""
    tokenizer = train_tokenizer(["a’"], 259)
    ids = tokenizer("’a" * 20, add_special_tokens=False)["input_ids"]
    windows = torch.tensor([ids[1:33], ids[5:37]])
    config = TrainConfig(seq_len=32, self_play_batch=4, num_generations=2, gen_max_new_tokens=8)
    zero = RewardSet([("zero", lambda prompts, completions: [0.0] * len(completions), 1.0)])
    play = self_play_round(make_model(vocab_size=len(tokenizer)), tokenizer, windows, zero, config, 3)
    assert [sample["prompt"] for sample in play.samples] == ["a’a"] * len(play.samples)
    assert not any(sample["continuation"].endswith("\ufffd") for sample in play.samples)
