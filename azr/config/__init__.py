"""Model and training settings: dataclasses, named presets, validation that names the field."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from azr.config.rewards import parse_rewards
from azr.config.schedule import longest_warmup
from azr.errors import ConfigError

LR_SCHEDULES = ("cosine", "constant", "wsd")
EXTEND_SCHEDULES = ("rewarm", "final_lr")  # how a finished run continues to a larger target
PRECISIONS = ("fp32", "bf16", "fp16")
REPORT_TO = ("none", "tensorboard", "trackio")  # where a run reports its metrics (azr.training.reporting)
DATASET_MAX_MB = 1024.0  # the default cap on a Hub dataset's data (azr.data.hub_datasets)
LORA_TARGET = "all-linear"  # the default modules LoRA adapts (azr.models.lora)
SAMPLINGS = ("random_offset", "windows")  # how training windows are drawn (azr.data.corpus)
FIXED_ON_RESUME = ("seed",)  # TrainConfig fields a resume cannot change
# Settings whose default changed: a saved config without the field was trained the old way and resumes that way.
LEGACY_DEFAULTS = {"sampling": "windows"}


@dataclass(frozen=True)
class ModelConfig:
    """Size of a Llama-style causal LM built from scratch."""

    vocab_size: int = 2048
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    d_ff: int = 256
    max_seq_len: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_layers", "num_heads", "d_ff", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        if self.d_model % self.num_heads:
            raise ConfigError(
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})."
            )
        if (self.d_model // self.num_heads) % 2:
            raise ConfigError(
                f"d_model / num_heads must be even for rotary embeddings, got {self.d_model // self.num_heads}."
            )
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}.")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a dict, ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(vocab_size=2048, d_model=64, num_layers=2, num_heads=4, d_ff=256, max_seq_len=128),
    "small": ModelConfig(vocab_size=4096, d_model=128, num_layers=4, num_heads=4, d_ff=512, max_seq_len=256),
    "base": ModelConfig(vocab_size=8192, d_model=256, num_layers=6, num_heads=8, d_ff=1024, max_seq_len=256),
}


# The peak LR and warmup of a new run when not given, per preset: the best of the 600-iteration sweeps in
# ``benchmarks.presets`` on the embedded corpus (BENCHMARKS.md). Any other model (another size, a pretrained one)
# gets OTHER_MODELS'.
PRESET_TRAINING: dict[str, dict[str, Any]] = {
    "tiny": {"lr": 3e-3, "warmup": 150},
    "small": {"lr": 3e-3, "warmup": 150},
    "base": {"lr": 1e-3, "warmup": 50},
}
OTHER_MODELS: dict[str, Any] = {"lr": 1e-3, "warmup": 50}


def preset_training(model: ModelConfig | None) -> dict[str, Any]:
    """Return the ``lr`` and ``warmup`` measured for ``model``: its preset's when it has a preset's width and depth
    (its vocabulary and length may differ), else ``OTHER_MODELS``'."""
    def shape(config: ModelConfig) -> tuple[int, ...]:
        return config.d_model, config.num_layers, config.num_heads, config.d_ff

    for name, config in PRESETS.items():
        if model is not None and shape(config) == shape(model):
            return dict(PRESET_TRAINING[name])
    return dict(OTHER_MODELS)


def training_defaults(model: ModelConfig | None, max_iterations: int) -> dict[str, Any]:
    """Return the ``lr`` and ``warmup`` of a new run of ``model`` to ``max_iterations`` when not given: its
    :func:`preset_training`, the warmup at most :func:`~azr.config.schedule.longest_warmup` (half the run)."""
    defaults = preset_training(model)
    return {**defaults, "warmup": min(defaults["warmup"], longest_warmup(max_iterations))}


def _per_preset(name: str, extra: str = "") -> str:
    """The help text's account of a per-preset default."""
    values = ", ".join(f"{preset_name} {defaults[name]:g}" for preset_name, defaults in PRESET_TRAINING.items())
    return f"(default: the preset's: {values}; {OTHER_MODELS[name]:g} for other models{extra})"


