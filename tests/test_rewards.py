"""Reward functions: the spec text, the built-ins, the call contract, and exact resume with every kind."""
from __future__ import annotations

import pytest
import torch
from conftest import FAST

from azr import AZRTrainer, ConfigError, TrainConfig
from azr.checkpoints.checkpoint import Checkpoint
from azr.data.corpus import TokenWindows
from azr.rl.rewards import RewardSet, build_rewards, builtins, parse_rewards
from azr.rl.selfplay import self_play_round

CORPUS_IDS = torch.arange(3, 50)


def test_spec_names_functions_options_and_weights():
    specs = parse_rewards("ends_sentence(within=8)*2, contains(words=sea|ship, x=1.5), reward_plugins:short_words*0.5")
    assert [(s.target, s.options, s.weight) for s in specs] == [
        ("ends_sentence", {"within": 8}, 2.0), ("contains", {"words": ["sea", "ship"], "x": 1.5}, 1.0),
        ("reward_plugins:short_words", {}, 0.5)]


@pytest.mark.parametrize("text, words", [("", "at least one"), ("nope", "Unknown reward"),
                                         ("contains(words)", "key=value"), ("composite*x", "NAME"),
                                         ("composite*0", "non-zero weight")])
def test_bad_spec_is_one_sentence(text, words):
    with pytest.raises(ConfigError, match=words):
        parse_rewards(text)


@pytest.mark.parametrize("text, words", [("os:system", "standard library"), ("no_such_module:f", "cannot be imported"),
                                         ("ends_sentence(within=0)", "cannot be built"),
                                         ("ends_sentence(size=3)", "cannot be built"),
                                         ("reward_plugins:short_words(x=1)", "takes no options")])
def test_functions_that_cannot_be_built_are_refused(tokenizer, text, words):
    with pytest.raises(ConfigError, match=words):
        build_rewards(text, tokenizer, CORPUS_IDS)


def test_verifiable_builtins(tokenizer):
    completions = ["The sea was calm. Then", "the ship sailed on and on without end", "A ship!"]
    ids = [tokenizer.encode(text) for text in completions]
    stop = next(n for n in range(1, len(ids[0]) + 1) if "." in tokenizer.decode(ids[0][:n]))  # tokens to the "."
    ends = builtins()["ends_sentence"](tokenizer, CORPUS_IDS, within=stop)
    assert ends([""] * 3, completions, completion_ids=ids) == [1.0, 0.0, 0.0]  # "A ship!": under 3 words of its own
    early = builtins()["ends_sentence"](tokenizer, CORPUS_IDS, within=stop - 1)
    assert early([""] * 3, completions)[:2] == [0.0, 0.0]
    contains = builtins()["contains"](tokenizer, CORPUS_IDS, words=["sea", "ship"])
    assert contains([""] * 3, completions) == [0.5, 0.5, 0.5]
    avoids = builtins()["avoids"](tokenizer, CORPUS_IDS, words="ship")
    assert avoids([""] * 3, completions) == [1.0, 0.0, 0.0]


def test_functions_get_the_keyword_arguments_they_accept_and_a_weighted_sum():
    seen = {}

    def two(prompts, completions):
        return [1.0] * len(completions)

    def with_ids(prompts, completions, completion_ids):
        seen["ids"] = completion_ids
        return [float(len(ids)) for ids in completion_ids]

    def anything(prompts, completions, **kwargs):
        seen["kwargs"] = sorted(kwargs)
        return [0.5] * len(completions)

    def legacy(texts):
        return [float(len(t)) for t in texts]

    rewards = RewardSet([("two", two, 2.0), ("ids", with_ids, 1.0), ("any", anything, -1.0), ("legacy", legacy, 0.1)])
    totals, each = rewards.score(["p", "q"], ["ab", "abcd"], prompt_ids=[[1], [2]], completion_ids=[[5], [6, 7]])
    assert seen == {"ids": [[5], [6, 7]], "kwargs": ["completion_ids", "prompt_ids"]}
    assert each.tolist() == [[1.0, 1.0], [1.0, 2.0], [0.5, 0.5], [2.0, 4.0]]
    assert totals.tolist() == pytest.approx([2 + 1 - 0.5 + 0.2, 2 + 2 - 0.5 + 0.4])


