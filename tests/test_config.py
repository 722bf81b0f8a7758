"""ModelConfig / TrainConfig validation, presets, updates and serialisation."""
from __future__ import annotations

import dataclasses

import pytest

from azr import PRESETS, ConfigError, ModelConfig, TrainConfig, preset
from azr.config import OTHER_MODELS, PRESET_TRAINING, preset_training, training_defaults

SIZE_FIELDS = ("vocab_size", "d_model", "num_layers", "num_heads", "d_ff", "max_seq_len")


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_d_model_not_divisible_by_num_heads_names_both_fields():
    with pytest.raises(ConfigError, match=r"d_model \(30\).*num_heads \(4\)"):
        ModelConfig(d_model=30, num_heads=4)


@pytest.mark.parametrize("value", [0, -1])
@pytest.mark.parametrize("field", SIZE_FIELDS)
def test_non_positive_size_names_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"^{field} must be a positive integer"):
        ModelConfig(**{field: value})


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5])
def test_dropout_out_of_range(dropout):
    with pytest.raises(ConfigError, match=r"^dropout"):
        ModelConfig(dropout=dropout)


@pytest.mark.parametrize("name", ["tiny", "small", "base"])
def test_presets_exist_and_are_valid(name):
    config = preset(name)
    assert config == PRESETS[name]
    assert ModelConfig.from_dict(config.to_dict()) == config  # re-validates every field
    assert preset(name, num_layers=3, d_model=None) == dataclasses.replace(config, num_layers=3)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="nope") as info:
        preset("nope")
    assert all(name in str(info.value) for name in ("tiny", "small", "base"))


@pytest.mark.parametrize(
    "field, value",
    [("batch_size", -1), ("max_iterations", 0), ("lr", 0), ("lr_schedule", "bogus"), ("rl_weight", 2)],
)
def test_train_config_validation_names_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"^{field} must be"):
        TrainConfig(**{field: value})


def test_updated_ignores_none_and_validates():
    config = TrainConfig(lr=1e-3, batch_size=8)
    updated = config.updated(lr=None, batch_size=32)
    assert (updated.lr, updated.batch_size) == (1e-3, 32)
    assert config.batch_size == 8  # the original is untouched
    with pytest.raises(ConfigError, match="^batch_size"):
        config.updated(batch_size=0)


def test_updated_rejects_unknown_names():
    with pytest.raises(ConfigError, match="bogus_setting"):
        TrainConfig().updated(bogus_setting=1, lr=1e-3)


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(vocab_size=500, d_model=48, num_layers=3, num_heads=3, d_ff=96, max_seq_len=64, dropout=0.1),
        TrainConfig(max_iterations=77, batch_size=3, lr=2e-4, lr_schedule="wsd", warmup=5, seq_len=16, seed=9),
    ],
)
def test_to_dict_from_dict_round_trip(config):
    values = config.to_dict()
    assert type(config).from_dict(values) == config
    assert type(config).from_dict({**values, "not_a_field": 1}) == config  # unknown keys are ignored


@pytest.mark.parametrize("name", ["tiny", "small", "base"])
def test_a_preset_model_gets_its_presets_lr_and_warmup_whatever_its_vocabulary_and_length(name):
    assert preset_training(preset(name)) == PRESET_TRAINING[name]
    assert preset_training(preset(name, vocab_size=300, max_seq_len=32)) == PRESET_TRAINING[name]
    assert training_defaults(preset(name), 10_000) == PRESET_TRAINING[name]


def test_other_models_get_the_general_defaults():
    assert PRESET_TRAINING["small"] != OTHER_MODELS
    assert preset_training(preset("small", d_model=192)) == OTHER_MODELS
    assert preset_training(preset("base", num_layers=3)) == OTHER_MODELS
    assert preset_training(None) == OTHER_MODELS  # not built from a ModelConfig (a pretrained model)


def test_a_default_warmup_is_at_most_half_the_run():
    warmup = PRESET_TRAINING["tiny"]["warmup"]
    assert training_defaults(preset("tiny"), 2 * warmup) == PRESET_TRAINING["tiny"]
    assert training_defaults(preset("tiny"), 2 * warmup - 2) == {**PRESET_TRAINING["tiny"], "warmup": warmup - 1}
    assert training_defaults(None, 1)["warmup"] == 0


def test_an_lr_or_warmup_not_given_is_left_to_the_model_and_a_given_one_is_checked():
    assert TrainConfig().lr is None and TrainConfig().warmup is None
    assert TrainConfig.from_dict(TrainConfig(lr=2e-3, warmup=0).to_dict()).to_dict() == {
        **TrainConfig().to_dict(), "lr": 2e-3, "warmup": 0}
    with pytest.raises(ConfigError, match=r"^lr must be a positive number"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match=r"^warmup must be"):
        TrainConfig(warmup=-1)
