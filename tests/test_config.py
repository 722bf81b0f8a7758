"""ModelConfig / TrainConfig validation, presets, updates and serialisation."""
from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from azr import PRESETS, ConfigError, ModelConfig, TrainConfig, preset
from azr.cli.main import range_rows
from azr.config import OTHER_MODELS, PRESET_TRAINING, SAMPLING_RANGES, preset_training, range_of, training_defaults
from azr.config.ranges import Range, markdown_table

SIZE_FIELDS = ("vocab_size", "d_model", "num_layers", "num_heads", "d_ff", "max_seq_len")


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_d_model_not_divisible_by_num_heads_names_both_fields():
    with pytest.raises(ConfigError, match=r"d_model \(30\).*num_heads \(4\)"):
        ModelConfig(d_model=30, num_heads=4)


@pytest.mark.parametrize("value", [0, -1])
@pytest.mark.parametrize("field", SIZE_FIELDS)
def test_non_positive_size_names_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"^{field} must be (a positive integer up to|an integer from 2 to) "):
        ModelConfig(**{field: value})


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5])
def test_dropout_out_of_range(dropout):
    with pytest.raises(ConfigError, match=r"^dropout"):
        ModelConfig(dropout=dropout)


@pytest.mark.parametrize("name", ["tiny", "small", "base", "135m"])
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


@pytest.mark.parametrize("name", ["tiny", "small", "base", "135m"])
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


# ---------------------------------------------------------------------------- ranges

NUMERIC = [(cls, field) for cls in (ModelConfig, TrainConfig) for field in dataclasses.fields(cls)
           if {int, float} & {*typing.get_args(typing.get_type_hints(cls)[field.name]),
                              typing.get_type_hints(cls)[field.name]}]


def build(cls, name: str, value):
    """``cls`` with ``name`` set to ``value`` and the other fields made to fit it (heads that divide the width,
    self-play off), so that only the value's own range decides."""
    if cls is ModelConfig:
        fit = {"d_model": {"num_heads": 1}, "num_heads": {"d_model": 2 * value},
               "num_kv_heads": {"num_heads": value, "d_model": 2 * value}}
        return ModelConfig(**{**(fit.get(name, {}) if range_of(cls, name).holds(value) else {}), name: value})
    return TrainConfig(**{"self_play_every": 0, name: value} if name != "self_play_every" else {name: value})


def test_every_numeric_setting_declares_a_range():
    assert len(NUMERIC) == 33
    assert all(isinstance(field.metadata.get("range"), Range) for _, field in NUMERIC)


@pytest.mark.parametrize("cls,field", NUMERIC, ids=lambda v: getattr(v, "name", getattr(v, "__name__", v)))
def test_a_setting_takes_its_bounds_and_refuses_what_lies_beyond_naming_the_field_and_the_range(cls, field):
    within = field.metadata["range"]
    for inside in (within.low + (1 if within.above else 0) if within.integer else within.low + 0.5 * within.above,
                   within.high - (0.5 if within.below else 0)):
        assert getattr(build(cls, field.name, inside), field.name) == inside
    outside = [within.low - 1, within.high + 1, within.high * 10**12]
    outside += [2.5, "3", True] if within.integer else [float("nan"), float("inf"), float("-inf"), "0.5", False]
    outside += [within.low] if within.above else []
    outside += [within.high] if within.below else []
    for value in outside:
        message = re.escape(f"{field.name} must be {within.describe()}, got {value!r}")
        with pytest.raises(ConfigError, match=rf"^{message}(\.|: [^\n]*\.)$"):  # the range, then maybe why
            build(cls, field.name, value)


def test_the_inputs_that_aborted_or_broke_the_process_are_refused_and_real_sizes_accepted():
    for cls, values in ((ModelConfig, {"vocab_size": 10**9}), (TrainConfig, {"max_iterations": 10**30}),
                        (TrainConfig, {"seed": 10**30}), (TrainConfig, {"seed": -1})):
        with pytest.raises(ConfigError, match=f"^{next(iter(values))} must be .* up to [0-9,]+, got "):
            cls(**values)
    qwen_half_b = ModelConfig(vocab_size=151_936, d_model=896, num_layers=24, num_heads=14, d_ff=4864,
                              max_seq_len=32_768)
    assert qwen_half_b.d_model == 896
    assert TrainConfig(max_iterations=10**9, seed=2**63 - 1, batch_size=4096, warmup=10**6).seed == 2**63 - 1


def test_sampling_takes_self_plays_ranges():
    assert SAMPLING_RANGES == {"temperature": range_of(TrainConfig, "temperature"),
                               "top_k": range_of(TrainConfig, "top_k"), "seed": range_of(TrainConfig, "seed"),
                               "max_new_tokens": range_of(TrainConfig, "gen_max_new_tokens")}


def test_the_cli_docs_list_every_range():
    """docs/cli.md holds the table the declarations make (regenerate it with azr.cli.main.range_rows)."""
    text = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    assert markdown_table(range_rows()) in text
    assert len(range_rows()) == len(NUMERIC) + len(SAMPLING_RANGES)


def test_a_stored_config_without_the_fields_whose_default_changed_loads_as_it_was_trained():
    """Self-play every 10 iterations with the composite reward was the default until issue 26: a saved config that
    lacks those fields (the version-1 fixture has no ``rewards``) resumes the way it was trained."""
    stored = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("rewards", "self_play_every", "sampling")}
    config = TrainConfig.from_dict(stored)
    assert (config.rewards, config.self_play_every, config.sampling) == ("composite", 10, "windows")
    assert (TrainConfig().rewards, TrainConfig().self_play_every) == ("chrf", 0)
