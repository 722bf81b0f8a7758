"""What the page shows: the status panel, the progress bar, the charts and the checkpoint and run tables."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gradio as gr
import pandas as pd

CHART_POINTS = 1000  # points per chart series; longer histories are thinned evenly
CHART_TYPES = {"iteration": "int64", "value": "float64", "series": "string"}
LOSS_SERIES = {"loss": "loss", "val_loss": "val loss"}  # history key -> chart label
REWARD_SERIES = {"reward": "reward"}
LR_PARTS = ("trained", "planned")
TABLE_COLUMNS = ["name", "run", "source", "kind", "iteration", "max_iterations", "loss", "val_loss", "timestamp",
                 "size_mb", "has_optimizer", "valid", "reason"]
RUN_COLUMNS = ["run", "checkpoints", "created", "seed", "base_model", "id"]


def _time(timestamp: str | None) -> str:
    return (timestamp or "")[:19].replace("T", " ")


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def render_status(status: dict[str, Any]) -> str:
    """Return the status panel as Markdown."""
    total = status["max_iterations"]
    percent = f" ({100 * status['iteration'] / total:.1f}%)" if total else ""
    lines = [
        f"**State:** `{status['state']}` · **Iteration:** {status['iteration']} / {total}{percent}",
        "",
        "| loss | val loss | reward | LR | tokens/s | ETA | memory |",
        "|---|---|---|---|---|---|---|",
        f"| {_fmt(status['loss'])} | {_fmt(status['val_loss'])} | {_fmt(status['reward'])} | "
        f"{_fmt(status['lr'], '.3g')} | {_fmt(status['tokens_per_s'], ',.0f')} | {_duration(status['eta_s'])} | "
        f"{_fmt(status['memory_mb'], ',.0f')} MB |",
    ]
    if status["reward_components"]:
        parts = " · ".join(f"{k} {v:.3f}" for k, v in status["reward_components"].items())
        lines += ["", f"**Reward components:** {parts}"]
    if status.get("quality"):
        parts = " · ".join(f"{k.replace('_', '-')} {v:.3f}" for k, v in status["quality"].items())
        lines += ["", f"**Greedy on held-out prompts:** {parts}"]
    lines += ["", f"**Run:** {status['run'] or '—'} · **Last checkpoint:** {status['checkpoint'] or '—'}"]
    if status["pushes"]:
        lines.append("**Hub pushes:** " + " · ".join(f"{k}: {v}" for k, v in status["pushes"].items()))
    if status["message"]:
        lines += ["", status["message"]]
    lines += [f"⚠️ {warning}" for warning in status["warnings"]]
    return "\n".join(lines)


def render_progress(status: dict[str, Any]) -> str:
    """Return an HTML progress bar of iteration / max_iterations."""
    total = max(status["max_iterations"], 1)
    return f'<progress value="{status["iteration"]}" max="{total}" style="width:100%;height:1.2em"></progress>'


def history_frame(history: list[dict[str, Any]], series: dict[str, str]) -> pd.DataFrame:
    """Return a long DataFrame (iteration, value, series) of the history keys in ``series`` (key -> label)."""
    rows = []
    for key, label in series.items():
        points = [(r["iteration"], r[key]) for r in history if r.get(key) is not None]
        rows += [(i, v, label) for i, v in points[:: max(1, len(points) // CHART_POINTS)]]
    return chart_frame(rows, series.values())


def chart_frame(rows: list[tuple[int, float, str]], labels: Iterable[str]) -> pd.DataFrame:
    """Return (iteration, value, series) rows as a DataFrame typed for a line chart.

    Each label also gets a row without a value: the page fixes a chart's series (and their colours) when it
    first draws it, so even an empty chart must name them.
    """
    placeholders = [(0, float("nan"), label) for label in labels]
    return pd.DataFrame(placeholders + rows, columns=["iteration", "value", "series"]).astype(CHART_TYPES)


def line_chart(frame: pd.DataFrame, title: str, elem_id: str, height: int = 260) -> gr.LinePlot:
    """Return a line chart of a :func:`chart_frame`, one coloured line per series."""
    return gr.LinePlot(frame, x="iteration", y="value", color="series", title=title, height=height, elem_id=elem_id)


def checkpoint_label(entry: dict[str, Any]) -> str:
    """Return a checkpoint's line in the dropdowns."""
    where = "Hub" if entry["source"] == "hub" else "local"
    target = f"/{entry['max_iterations']}" if entry["max_iterations"] else ""
    return f"{entry['name']} · iteration {entry['iteration']}{target} · {where}"


def checkpoint_table(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """Return the checkpoint listing as the Checkpoints tab's table."""
    rows = [{**e, "size_mb": round(e["size_bytes"] / 2**20, 2), "loss": _fmt(e["loss"]),
             "val_loss": _fmt(e["val_loss"]), "timestamp": _time(e["timestamp"])}
            for e in entries]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def runs_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Return the run listing (one row per run directory, with its checkpoint count) as a table."""
    rows = [{**run, "created": _time(run["created"]), "id": (run["id"] or "")[:12]} for run in runs]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)
