"""The Runs view: several runs' loss, validation-loss and LR curves, one chart per measure and one line per run,
read from the histories the runs stored (as TensorBoard or W&B users compare runs)."""
from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from azr.app.catalog import Catalog
from azr.app.render import LOSS_AXIS, LR_AXIS, Axis, chart_frame, chart_state, line_chart, lr_format, points
from azr.errors import ConfigError

MAX_RUNS = 12  # lines one chart can tell apart
MEASURES = {"loss": ("Training loss", LOSS_AXIS), "val_loss": ("Validation loss", LOSS_AXIS),
            "lr": ("Learning rate", LR_AXIS)}


def run_series(catalog: Catalog, runs: list[str] | None) -> list[dict[str, Any]]:
    """Return ``{"run", "loss", "val_loss", "lr"}`` for each named run, each measure a list of ``[iteration,
    value]`` points (see :func:`azr.app.render.points`). Raises AZRError for a name that is not a run."""
    names = list(dict.fromkeys(name.strip() for name in runs or [] if name and name.strip()))
    if len(names) > MAX_RUNS:
        raise ConfigError(f"Compare at most {MAX_RUNS} runs at a time, got {len(names)}; untick some.")
    series = []
    for name in names:
        history = catalog.run_history(name)
        series.append({"run": name, **{key: [list(p) for p in points(history, key)] for key in MEASURES}})
    return series


def comparison_charts() -> list[gr.LinePlot]:
    """Lay out the view's charts, empty: one per measure."""
    return [line_chart(chart_frame([], []), title, f"compare-{key.replace('_', '-')}", axis)
            for key, (title, axis) in MEASURES.items()]


def chart_points(series: list[dict[str, Any]]) -> list[tuple[pd.DataFrame, dict[str, Any]]]:
    """Return the points and props of each of :func:`comparison_charts` for :func:`run_series` (see
    :func:`azr.app.render.restyled`): a line per run that has points."""
    return [_chart(series, key, axis) for key, (_, axis) in MEASURES.items()]


def _chart(series: list[dict[str, Any]], key: str, axis: Axis) -> tuple[pd.DataFrame, dict[str, Any]]:
    rows = [(i, v, run["run"]) for run in series for i, v in run[key]]
    top = max((v for _, v, _ in rows), default=0.0)
    return chart_frame(rows, [run["run"] for run in series]), {
        **chart_state([run["run"] for run in series if run[key]], max((i for i, _, _ in rows), default=0)),
        "y_axis_format": lr_format(top) if axis is LR_AXIS else axis.format}