def test_a_function_returning_the_wrong_count_is_a_config_error():
    rewards = RewardSet([("short", lambda prompts, completions: [1.0], 1.0)])
    with pytest.raises(ConfigError, match="returned 1 values for 2"):
        rewards.score(["p", "q"], ["a", "b"])


RESUMED = dict(FAST, self_play_every=2, beta=0.1, ref_sync_every=4, save_every=5)
KINDS = ["composite", "ends_sentence(within=4), contains(words=the|and)*0.5, avoids(words=sea)*0.2",
         "reward_plugins:short_words, reward_plugins:echoes_prompt*2", "ngram(order=3)"]


def reference_tensors(path):
    tensors = Checkpoint.open(path).reference_tensors()
    return {k: v.clone() for k, v in tensors.items()}


@pytest.mark.parametrize("rewards", KINDS)
def test_exact_resume_with_every_reward_kind_and_the_reference(texts, tokenizer, make_model, tmp_path, rewards):
    """Stopped at 5 and resumed (naming the rewards again only where they are imported): the same functions,
    reference and numbers.
    Self-play at iterations 1, 3, 5, 7, 9; the reference is taken at 1 and refreshed at 5 (after the resume) and 9."""
    whole = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = list(whole.train(texts, 10, tmp_path / "whole", rewards=rewards, **RESUMED))
    first = AZRTrainer(make_model(), tokenizer, device="cpu")
    for status in first.train(texts, 10, tmp_path / "split", rewards=rewards, **RESUMED):
        if status.iteration == 5 and status.state == "running":
            first.stop_training()
    paused = Checkpoint.open(status.checkpoint)
    assert paused.train_config.rewards == rewards and paused.state["reference_iteration"] == 1
    second = AZRTrainer.from_checkpoint(status.checkpoint, device="cpu")
    imported = ":" in rewards  # a resume imports a user's reward only when the user names it again
    resumed = list(second.train(max_iterations=10, checkpoint_dir=tmp_path / "split",
                                **({"rewards": rewards} if imported else {})))

    assert [r["loss"] for r in second.history] == [r["loss"] for r in whole.history]
    assert [r["reward"] for r in second.history] == [r["reward"] for r in whole.history]
    assert resumed[-1].reward_components == statuses[-1].reward_components
    assert resumed[-1].samples == statuses[-1].samples and resumed[-1].kl == statuses[-1].kl
    assert set(resumed[-1].reward_components) == {spec.target for spec in parse_rewards(rewards)}
    for name, value in whole.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], value), name
    ends = [Checkpoint.open(s.checkpoint) for s in (statuses[-1], resumed[-1])]
    assert ends[0].state["reference_iteration"] == ends[1].state["reference_iteration"] == 9
    for name, value in reference_tensors(ends[0].path).items():
        assert torch.equal(reference_tensors(ends[1].path)[name], value), name


def test_no_reference_file_without_a_kl_penalty(texts, tokenizer, make_model, tmp_path):
    statuses = list(AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 6, tmp_path, **{**RESUMED,
                                                                                                    "beta": 0.0}))
    checkpoint = Checkpoint.open(statuses[-1].checkpoint)
    assert checkpoint.reference_tensors() is None and statuses[-1].kl is None
    assert statuses[-1].reward_std is not None and len(statuses[-1].samples) == 3


def test_the_cli_has_the_rewards_option_and_checks_it_alone(capsys):
    from azr.cli.main import build_parser

    args = build_parser().parse_args(["train", "--rewards", "ends_sentence(within=8)*2, composite",
                                      "--self-play-batch", "6", "--num-generations", "3"])
    assert args.rewards == "ends_sentence(within=8)*2, composite" and args.self_play_batch == 6
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "--rewards", "nope"])
    assert exit_info.value.code == 2 and "Unknown reward 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("completion", ["Version 2.0 of the work", "you may see www.", "as in e.g. the other one",
                                        "?", ". I be.", ". . . . . .", "!!! ???", "J. Smith wrote it"])
