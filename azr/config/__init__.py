"""Model and training settings: dataclasses, named presets, validation that names the field."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from azr.config.ranges import MAX_ITERATIONS, MAX_SEED, MAX_TOKENS, MAX_VOCAB, Range
from azr.config.rewards import parse_rewards
from azr.config.schedule import longest_warmup
from azr.errors import ConfigError

LR_SCHEDULES = ("cosine", "constant", "wsd")
EXTEND_SCHEDULES = ("rewarm", "final_lr")  # how a finished run continues to a larger target
PRECISIONS = ("fp32", "bf16", "fp16")
REPORT_TO = ("none", "tensorboard", "trackio")  # where a run reports its metrics (azr.training.reporting)
DATASET_MAX_MB = 1024.0  # the default cap on a Hub dataset's data (azr.data.hub_datasets)
LORA_TARGET = "all-linear"  # the default modules LoRA adapts (azr.models.lora)
LORA_R = Range(1, 4096)  # an adapter's rank: one above the adapted layer's width adds nothing but memory
LORA_ALPHA = Range(0, 10_000, integer=False, above=True)  # usual values are 8 to 256; the update scales by alpha / r
SAMPLINGS = ("random_offset", "windows")  # how training windows are drawn (azr.data.corpus)
SCALE_REWARDS = ("group", "batch", "none")  # what divides a self-play advantage (azr.rl.grpo), TRL's names
LOSS_TYPES = ("grpo", "dr_grpo")  # how the GRPO loss averages over tokens (azr.rl.grpo), TRL's names
FIXED_ON_RESUME = ("seed",)  # TrainConfig fields a resume cannot change
DEFAULT_MAX_WINDOW = 256  # the window length of a run whose model accepts longer sequences, unless seq_len is given
# Settings whose default changed: a saved config without the field was trained the old way and resumes that way.
LEGACY_DEFAULTS = {"sampling": "windows", "self_play_every": 10, "rewards": "composite"}


def _setting(default: Any, help: str, within: Range | None = None) -> Any:
    """A settings field with the help text the CLI and the app show for it, and the range of a numeric one."""
    return dataclasses.field(default=default, metadata={"help": help, **({"range": within} if within else {})})


def check_ranges(settings: Any) -> None:
    """Raise ConfigError naming the first numeric field of ``settings`` outside its declared range (a field whose
    default is None may be None: left to the model)."""
    for field in fields(settings):
        value = getattr(settings, field.name)
        if "range" in field.metadata and not (value is None and field.default is None):
            field.metadata["range"].check(field.name, value)


def range_of(settings: type, name: str) -> Range:
    """The declared range of the numeric field ``name`` of the settings class ``settings``."""
    return next(f.metadata["range"] for f in fields(settings) if f.name == name)


@dataclass(frozen=True)
class ModelConfig:
    """Size of a Llama-style causal LM built from scratch."""

    vocab_size: int = _setting(2048, "tokenizer vocabulary", Range(1, MAX_VOCAB))
    d_model: int = _setting(64, "hidden size", Range(2, 16_384))
    num_layers: int = _setting(2, "transformer layers", Range(1, 256))
    num_heads: int = _setting(4, "attention heads", Range(1, 256))
    d_ff: int = _setting(256, "feed-forward size", Range(1, 65_536))
    max_seq_len: int = _setting(128, "longest sequence", Range(1, MAX_TOKENS))
    dropout: float = _setting(0.0, "dropout probability", Range(0, 1, integer=False, below=True))
    num_kv_heads: int | None = _setting(None, "key/value heads, fewer than num_heads for grouped-query attention "
                                        "(default: num_heads)", Range(1, 256))
    tie_embeddings: bool = _setting(False, "the output layer shares the input embedding's weights")

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.d_model % self.num_heads:
            raise ConfigError(
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})."
            )
        if self.num_kv_heads is not None and self.num_heads % self.num_kv_heads:
            raise ConfigError(f"num_heads ({self.num_heads}) must be divisible by num_kv_heads ({self.num_kv_heads}).")
        if (self.d_model // self.num_heads) % 2:
            raise ConfigError(
                f"d_model / num_heads must be even for rotary embeddings, got {self.d_model // self.num_heads}."
            )

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
    # SmolLM2-135M's architecture, initialised at random (its vocabulary comes from the run's tokenizer)
    "135m": ModelConfig(vocab_size=49152, d_model=576, num_layers=30, num_heads=9, num_kv_heads=3, d_ff=1536,
                        max_seq_len=2048, tie_embeddings=True),
}


# The peak LR and warmup of a new run when not given, per preset: the best of the 600-iteration sweeps in
# ``benchmarks.presets`` on the embedded corpus (BENCHMARKS.md). Any other model (another size, a pretrained one)
# gets OTHER_MODELS'.
PRESET_TRAINING: dict[str, dict[str, Any]] = {
    "tiny": {"lr": 3e-3, "warmup": 150},
    "small": {"lr": 3e-3, "warmup": 150},
    "base": {"lr": 1e-3, "warmup": 50},
    "135m": {"lr": 1e-3, "warmup": 50},  # not swept yet: the values of other models (OTHER_MODELS)
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


def default_seq_len(max_seq_len: int) -> int:
    """The window length a run trains on when ``seq_len`` is not given: the model's longest, at most
    DEFAULT_MAX_WINDOW (short windows keep a step quick and its memory small on a CPU)."""
    return min(max_seq_len, DEFAULT_MAX_WINDOW)


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


@dataclass
class TrainConfig:
    """Everything that shapes a training run; saved in every checkpoint.

    Each field's ``metadata["help"]`` says what it does; the CLI builds its options from these fields.
    """

    max_iterations: int = _setting(1000, "iteration target of the run (optimizer steps)", Range(1, MAX_ITERATIONS))
    batch_size: int = _setting(16, "token windows per optimizer step, over all processes (the global batch)",
                               Range(1, 65_536))
    grad_accum_steps: int = _setting(1, "micro-batches per optimizer step and process: the same step in N "
                                        "smaller pieces (less memory)", Range(1, 4_096))
    precision: str = _setting("fp32", "precision of the forward passes: fp32, bf16 or fp16 (autocast; fp16 with "
                                      "a gradient scaler)")
    compile: bool = _setting(False, "compile the model with torch.compile (a slower start, faster steps on a GPU)")
    deterministic: bool = _setting(True, "use PyTorch's deterministic kernels (for the whole process), so that a "
                                         "resumed run repeats the uninterrupted one bit for bit; off: some GPU "
                                         "kernels and compiled models are faster")
    lr: float | None = _setting(None, f"peak learning rate {_per_preset('lr')}",
                                Range(0, 10, integer=False, above=True))
    lr_schedule: str = _setting("cosine", "learning-rate schedule: cosine, constant or wsd (warmup-stable-decay)")
    warmup: int | None = _setting(None, "iterations of linear warmup at the start of the run "
                                        + _per_preset("warmup", "; at most half the run"), Range(0, MAX_ITERATIONS))
    min_lr_ratio: float = _setting(0.1, "final learning rate as a fraction of the peak", Range(0, 1, integer=False))
    extend_schedule: str = _setting("rewarm", "when a finished run gets a larger target: rewarm (ramp into the "
                                    "schedule re-planned for the new target) or final_lr (stay at the final LR)")
    weight_decay: float = _setting(0.1, "AdamW weight decay of the matrices", Range(0, 10, integer=False))
    grad_clip: float = _setting(1.0, "clip the gradient norm to this value (0: no clipping)",
                                Range(0, 1_000_000, integer=False))
    seq_len: int | None = _setting(None, "tokens per training window (default: the model's length, at most 256)",
                                   Range(2, MAX_TOKENS))
    save_every: int = _setting(100, "save a model_iter checkpoint every N iterations", Range(1, MAX_ITERATIONS))
    async_save: bool = _setting(True, "write model_iter checkpoints in the background: a save blocks training only "
                                      "while the state is copied to CPU memory")
    status_every: int = _setting(10, "report progress every N iterations", Range(1, MAX_ITERATIONS))
    keep_last: int = _setting(5, "keep the newest N model_iter checkpoints of the run", Range(1, 1_000_000))
    val_every: int = _setting(50, "compute the validation loss every N iterations (0: never)", Range(0, MAX_ITERATIONS))
    keep_best: bool = _setting(True, "save model_best_<N> at each new lowest validation loss (one per run, never "
                                     "rotated away)")
    val_windows: int = _setting(64, "validation windows used for the validation loss (the first N of the split)",
                                Range(1, 1_000_000))
    seed: int = _setting(0, "seed of the initial weights and the data order", Range(0, MAX_SEED))
    sampling: str = _setting("random_offset", "training windows: random_offset (each starts at a random token) "
                             "or windows (the fixed cut)")
    self_play_every: int = _setting(0, "self-play every N iterations (0: no self-play, the default: it measured no "
                                       "gain over supervised training; docs/self-play.md says when to turn it on)",
                                    Range(0, MAX_ITERATIONS))
    self_play_batch: int = _setting(8, "continuations generated per self-play step (prompts x num_generations)",
                                    Range(1, 65_536))
    num_generations: int = _setting(4, "continuations per prompt: a group, whose rewards give the advantages",
                                    Range(2, 65_536))
    rl_weight: float = _setting(0.1, "share of the RL gradient in a self-play step (scaled to the LM gradient's norm "
                                     "unless rl_norm_rescale is off)", Range(0, 1, integer=False))
    rl_norm_rescale: bool = _setting(True, "scale the RL gradient to the LM gradient's norm before blending, so "
                                           "rl_weight is its share whatever the rewards' scale; off: blend it as it "
                                           "is, (1 - rl_weight) g_lm + rl_weight g_rl")
    scale_rewards: str = _setting("group", "what divides a self-play advantage (reward less its group's mean): "
                                           "group (the group's std), batch (the round's std) or none")
    loss_type: str = _setting("grpo", "how the GRPO loss averages over tokens: grpo (each continuation's mean, then "
                                      "their mean) or dr_grpo (the sum over all tokens over continuations x "
                                      "gen_max_new_tokens)")
    beta: float = _setting(0.04, "weight of the KL penalty to the reference policy (0: none, and no reference)",
                           Range(0, 100, integer=False))
    ref_sync_every: int = _setting(100, "copy the current weights into the reference policy every N iterations "
                                        "(0: keep the first copy)", Range(0, MAX_ITERATIONS))
    rewards: str = _setting("chrf", "self-play reward functions with weights, e.g. "
                                    "'ends_sentence(within=8)*2, composite, package.module:function'")
    gen_max_new_tokens: int = _setting(24, "tokens generated per self-play continuation", Range(1, MAX_TOKENS))
    temperature: float = _setting(1.0, "sampling temperature of self-play", Range(0, 100, integer=False, above=True))
    top_k: int = _setting(50, "sample self-play tokens from the k most likely (0: no limit)", Range(0, MAX_VOCAB))
    top_p: float = _setting(1.0, "sample self-play tokens from the most likely whose probability adds up to p "
                                 "(1: no limit)", Range(0, 1, integer=False, above=True))

    def __post_init__(self) -> None:
        self.check_fields()
        check_self_play(self)

    def check_fields(self) -> None:
        """Check each field on its own; raises ConfigError naming the first bad one."""
        if self.num_generations == 1 and not isinstance(self.num_generations, bool):
            raise ConfigError(f"num_generations must be {range_of(TrainConfig, 'num_generations').describe()}, got "
                              "1: a group needs at least 2, as one continuation per prompt has nothing to be better or "
                              "worse than, so RL would do nothing.")
        check_ranges(self)
        parse_rewards(self.rewards)
        if not isinstance(self.compile, bool):
            raise ConfigError(f"compile must be true or false, got {self.compile!r}.")
        for name in ("deterministic", "async_save", "keep_best", "rl_norm_rescale"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}.")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}.")

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


CHOICES = {"precision": PRECISIONS, "sampling": SAMPLINGS, "extend_schedule": EXTEND_SCHEDULES,
           "lr_schedule": LR_SCHEDULES, "scale_rewards": SCALE_REWARDS, "loss_type": LOSS_TYPES}  # str settings

# Sampling from a checkpoint (azr generate, the app's Generate) takes the ranges of self-play's settings.
SAMPLING_RANGES = {"temperature": range_of(TrainConfig, "temperature"), "top_k": range_of(TrainConfig, "top_k"),
                   "max_new_tokens": range_of(TrainConfig, "gen_max_new_tokens"), "seed": range_of(TrainConfig, "seed")}

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

