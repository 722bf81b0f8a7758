"""Model FLOPs utilisation (MFU): the training FLOPs a run's tokens/s stand for, as a share of the device's peak.

A training token costs ``6 * N + 12 * L * d * T`` FLOPs (forward and backward; N the weights of every matrix
multiplication, lm_head included and the embedding lookup not; L layers of width d attending over T tokens), as in
the PaLM paper's appendix B. The peak is the data-sheet dense peak of known GPUs in the run's precision; for any
other device (the CPU included) it is measured: the best of a few large matrix multiplications in that precision.
"""
from __future__ import annotations

import time

import torch

from azr.training import precision

from .common import synchronize

# Dense (no sparsity) peak TFLOP/s by GPU name: fp32 without TF32 (torch's default), and bf16 / fp16 tensor cores.
DATASHEET_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0},
    "H100 80GB HBM3": {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0},  # SXM
    "H100 PCIe": {"fp32": 51.0, "bf16": 756.0, "fp16": 756.0},
    "A100": {"fp32": 19.5, "bf16": 312.0, "fp16": 312.0},
    "L4": {"fp32": 30.3, "bf16": 121.0, "fp16": 121.0},
    "T4": {"fp32": 8.1, "fp16": 65.0},
}


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Return the training FLOPs per token of ``model`` on windows of ``seq_len`` input tokens."""
    matmul_weights = sum(module.weight.numel() for module in model.modules() if isinstance(module, torch.nn.Linear))
    config = model.config
    return 6.0 * matmul_weights + 12.0 * config.num_hidden_layers * config.hidden_size * seq_len


def peak_flops(device: torch.device, precision_name: str) -> tuple[float, str]:
    """Return the device's peak FLOP/s in ``precision_name`` and where the figure comes from."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in DATASHEET_TFLOPS.items():
            if key in name and precision_name in peaks:
                return peaks[precision_name] * 1e12, f"data sheet of {name}"
    return measured_peak(device, precision_name), "measured: best large matmul in this precision"


def measured_peak(device: torch.device, precision_name: str, repeats: int = 5) -> float:
    """Return the best FLOP/s of square matrix multiplications under the precision's autocast on ``device``."""
    size = 4096 if device.type == "cuda" else 512
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    best = 0.0
    with precision.autocast(precision_name, device):
        for _ in range(repeats + 1):  # the first is warm-up
            synchronize(device)
            start = time.perf_counter()
            for _ in range(4):
                a @ b
            synchronize(device)
            best = max(best, 4 * 2 * size**3 / (time.perf_counter() - start))
    return best


def mfu_samples(tokens_per_s: list[float], model: torch.nn.Module, seq_len: int, peak: float) -> list[float]:
    """Return each tokens/s sample as a percentage of the peak FLOP/s."""
    per_token = flops_per_token(model, seq_len)
    return [100.0 * value * per_token / peak for value in tokens_per_s]