def test_ends_sentence_counts_no_false_or_gamed_sentence_end(tokenizer, completion):
    """Numbers, web addresses and abbreviations do not end a sentence, nor does a mark emitted right after the
    prompt ("there is a?"): the continuation must have its own words before the end."""
    ends = builtins()["ends_sentence"](tokenizer, CORPUS_IDS, within=64)
    assert ends([""], [completion]) == [0.0]


@pytest.mark.parametrize("completion", ["and so the king is dead. Long", "she said, \"Go home now!\" and",
                                        "why should we wait?"])
def test_ends_sentence_counts_real_sentence_ends(tokenizer, completion):
    ends = builtins()["ends_sentence"](tokenizer, CORPUS_IDS, within=64)
    assert ends([""], [completion]) == [1.0]


def test_self_play_offers_each_prompts_real_continuation(texts, tokenizer, make_model):
    """Rewards that ask for ``references``/``reference_ids`` get the window's tokens after the prompt; the chrf
    built-in scores a continuation equal to its reference 1."""
    windows = TokenWindows.from_texts(texts, tokenizer, 32).train
    offered = {}

    def grounded(prompts, completions, prompt_ids, references, reference_ids):
        offered.update(prompt_ids=prompt_ids, references=references, reference_ids=reference_ids)
        return [0.0] * len(completions)

    config = TrainConfig(seq_len=32, self_play_batch=4, num_generations=2, gen_max_new_tokens=8)
    self_play_round(make_model(), tokenizer, windows, RewardSet([("grounded", grounded, 1.0)]), config, 3)
    for prompt, reference, text in zip(offered["prompt_ids"], offered["reference_ids"], offered["references"]):
        assert len(reference) == 8 and text == tokenizer.decode(reference)
        assert any(row[:len(prompt)].tolist() == prompt and row[len(prompt):len(prompt) + 8].tolist() == reference
                   for row in windows)
    chrf = build_rewards("chrf", tokenizer, CORPUS_IDS)
    references = offered["references"][:2]
    totals, _ = chrf.score([""] * 2, [references[0], "zzz"], references=references)
    assert totals[0] == 1.0 and totals[1] < 0.5
    with pytest.raises(ConfigError, match="real continuation"):
        chrf.score([""], ["the sea"])


def test_the_status_shows_self_plays_reward_on_held_out_prompts(texts, tokenizer, make_model, tmp_path):
    """At each validation, with self-play on: the configured reward of sampled continuations of the validation
    windows' prompts against their real continuations, in the history, the status, the CLI line and the app panel;
    nothing with self-play off. A reward that sees only validation prompts proves where they come from."""
    from azr.app.render import render_status
    from azr.cli.terminal import _metrics

    val = TokenWindows.from_texts(texts, tokenizer, 32).val
    val_prompts = {tuple(row[:8].tolist()) for row in val[:8]}
    seen = []

    def is_held_out(prompts, completions, prompt_ids, references):
        seen.append(all(tuple(p) in val_prompts for p in prompt_ids))
        return [0.25 if seen[-1] else 1.0] * len(completions)

    trainer = AZRTrainer(make_model(), tokenizer, device="cpu", reward_fn=is_held_out)
    statuses = list(trainer.train(texts, 10, tmp_path / "on", **{**FAST, "val_every": 5}))
    assert [r.get("heldout_reward") for r in trainer.history] == [None] * 4 + [0.25] + [None] * 4 + [0.25]
    assert statuses[-1].heldout_reward == 0.25 and statuses[-1].reward == 1.0
    assert "held-out 0.250" in _metrics(statuses[-1])
    assert "| 1 | 0.25 |" in render_status({**statuses[-1].as_dict(), "run": "r"})
    off = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = list(off.train(texts, 10, tmp_path / "off", **{**FAST, "val_every": 5, "self_play_every": 0}))
    assert statuses[-1].heldout_reward is None and all(r.get("heldout_reward") is None for r in off.history)
