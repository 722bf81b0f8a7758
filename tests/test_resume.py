"""Pause and resume: the trainer's promises, each proven on a tiny model."""
from __future__ import annotations

import shutil
import threading

import pytest
import torch
from conftest import FAST

from azr import AZRTrainer, CheckpointError, ConfigError, build_model, list_checkpoints, preset
from azr.checkpoints.checkpoint import Checkpoint
from azr.config import OTHER_MODELS, PRESET_TRAINING
from azr.data.corpus import TokenWindows
from azr.training import session


def losses(history):
    return [record["loss"] for record in history]


def run_to(trainer, texts, target, directory, **kwargs):
    """Drain a run and return its statuses."""
    return list(trainer.train(texts, target, directory, **{**FAST, **kwargs}))


def stop_at(trainer, texts, target, directory, stop_iteration, **kwargs):
    """Run until a status reports ``stop_iteration``, stop there, and return the final status."""
    statuses = []
    for status in trainer.train(texts, target, directory, **{**FAST, **kwargs}):
        statuses.append(status)
        if status.iteration == stop_iteration and status.state == "running":
            trainer.stop_training()
    return statuses[-1]


@pytest.fixture
def reference(texts, tokenizer, make_model, tmp_path_factory):
    """An uninterrupted 40-iteration run: its history and final weights."""
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    run_to(trainer, texts, 40, tmp_path_factory.mktemp("reference"))
    return trainer.history, {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_same_weights(model, weights):
    state = model.state_dict()
    assert state.keys() == weights.keys()
    for name, value in weights.items():
        assert torch.equal(state[name], value), name


@pytest.mark.parametrize("stop_iteration", [5, 25])
def test_stop_and_resume_in_a_fresh_trainer_is_bit_identical(texts, tokenizer, make_model, tmp_path, reference,
                                                             stop_iteration):
    history, weights = reference
    first = AZRTrainer(make_model(), tokenizer, device="cpu")
    final = stop_at(first, texts, 40, tmp_path, stop_iteration)
    assert final.state == "paused"
    assert final.checkpoint.endswith(f"model_paused_{stop_iteration}")

    # The seed guide's scenario 2: a new model object, a new trainer, resume from the file.
    second = AZRTrainer(make_model(seed=123), tokenizer, device="cpu")
    second.train_continuous(texts=texts, max_iterations=40, checkpoint_dir=tmp_path,
                            resume_from=final.checkpoint, **FAST)
    assert [r["iteration"] for r in second.history] == list(range(1, 41))
    assert losses(second.history) == losses(history)
    assert [r["reward"] for r in second.history] == [r["reward"] for r in history]
    assert [r["val_loss"] for r in second.history] == [r["val_loss"] for r in history]  # identical after a resume
    # self-play's reward on held-out prompts, sampled at each validation from a generator of its own
    heldout = [r.get("heldout_reward") for r in second.history]
    assert heldout == [r.get("heldout_reward") for r in history]
    assert [i + 1 for i, value in enumerate(heldout) if value is not None] == [10, 20, 30, 40]
    assert_same_weights(second.model, weights)


def test_from_checkpoint_needs_no_knowledge_of_the_architecture(texts, tokenizer, make_model, tmp_path, reference):
    history, weights = reference
    final = stop_at(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 40, tmp_path, 10)
    trainer = AZRTrainer.from_checkpoint(final.checkpoint, device="cpu")
    trainer.train_continuous(texts=texts, max_iterations=40, checkpoint_dir=tmp_path, **FAST)
    assert losses(trainer.history) == losses(history)
    assert_same_weights(trainer.model, weights)


def test_resume_uses_the_stored_corpus_when_no_texts_are_given(texts, tokenizer, make_model, tmp_path, reference):
    history, _ = reference
    final = stop_at(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 40, tmp_path, 15)
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = list(trainer.train(None, 40, tmp_path, resume_from=final.checkpoint))
    assert statuses[-1].state == "completed"
    assert losses(trainer.history) == losses(history)


def test_same_target_completes_at_once_without_an_update(texts, tokenizer, make_model, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = run_to(trainer, texts, 20, tmp_path)
    assert statuses[-1].state == "completed"
    checkpoint = tmp_path / "model_iter_20"
    resumed = AZRTrainer(make_model(), tokenizer, device="cpu")
    before = {k: v.clone() for k, v in resumed.model.state_dict().items()}
    statuses = run_to(resumed, texts, 20, tmp_path, resume_from=checkpoint)
    assert [s.state for s in statuses] == ["running", "completed"]
    assert statuses[-1].iteration == 20
    assert len(resumed.history) == 20
    assert not all(torch.equal(before[k], v) for k, v in resumed.model.state_dict().items())  # weights loaded
    assert_same_weights(resumed.model, trainer.model.state_dict())  # and not updated


def test_extension_continues_with_a_continuous_lr(texts, tokenizer, make_model, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    run_to(trainer, texts, 100, tmp_path, warmup=10, save_every=50)
    old_lrs = [r["lr"] for r in trainer.history]
    planned_at_100 = Checkpoint.open(tmp_path / "model_iter_100").state["lr"]  # the LR the old plan gives step 100
    resumed = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = run_to(resumed, texts, 250, tmp_path, resume_from=tmp_path / "model_iter_100", save_every=50,
                      extend_schedule="final_lr")  # the continuous re-plan (a finished run re-warms by default)
    assert statuses[-1].state == "completed" and statuses[-1].iteration == 250
    history = resumed.history
    assert [r["iteration"] for r in history] == list(range(1, 251))
    assert [r["lr"] for r in history[:100]] == old_lrs
    new_lrs = [r["lr"] for r in history[100:]]
    assert new_lrs[0] == pytest.approx(planned_at_100)
    assert abs(new_lrs[0] - old_lrs[-1]) <= abs(old_lrs[-1] - old_lrs[-2]) + 1e-12  # no jump, no warm restart
    assert all(a >= b for a, b in zip(new_lrs, new_lrs[1:]))


def test_extension_of_a_wsd_run_keeps_the_stable_lr(texts, tokenizer, make_model, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    final = stop_at(trainer, texts, 100, tmp_path, 50, lr_schedule="wsd", lr=1e-3)
    resumed = AZRTrainer(make_model(), tokenizer, device="cpu")
    run_to(resumed, texts, 200, tmp_path, resume_from=final.checkpoint)
    lrs = [r["lr"] for r in resumed.history]
    assert lrs[49] == lrs[50] == lrs[159] == pytest.approx(1e-3)  # stable until the new decay phase
    assert lrs[-1] < lrs[161] < lrs[160] == pytest.approx(1e-3)


def test_batch_size_may_change_on_resume(texts, tokenizer, make_model, tmp_path):
    final = stop_at(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 30, tmp_path, 10)
    resumed = AZRTrainer(make_model(), tokenizer, device="cpu")
    run_to(resumed, texts, 30, tmp_path, resume_from=final.checkpoint, batch_size=6)
    checkpoint = Checkpoint.open(tmp_path / "model_iter_30")
    assert checkpoint.train_config.batch_size == 6
    position = checkpoint.data_position
    samples = position["epoch"] * position["num_samples"] + position["offset"]
    assert samples == 10 * 4 + 20 * 6  # the data position is counted in samples


def test_a_new_lr_on_resume_is_honoured(texts, tokenizer, make_model, tmp_path):
    final = stop_at(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 30, tmp_path, 10, lr_schedule="constant",
                    warmup=0, lr=3e-4)
    resumed = AZRTrainer(make_model(), tokenizer, device="cpu")
    run_to(resumed, texts, 30, tmp_path, resume_from=final.checkpoint, lr=1e-2)
    assert {r["lr"] for r in resumed.history[:10]} == {3e-4}
    assert {r["lr"] for r in resumed.history[10:]} == {1e-2}
    assert all(group["lr"] == 1e-2 for group in resumed.optimizer.param_groups)


def test_load_optimizer_false_starts_a_fresh_optimizer(texts, tokenizer, make_model, tmp_path, reference):
    history, _ = reference
    final = stop_at(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 40, tmp_path, 20)
    resumed = AZRTrainer(make_model(), tokenizer, device="cpu")
    run_to(resumed, texts, 40, tmp_path, resume_from=final.checkpoint, load_optimizer=False)
    steps = {int(s["step"]) for s in resumed.optimizer.state_dict()["state"].values()}
    assert steps == {20}  # 20 steps taken by the fresh optimizer, not 40
    assert losses(resumed.history)[:21] == losses(history)[:21]  # step 21 uses the loaded weights
    assert losses(resumed.history)[21:] != losses(history)[21:]  # without the moments training differs


def test_architecture_mismatch_is_refused_before_anything_changes(texts, tokenizer, make_model, tmp_path):
    run_to(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 10, tmp_path)
    other = make_model(d_model=64, num_layers=2)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    trainer = AZRTrainer(other, tokenizer, device="cpu")
    with pytest.raises(CheckpointError) as error:
        trainer.train(texts, 20, tmp_path, resume_from=tmp_path / "model_iter_10")
    assert "d_model" in str(error.value) and "num_layers" in str(error.value)
    assert_same_weights(other, before)
    assert [i.name for i in list_checkpoints(tmp_path)] == ["model_iter_10"]


def test_a_missing_resume_from_raises_instead_of_starting_over(texts, tokenizer, make_model, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    with pytest.raises(CheckpointError, match="does not exist"):
        trainer.train(texts, 20, tmp_path, resume_from=tmp_path / "model_iter_999")
    assert not list(tmp_path.iterdir())


def test_a_target_below_the_checkpoint_is_refused(texts, tokenizer, make_model, tmp_path):
    run_to(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 20, tmp_path)
    with pytest.raises(ConfigError, match="max_iterations"):
        AZRTrainer(make_model(), tokenizer, device="cpu").train(texts, 10, tmp_path, resume_from=tmp_path / "model_iter_20")


def test_stop_requested_during_setup_pauses_before_the_first_iteration(texts, tokenizer, make_model, tmp_path,
                                                                      monkeypatch):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    original = session.new_optimizer

    def stop_while_preparing(model, config):  # a Stop press arriving while the run is being set up
        trainer.stop_training()
        return original(model, config)

    monkeypatch.setattr(session, "new_optimizer", stop_while_preparing)
    statuses = run_to(trainer, texts, 20, tmp_path)
    assert statuses[-1].state == "paused"
    assert statuses[-1].iteration == 0
    assert (tmp_path / "model_paused_0").is_dir()
    assert trainer.history == []


def test_stop_from_another_thread_pauses_after_the_current_batch(texts, tokenizer, make_model, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    stopped_at = []

    def press_stop(status):
        if status.iteration == 12 and not stopped_at:
            thread = threading.Thread(target=trainer.stop_training)
            thread.start()
            thread.join()
            stopped_at.append(status.iteration)

    trainer.status_callback = press_stop
    result = threading.Thread(target=trainer.train_continuous,
                              kwargs=dict(texts=texts, max_iterations=1000, checkpoint_dir=tmp_path,
                                          **{**FAST, "status_every": 1}))
    result.start()
    result.join(timeout=120)
    assert not result.is_alive()
    assert trainer.last_status.state == "paused"
    assert trainer.last_status.iteration == 12
    assert (tmp_path / "model_paused_12").is_dir()


def test_the_generator_yields_at_the_promised_cadence(texts, tokenizer, make_model, tmp_path):
    statuses = run_to(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 23, tmp_path,
                      status_every=4, save_every=10)
    assert statuses[0].state == "running" and statuses[0].iteration == 0
    assert [s.iteration for s in statuses[1:] if s.state == "running"] == [4, 8, 12, 16, 20]
    saved = [(s.iteration, s.message) for s in statuses if s.state == "checkpoint"]  # each reported once written
    assert [message for _, message in saved] == [f"Saved model_iter_{n}." for n in (10, 20, 23)]
    assert all(iteration >= n for (iteration, _), n in zip(saved, (10, 20, 23)))  # a background save: later
    assert statuses[-1].state == "completed" and statuses[-1].iteration == 23
    last = statuses[-1]
    assert last.lr is not None and last.loss is not None and last.val_loss is not None
    assert last.reward is not None and set(last.reward_components) == {"chrf"} and last.kl is not None
    assert last.reward_std is not None and {"prompt", "continuation", "reward"} <= set(last.samples[0])
    assert last.tokens_per_s > 0 and last.memory_mb > 0 and last.eta_s is None  # a finished run has no ETA
    assert len(last.history) == 23
    seed_keys = last.as_dict()
    assert seed_keys["current_iteration"] == 23 and seed_keys["is_training"] is False
    assert seed_keys["current_loss"] == last.loss and seed_keys["max_iterations"] == 23


def test_closing_the_generator_early_saves_a_paused_checkpoint(texts, tokenizer, make_model, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    generator = trainer.train(texts, 100, tmp_path, **FAST)
    for status in generator:
        if status.iteration == 15:
            break
    generator.close()
    checkpoint = Checkpoint.open(tmp_path / "model_paused_15")
    assert checkpoint.iteration == 15 and len(checkpoint.history()) == 15


def test_time_budget_pauses_like_a_stop(texts, tokenizer, make_model, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = run_to(trainer, texts, 100_000, tmp_path, time_budget_s=1.0)
    assert statuses[-1].state == "paused"
    assert 0 < statuses[-1].iteration < 100_000
    assert (tmp_path / f"model_paused_{statuses[-1].iteration}").is_dir()


def test_an_error_inside_training_saves_an_error_checkpoint(texts, tokenizer, make_model, tmp_path):
    calls = []

    def failing_reward(batch_texts):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("reward service down")
        return [0.5] * len(batch_texts)

    trainer = AZRTrainer(make_model(), tokenizer, device="cpu", reward_fn=failing_reward)
    statuses = []
    with pytest.raises(RuntimeError, match="reward service down"):
        for status in trainer.train(texts, 50, tmp_path, **FAST):
            statuses.append(status)
    assert statuses[-1].state == "error" and "reward service down" in statuses[-1].message
    checkpoint = Checkpoint.open(tmp_path / "model_error_8")  # self-play on 3, 6, 9: the third fails in step 9
    assert checkpoint.iteration == 8 and len(checkpoint.history()) == 8


def test_checkpoint_iteration_equals_the_optimizer_step_count(texts, tokenizer, make_model, tmp_path):
    final = stop_at(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 30, tmp_path, 15)
    run_to(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 30, tmp_path, resume_from=final.checkpoint)
    for info in list_checkpoints(tmp_path):
        optimizer = Checkpoint.open(info.path).optimizer_state()
        assert {int(s["step"]) for s in optimizer["state"].values()} == {info.iteration}, info.name


def test_history_is_never_truncated_and_iterations_never_restart(texts, tokenizer, make_model, tmp_path):
    final = stop_at(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 30, tmp_path, 10)
    middle = stop_at(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 60, tmp_path, 25,
                     resume_from=final.checkpoint)
    resumed = AZRTrainer(make_model(), tokenizer, device="cpu")
    run_to(resumed, texts, 90, tmp_path, resume_from=middle.checkpoint)
    assert [r["iteration"] for r in resumed.history] == list(range(1, 91))
    assert len(Checkpoint.open(tmp_path / "model_iter_90").history()) == 90


def test_a_model_shorter_than_the_default_window_trains(texts, tokenizer, make_model, tmp_path):
    trainer = AZRTrainer(make_model(max_seq_len=16), tokenizer, device="cpu")
    statuses = run_to(trainer, texts, 6, tmp_path)
    assert statuses[-1].state == "completed"
    assert Checkpoint.open(tmp_path / "model_iter_6").train_config.seq_len == 16


def test_other_texts_on_resume_continue_with_a_warning(texts, tokenizer, make_model, tmp_path):
    final = stop_at(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 20, tmp_path, 10)
    resumed = AZRTrainer(make_model(), tokenizer, device="cpu")
    statuses = run_to(resumed, texts[:2], 20, tmp_path, resume_from=final.checkpoint)
    assert statuses[-1].state == "completed"
    assert any("differ" in w for w in statuses[-1].warnings)


def test_seed_guide_train_continuous_calls_work_as_written(texts, tokenizer, make_model, tmp_path):
    checkpoint_dir = str(tmp_path / "checkpoints")
    trainer = AZRTrainer(make_model(), tokenizer)
    history = trainer.train_continuous(texts=texts, max_iterations=20, checkpoint_dir=checkpoint_dir)
    assert len(history) == 20
    trainer2 = AZRTrainer(make_model(seed=5), tokenizer)
    history = trainer2.train_continuous(texts=texts, max_iterations=20, checkpoint_dir=checkpoint_dir,
                                        resume_from=f"{checkpoint_dir}/model_iter_20")
    assert len(history) == 20
    history = trainer2.train_continuous(texts=texts, max_iterations=50, checkpoint_dir=checkpoint_dir,
                                        resume_from=f"{checkpoint_dir}/model_iter_20")
    assert [r["iteration"] for r in history] == list(range(1, 51))
    assert trainer2.last_status.state == "completed"


def test_load_checkpoint_then_train_continues_from_it(texts, tokenizer, make_model, tmp_path, reference):
    history, weights = reference
    final = stop_at(AZRTrainer(make_model(), tokenizer, device="cpu"), texts, 40, tmp_path, 30)
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    checkpoint = trainer.load_checkpoint(final.checkpoint)
    assert checkpoint.iteration == 30 and len(trainer.history) == 30
    trainer.train_continuous(texts=texts, max_iterations=40, checkpoint_dir=tmp_path, **FAST)
    assert losses(trainer.history) == losses(history)
    assert_same_weights(trainer.model, weights)


@pytest.mark.parametrize("batch_size", [4, 7])
def test_validation_loss_is_token_weighted_over_a_fixed_set(texts, tokenizer, make_model, tmp_path, batch_size):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    run_to(trainer, texts, 10, tmp_path, batch_size=batch_size, val_windows=20)
    windows = TokenWindows.from_texts(texts, tokenizer, trainer.model.config.max_position_embeddings).val[:20]
    assert len(windows) == 20
    with torch.no_grad():  # every token of the first 20 validation windows in one batch, whatever the batch size
        logits = trainer.model.eval()(input_ids=windows[:, :-1]).logits
        expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
    assert trainer.history[-1]["val_loss"] == pytest.approx(float(expected), rel=1e-6)


def test_extending_a_finished_wsd_run_replans_its_decay_from_where_it_began(texts, tokenizer, make_model, tmp_path):
    """A finished wsd run keeps ``model_predecay_N``; extended with the default re-warm, it continues from there:
    the same weights, LRs and losses as a run trained to the new target from the start."""
    settings = dict(lr_schedule="wsd", warmup=5, lr=1e-3)
    straight = AZRTrainer(make_model(), tokenizer, device="cpu")
    run_to(straight, texts, 40, tmp_path / "straight", **settings)
    first = AZRTrainer(make_model(), tokenizer, device="cpu")
    run_to(first, texts, 20, tmp_path / "run", **settings)
    assert (tmp_path / "run" / "model_predecay_16").is_dir()  # 20 - 20 % of 20: where the decay began
    assert Checkpoint.open(tmp_path / "run" / "model_predecay_16").state["lr"] == pytest.approx(1e-3)

    extended = AZRTrainer.from_checkpoint(tmp_path / "run" / "model_iter_20", device="cpu")
    statuses = run_to(extended, None, 40, tmp_path / "run", resume_from=tmp_path / "run" / "model_iter_20")
    assert any("model_predecay_16" in w for w in statuses[0].warnings)  # the user is told where it went on from
    assert [r["iteration"] for r in extended.history] == list(range(1, 41))  # the decayed steps replaced, once each
    assert [r["lr"] for r in extended.history] == [r["lr"] for r in straight.history]
    assert losses(extended.history) == losses(straight.history)
    assert_same_weights(extended.model, straight.model.state_dict())
    assert sorted(p.name for p in (tmp_path / "run").glob("model_predecay_*")) == ["model_predecay_32"]


def test_a_wsd_extension_without_its_predecay_checkpoint_rewarms(texts, tokenizer, make_model, tmp_path):
    trainer = AZRTrainer(make_model(), tokenizer, device="cpu")
    run_to(trainer, texts, 20, tmp_path, lr_schedule="wsd", warmup=5, lr=1e-3)
    shutil.rmtree(tmp_path / "model_predecay_16")
    extended = AZRTrainer.from_checkpoint(tmp_path / "model_iter_20", device="cpu")
    run_to(extended, None, 40, tmp_path, resume_from=tmp_path / "model_iter_20")
    lrs = [r["lr"] for r in extended.history]
    assert lrs[:20] == [r["lr"] for r in trainer.history] and lrs[20] == pytest.approx(1e-4)  # from the final LR
    assert max(lrs[20:]) > 5 * lrs[20]  # ramped up again


def test_a_new_run_takes_its_presets_lr_and_warmup_and_a_resume_keeps_the_saved_ones(texts, tokenizer, tmp_path,
                                                                                      monkeypatch):
    tiny_shape = preset("tiny", vocab_size=len(tokenizer), max_seq_len=32)
    defaults = PRESET_TRAINING["tiny"]
    assert defaults != OTHER_MODELS
    trainer = AZRTrainer(build_model(tiny_shape, seed=0), tokenizer, device="cpu")
    target = 2 * defaults["warmup"]  # long enough for the whole warmup
    final = stop_at(trainer, texts, target, tmp_path, 5, self_play_every=0)
    saved = Checkpoint.open(final.checkpoint).train_config
    assert (saved.lr, saved.warmup) == (defaults["lr"], defaults["warmup"])
    assert trainer.history[0]["lr"] == pytest.approx(defaults["lr"] / defaults["warmup"])  # the warmup's first step

    short = AZRTrainer(build_model(tiny_shape, seed=0), tokenizer, device="cpu")
    quick = run_to(short, texts, 8, tmp_path / "short", self_play_every=0)[-1]
    assert Checkpoint.open(quick.checkpoint).train_config.warmup == 4  # at most half the run

    monkeypatch.setitem(PRESET_TRAINING, "tiny", {"lr": 1e-4, "warmup": 3})  # a later release changes the defaults
    resumed = AZRTrainer.from_checkpoint(final.checkpoint, device="cpu")
    last = stop_at(resumed, None, target, tmp_path, 10, resume_from=final.checkpoint)
    resumed_config = Checkpoint.open(last.checkpoint).train_config
    assert (resumed_config.lr, resumed_config.warmup) == (defaults["lr"], defaults["warmup"])

    explicit = AZRTrainer(build_model(tiny_shape, seed=0), tokenizer, device="cpu")
    chosen = run_to(explicit, texts, 1, tmp_path / "explicit", self_play_every=0, lr=5e-4, warmup=0)[-1]
    chosen_config = Checkpoint.open(chosen.checkpoint).train_config
    assert (chosen_config.lr, chosen_config.warmup) == (5e-4, 0)
