"""The language-model losses: next-token cross-entropy, and the validation loss over a fixed set of windows."""
from __future__ import annotations

import torch

VAL_CHUNK = 16  # validation windows per forward pass (independent of the batch size)


def next_token_loss(model, batch: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Return the next-token cross-entropy of ``batch`` (windows of token ids): the mean over its tokens, or
    with ``reduction="sum"`` the sum."""
    logits = model(input_ids=batch[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                             reduction=reduction)


@torch.no_grad()
def validation_loss(model, windows: torch.Tensor) -> float | None:
    """Return the mean next-token loss over every token of ``windows`` (None for none), in fixed chunks: the
    value depends only on the model and the windows, never on the batch size."""
    if not len(windows):
        return None
    was_training = model.training
    model.eval()
    try:
        total = 0.0
        for chunk in windows.split(VAL_CHUNK):
            total += float(next_token_loss(model, chunk.to(model.device), reduction="sum"))
    finally:
        model.train(was_training)
    return total / (windows.shape[0] * (windows.shape[1] - 1))
