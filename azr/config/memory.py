"""How much memory a model of a :class:`ModelConfig` needs to train, estimated from its sizes alone.

The front-ends show it before a run starts, so a user sees that a 135M model needs gigabytes before the machine
runs out of them. Parameters are counted exactly for the Llama model :func:`azr.models.causal_lm.build_model`
builds; activations are a rough figure (what one batch keeps for the backward pass, without the framework's
buffers). A background save that stages a copy (on an accelerator, see ``AZR_SAVE_WRITER``) also holds, while it is
written, the weights and AdamW state a second time.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from azr.config import ModelConfig, default_seq_len

FP32_BYTES = 4
ADAMW_STATES = 2  # exp_avg and exp_avg_sq, each the size of the weights


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training run holds: weights, AdamW state, gradients, one batch's activations and the copy of the
    weights and AdamW state that a background save may stage, all fp32."""

    parameters: int
    weights_bytes: int
    optimizer_bytes: int
    gradients_bytes: int
    activations_bytes: int
    staged_copy_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return (self.weights_bytes + self.optimizer_bytes + self.gradients_bytes + self.activations_bytes
                + self.staged_copy_bytes)

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as a JSON-able dict, with ``weights_and_optimizer_bytes`` and ``total_bytes``."""
        return {**asdict(self), "weights_and_optimizer_bytes": self.weights_bytes + self.optimizer_bytes,
                "total_bytes": self.total_bytes}


def parameter_count(config: ModelConfig) -> int:
    """Return the number of parameters of the Llama model of ``config`` (no biases; RMSNorm weights)."""
    d, kv_heads = config.d_model, config.num_kv_heads or config.num_heads
    kv_dim = d // config.num_heads * kv_heads
    attention = 2 * d * d + 2 * d * kv_dim  # q and o; k and v
    layer = attention + 3 * d * config.d_ff + 2 * d  # gate, up, down; two norms
    embeddings = config.vocab_size * d * (1 if config.tie_embeddings else 2)
    return config.num_layers * layer + embeddings + d  # the final norm


def estimate(config: ModelConfig, batch_size: int = 1, staged_copy: bool = False,
             seq_len: int | None = None) -> MemoryEstimate:
    """Return the memory a run of ``config`` at ``batch_size`` windows of ``seq_len`` tokens (default: the run's,
    :func:`azr.config.default_seq_len`) needs, with the copy a background save stages when ``staged_copy`` (see
    :func:`azr.checkpoints.writerprocess.stages_a_copy`).

    Activations per token and layer: about 8 hidden-size and 4 feed-forward-size values (the norms' inputs, q, k,
    v, the attention and MLP outputs, gate, up and their product), and the logits with their gradient.
    """
    parameters = parameter_count(config)
    tokens = max(1, batch_size) * (seq_len or default_seq_len(config.max_seq_len))
    per_token = config.num_layers * (8 * config.d_model + 4 * config.d_ff) + 2 * config.vocab_size
    weights = parameters * FP32_BYTES
    optimizer = ADAMW_STATES * weights
    return MemoryEstimate(parameters, weights, optimizer, weights, tokens * per_token * FP32_BYTES,
                          weights + optimizer if staged_copy else 0)


def largest_batch(config: ModelConfig, available_bytes: int, staged_copy: bool = False,
                  seq_len: int | None = None) -> int:
    """The largest batch whose :func:`estimate` fits in ``available_bytes`` (0: not even one window)."""
    one = estimate(config, 1, staged_copy, seq_len)
    fixed = one.total_bytes - one.activations_bytes
    return max(0, (available_bytes - fixed) // one.activations_bytes)