def preset(name: str, **overrides: Any) -> ModelConfig:
    """Return the named preset with fields overridden; raises ConfigError for an unknown name."""
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return dataclasses.replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


def _setting(default: Any, help: str) -> Any:
    """A TrainConfig field with the help text the CLI and the app show for it."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything that shapes a training run; saved in every checkpoint.

    Each field's ``metadata["help"]`` says what it does; the CLI builds its options from these fields.
    """

    max_iterations: int = _setting(1000, "iteration target of the run (optimizer steps)")
    batch_size: int = _setting(16, "token windows per optimizer step, over all processes (the global batch)")
    grad_accum_steps: int = _setting(1, "micro-batches per optimizer step and process: the same step in N "
                                        "smaller pieces (less memory)")
    precision: str = _setting("fp32", "precision of the forward passes: fp32, bf16 or fp16 (autocast; fp16 with "
                                      "a gradient scaler)")
    compile: bool = _setting(False, "compile the model with torch.compile (a slower start, faster steps on a GPU)")
    deterministic: bool = _setting(True, "use PyTorch's deterministic kernels (for the whole process), so that a "
                                         "resumed run repeats the uninterrupted one bit for bit; off: some GPU "
                                         "kernels and compiled models are faster")
    lr: float | None = _setting(None, f"peak learning rate {_per_preset('lr')}")
    lr_schedule: str = _setting("cosine", "learning-rate schedule: cosine, constant or wsd (warmup-stable-decay)")
    warmup: int | None = _setting(None, "iterations of linear warmup at the start of the run "
                                        + _per_preset("warmup", "; at most half the run"))
    min_lr_ratio: float = _setting(0.1, "final learning rate as a fraction of the peak")
    extend_schedule: str = _setting("rewarm", "when a finished run gets a larger target: rewarm (ramp into the "
                                    "schedule re-planned for the new target) or final_lr (stay at the final LR)")
    weight_decay: float = _setting(0.1, "AdamW weight decay of the matrices")
    grad_clip: float = _setting(1.0, "clip the gradient norm to this value (0: no clipping)")
    seq_len: int | None = _setting(None, "tokens per training window (default: the model's length, at most 256)")
    save_every: int = _setting(100, "save a model_iter checkpoint every N iterations")
    async_save: bool = _setting(True, "write model_iter checkpoints in the background: a save blocks training only "
                                      "while the state is copied to CPU memory")
    status_every: int = _setting(10, "report progress every N iterations")
    keep_last: int = _setting(5, "keep the newest N model_iter checkpoints of the run")
    val_every: int = _setting(50, "compute the validation loss every N iterations (0: never)")
    keep_best: bool = _setting(True, "save model_best_<N> at each new lowest validation loss (one per run, never "
                                     "rotated away)")
    val_windows: int = _setting(64, "validation windows used for the validation loss (the first N of the split)")
    seed: int = _setting(0, "seed of the initial weights and the data order")
    sampling: str = _setting("random_offset", "training windows: random_offset (each starts at a random token) "
                             "or windows (the fixed cut)")
    self_play_every: int = _setting(10, "self-play every N iterations (0: no self-play)")
    self_play_batch: int = _setting(8, "continuations generated per self-play step (prompts x num_generations)")
    num_generations: int = _setting(4, "continuations per prompt: a group, whose rewards give the advantages")
    rl_weight: float = _setting(0.1, "share of the RL gradient in a self-play step (scaled to the LM gradient's norm)")
    beta: float = _setting(0.04, "weight of the KL penalty to the reference policy (0: none, and no reference)")
    ref_sync_every: int = _setting(100, "copy the current weights into the reference policy every N iterations "
                                        "(0: keep the first copy)")
    rewards: str = _setting("composite", "self-play reward functions with weights, e.g. "
                                         "'ends_sentence(within=8)*2, composite, package.module:function'")
    gen_max_new_tokens: int = _setting(24, "tokens generated per self-play continuation")
    temperature: float = _setting(1.0, "sampling temperature of self-play")
    top_k: int = _setting(50, "sample self-play tokens from the k most likely (0: no limit)")
    top_p: float = _setting(1.0, "sample self-play tokens from the most likely whose probability adds up to p "
                                 "(1: no limit)")

    def __post_init__(self) -> None:
        self.check_fields()
        check_self_play(self)

    def check_fields(self) -> None:
        """Check each field on its own; raises ConfigError naming the first bad one."""
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{field.name} must be a finite number, got {value!r}.")
        positive = ("max_iterations", "batch_size", "grad_accum_steps", "save_every", "status_every", "keep_last",
                    "self_play_batch", "gen_max_new_tokens", "val_windows")
        for name in positive:
            _require_int(name, getattr(self, name), minimum=1)
        _require_int("num_generations", self.num_generations, minimum=1)
        if self.num_generations < 2:
            raise ConfigError("num_generations must be at least 2: one continuation per prompt has no group to be "
                              "better or worse than, so RL would do nothing.")
        left_to_the_model = {name for name in OTHER_MODELS if getattr(self, name) is None}  # training_defaults
        for name in ("warmup", "val_every", "self_play_every", "seed", "top_k", "ref_sync_every"):
            if name not in left_to_the_model:
                _require_int(name, getattr(self, name), minimum=0)
        if self.seq_len is not None:
            _require_int("seq_len", self.seq_len, minimum=2)
        for name in ("lr", "temperature"):
            value = getattr(self, name)
            if name in left_to_the_model:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}.")
        for name in ("min_lr_ratio", "rl_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {value!r}.")
        if not isinstance(self.top_p, (int, float)) or isinstance(self.top_p, bool) or not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be above 0 and at most 1, got {self.top_p!r}.")
        parse_rewards(self.rewards)
        for name in ("weight_decay", "grad_clip", "beta"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{name} must be zero or positive, got {value!r}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"compile must be true or false, got {self.compile!r}.")
        for name in ("deterministic", "async_save", "keep_best"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}.")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}.")
        if self.extend_schedule not in EXTEND_SCHEDULES:
            raise ConfigError(f"extend_schedule must be one of {', '.join(EXTEND_SCHEDULES)}, "
                              f"got {self.extend_schedule!r}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring unknown keys; a field that the dict lacks and whose default has changed
        since (``LEGACY_DEFAULTS``) takes its old default, and a stored rl_weight 0 means self-play off."""
        known = {f.name for f in fields(cls)}
        values = {**LEGACY_DEFAULTS, **{k: v for k, v in values.items() if k in known}}
        if values.get("rl_weight") == 0:  # accepted before: self-play that never changed the weights
            values["self_play_every"] = 0
        return cls(**values)

    def updated(self, **overrides: Any) -> TrainConfig:
        """Return a copy with the given non-None fields replaced (validated)."""
        unknown = set(overrides) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"Unknown training setting(s): {', '.join(sorted(unknown))}.")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def check_self_play(config: TrainConfig) -> None:
    """Refuse settings under which self-play would run but RL could never change the model."""
    if not config.self_play_every:
        return
    if config.self_play_batch % config.num_generations:
        raise ConfigError(f"self_play_batch ({config.self_play_batch}) must be a multiple of num_generations "
                          f"({config.num_generations}), so that every prompt gets a full group.")
    if config.top_k == 1:
        raise ConfigError("top_k 1 samples greedily, so every continuation in a group is the same and RL does "
                          "nothing; use top_k 0 (no limit) or above 1.")
    if config.rl_weight == 0:
        raise ConfigError("rl_weight 0 gives self-play no share of the step, so its generation would be paid for "
                          "and never used; set self_play_every=0 to turn self-play off, or rl_weight above 0.")


def _require_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{name} must be {bound}, got {value!r}.")
