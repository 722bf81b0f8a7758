"""A checkpoint's names: its files, the kinds and names of checkpoint directories, and ``hf://`` references
(the Hub resolves those: :mod:`azr.hub`)."""
from __future__ import annotations

import os
import re
from pathlib import Path

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng_state.safetensors"
SCHEDULER_FILE = "scheduler.json"
HISTORY_FILE = "history_tail.safetensors"
ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"  # a LoRA checkpoint's model
REFERENCE_FILE = "reference.safetensors"  # the self-play reference policy, when the run has one
V1_OPTIMIZER_FILE, V1_RNG_FILE = "optimizer.pt", "rng_state.pt"
REQUIRED_FILES = {1: (WEIGHTS_FILE, CONFIG_FILE, SCHEDULER_FILE, V1_RNG_FILE),
                  2: (WEIGHTS_FILE, CONFIG_FILE, SCHEDULER_FILE, RNG_FILE, HISTORY_FILE)}
REQUIRED_FILES[3] = REQUIRED_FILES[2]  # format 3 changed the checksums only
KINDS = ("iter", "paused", "interrupted", "error", "best", "predecay")
ASIDE_KINDS = ("best", "predecay")  # kept beside the run, one each: the lowest validation loss so far, and the
# state where a wsd decay began (an extension re-plans the decay from there)
NAME_PATTERN = re.compile(rf"^model_({'|'.join(KINDS)})_(\d+)$")
HUB_SCHEME = "hf://"
HUB_LIKE = re.compile(r"^([\w.-]+)/([\w.-]+)(@[^/]+)?(/[\w.-]+)?/?$")


def is_hub_reference(ref: str | os.PathLike) -> bool:
    """True for ``hf://…``, the only way to name the Hub; anything else (a bare ``user/run`` too) is a local path."""
    return isinstance(ref, str) and ref.startswith(HUB_SCHEME)


def hub_hint(text: str) -> str:
    """Return advice to write ``hf://`` when a missing local path looks like ``user/run[/name]`` (not like
    ``folder/model_iter_N``) and its first folder does not exist here either; otherwise an empty string."""
    match = HUB_LIKE.match(text)
    if match and not NAME_PATTERN.match(match.group(2)) and not Path(match.group(1)).exists():
        return f"; for a Hub repo write hf://{text}"
    return ""


def checkpoint_name(kind: str, iteration: int) -> str:
    """Return the directory name of a checkpoint of ``kind`` at ``iteration``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return f"model_{kind}_{iteration}"


def iteration_in_name(name: str) -> int:
    """Return the iteration a checkpoint directory's name holds (``model_iter_30`` → 30)."""
    match = NAME_PATTERN.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a checkpoint name")
    return int(match.group(2))
