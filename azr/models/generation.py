"""Generation with exactly the settings the caller gives.

transformers' ``generate`` fills every setting left ``None`` from the model's own ``generation_config`` (a base
model's repetition penalty, top-k, min-p, suppressed tokens, …) and then from its defaults (top-k 50). Here every
logits processor is pinned to the caller's value or to "off", and the model's ``generation_config`` is not
consulted, so what is sampled is the distribution asked for (self-play's log-probs are taken under it).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers import GenerationConfig

# Every logits processor off, at the value where transformers' generate does not apply it: those applied to every
# search, and the warpers applied only when sampling. ``min_length`` is left to ``min_new_tokens``.
PROCESSORS_OFF = {
    "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0, "guidance_scale": 1.0, "num_beams": 1, "num_return_sequences": 1,
    "remove_invalid_values": False, "renormalize_logits": False,
}
WARPERS_OFF = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "typical_p": 1.0, "epsilon_cutoff": 0.0,
               "eta_cutoff": 0.0}


def exact_generate(model, prompts: torch.Tensor, *, max_new_tokens: int, eos_token_id: int | None,
                   pad_token_id: int | None, sample: bool = True, temperature: float = 1.0, top_k: int = 0,
                   top_p: float = 1.0, min_new_tokens: int = 0, output_scores: bool = False):
    """Return ``model.generate``'s output for equal-length ``prompts`` (no padding, KV-cached), sampled (with
    ``temperature``, ``top_k`` 0 = no limit, ``top_p`` 1 = no limit) or greedy, with every other logits processor
    off: its ``sequences`` and, with ``output_scores``, the processed scores of each step."""
    warpers = {**WARPERS_OFF, "temperature": temperature, "top_k": top_k, "top_p": top_p} if sample else {}
    config = GenerationConfig(**PROCESSORS_OFF, **warpers, min_new_tokens=min_new_tokens, do_sample=sample,
                              max_new_tokens=max_new_tokens, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
                              use_cache=True, output_scores=output_scores, return_dict_in_generate=True)
    with _model_settings_set_aside(model):
        return model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), generation_config=config)


@contextlib.contextmanager
def _model_settings_set_aside(model) -> Iterator[None]:
    """Give the model (under a peft wrapper: the model it wraps) a blank ``generation_config`` for the call, so
    the settings that transformers only leaves off when they are None (min-p, suppressed or forced tokens, …)
    stay off; its own is put back after."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    own = inner.generation_config
    inner.generation_config = GenerationConfig()
    try:
        yield
    finally:
        inner.generation_config = own
