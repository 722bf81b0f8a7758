"""The model card of a Hub repo: training settings, latest metrics and a loss/reward chart (SVG)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

WIDTH, HEIGHT, MARGIN = 640, 240, 30
POINTS = 1000
SERIES = (("loss", "#1f77b4"), ("val_loss", "#ff7f0e"), ("reward", "#2ca02c"))


def chart_svg(history: Sequence[dict[str, Any]]) -> str:
    """Return an SVG line chart of loss, validation loss and reward over iterations (each scaled to fit,
    at most about :data:`POINTS` records drawn)."""
    history = history[:: max(1, len(history) // POINTS)]
    lines = []
    legend = []
    for index, (key, colour) in enumerate(SERIES):
        points = [(r["iteration"], r[key]) for r in history if r.get(key) is not None]
        if len(points) < 2:
            continue
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        coords = " ".join(
            f"{MARGIN + (x - x0) / ((x1 - x0) or 1) * (WIDTH - 2 * MARGIN):.1f},"
            f"{HEIGHT - MARGIN - (y - y0) / ((y1 - y0) or 1) * (HEIGHT - 2 * MARGIN):.1f}"
            for x, y in points
        )
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>')
        legend.append(f'<text x="{MARGIN + index * 170}" y="18" fill="{colour}" font-size="12">'
                      f'{key} {y0:.3g}–{y1:.3g}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}">'
            f'<rect width="100%" height="100%" fill="white"/>{"".join(legend)}{"".join(lines)}'
            f'<text x="{MARGIN}" y="{HEIGHT - 8}" font-size="11">iteration →</text></svg>')


def model_card(repo_id: str, checkpoint: str, state: dict[str, Any], chart_file: str) -> ModelCard:
    """Return the card for a repo whose newest checkpoint is ``checkpoint`` with trainer state ``state``."""
    config = state.get("train_config", {})
    model_config = state.get("model_config") or {}
    settings = "\n".join(f"| {k} | {v} |" for k, v in {**model_config, **config}.items())
    metrics = {k: state.get(k) for k in ("iteration", "max_iterations", "loss", "val_loss", "reward")}
    metric_rows = "\n".join(f"| {k} | {v if v is not None else '—'} |" for k, v in metrics.items())
    card_data = ModelCardData(library_name="transformers", pipeline_tag="text-generation",
                              tags=["azr-trainer", "causal-lm"])
    content = f"""---
{card_data.to_yaml()}
---

# {repo_id.split("/")[-1]}

A small causal language model trained with AZR Trainer (supervised next-token loss plus
GRPO self-play on the reward functions `{config.get('rewards', 'composite')}`). The repo root holds the newest weights
(`{checkpoint}`); every checkpoint is under `checkpoints/`, resumable with
`azr resume hf://{repo_id}/<checkpoint> --max-iterations N`.

```python
from transformers import pipeline
print(pipeline("text-generation", model="{repo_id}")("To be or not")[0]["generated_text"])
```

## Latest metrics

| metric | value |
|---|---|
{metric_rows}

![loss and reward]({chart_file})

## Training settings

| setting | value |
|---|---|
{settings}
"""
    return ModelCard(content)
