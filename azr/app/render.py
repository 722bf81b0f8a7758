"""What the page shows: the status panel, the progress bar, the charts and the checkpoint and run tables."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd
from tqdm import tqdm

CHART_POINTS = 1000  # points per chart series; longer histories are thinned evenly
CHART_TYPES = {"iteration": "int64", "value": "float64", "series": "string"}
LOSS_SERIES = {"loss": "loss", "val_loss": "val loss"}  # history key -> chart label
REWARD_SERIES = {"reward": "reward", "heldout_reward": "held-out reward"}
LR_PARTS = ("trained", "planned")


@dataclass(frozen=True)
class Axis:
    """A chart's y axis: its title (with the unit), a d3 format for its tick labels, optional fixed limits."""

    title: str
    format: str
    limits: tuple[float, float | None] | None = None


LOSS_AXIS = Axis("loss (nats per token)", ".2f")
REWARD_AXIS = Axis("reward (0 to 1)", ".1f", (0.0, 1.0))
LR_AXIS = Axis("learning rate", ".0e", (0.0, None))
TABLE_COLUMNS = ["name", "run", "source", "kind", "iteration", "max_iterations", "loss", "val_loss", "timestamp",
                 "size_mb", "has_optimizer", "valid", "reason"]
RUN_COLUMNS = ["run", "checkpoints", "created", "seed", "base_model", "id"]


def _time(timestamp: str | None) -> str:
    return (timestamp or "")[:19].replace("T", " ")


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def render_status(status: dict[str, Any]) -> str:
    """Return the status panel as Markdown."""
    total = status["max_iterations"]
    percent = f" ({100 * status['iteration'] / total:.1f}%)" if total else ""
    eta = "—" if status["eta_s"] is None else tqdm.format_interval(status["eta_s"])
    lines = [
        f"**State:** `{status['state']}` · **Iteration:** {status['iteration']} / {total}{percent}",
        "",
        "| loss | val loss | reward | held-out reward | LR | tokens/s | ETA | memory |",
        "|---|---|---|---|---|---|---|---|",
        f"| {_fmt(status['loss'])} | {_fmt(status['val_loss'])} | {_fmt(status['reward'])} | "
        f"{_fmt(status.get('heldout_reward'))} | "
        f"{_fmt(status['lr'], '.3g')} | {_fmt(status['tokens_per_s'], ',.0f')} | {eta} | "
        f"{_fmt(status['memory_mb'], ',.0f')} MB |",
    ]
    if status["reward_components"]:
        parts = " · ".join(f"{k} {v:.3f}" for k, v in status["reward_components"].items())
        lines += ["", f"**Rewards:** {parts} · std {_fmt(status.get('reward_std'), '.3f')} · "
                      f"KL {_fmt(status.get('kl'), '.4f')}"]
    lines += [f"- `{_quote(s['prompt'])}` → `{_quote(s['continuation'])}` (reward {s['reward']:.3f})"
              for s in status.get("samples") or []]
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


def _quote(text: str) -> str:
    """Text shown inside Markdown code: on one line, without backticks."""
    return " ".join(text.replace("`", "'").split()) or " "


def render_progress(status: dict[str, Any]) -> str:
    """Return an HTML progress bar of iteration / max_iterations."""
    total = max(status["max_iterations"], 1)
    return f'<progress value="{status["iteration"]}" max="{total}" style="width:100%;height:1.2em"></progress>'


def history_frame(history: list[dict[str, Any]], series: dict[str, str]) -> pd.DataFrame:
    """Return a long DataFrame (iteration, value, series) of the history keys in ``series`` (key -> label).

    A key measured now and then (reward at self-play, val loss at validation) keeps its latest value up to the
    newest iteration, so its line is drawn from its first measurement on instead of a lone point.
    """
    newest = history[-1]["iteration"] if history else 0
    rows = []
    for key, label in series.items():
        points = [(r["iteration"], r[key]) for r in history if r.get(key) is not None]
        points = points[:: max(1, len(points) // CHART_POINTS)]
        if points and points[-1][0] < newest:
            points.append((newest, points[-1][1]))
        rows += [(i, v, label) for i, v in points]
    return chart_frame(rows, series.values())


def chart_frame(rows: list[tuple[int, float, str]], labels: Iterable[str]) -> pd.DataFrame:
    """Return (iteration, value, series) rows as a DataFrame typed for a line chart.

    Each label also gets a row without a value: the page fixes a chart's series (and their colours) when it
    first draws it, so even an empty chart must name them.
    """
    placeholders = [(0, float("nan"), label) for label in labels]
    return pd.DataFrame(placeholders + rows, columns=["iteration", "value", "series"]).astype(CHART_TYPES)


def line_chart(frame: pd.DataFrame, title: str, elem_id: str, axis: Axis, height: int = 260) -> gr.LinePlot:
    """Return a line chart of a :func:`chart_frame`, one coloured line per series, its y axis as ``axis`` says.

    Tick labels have one width whatever the values (a d3 format), so the page never clips them, and the x labels
    are short (``1.5k``), so they never run into each other.
    """
    return gr.LinePlot(frame, x="iteration", y="value", color="series", title=title, height=height,
                       elem_id=elem_id, x_title="iteration", x_axis_format="~s", y_title=axis.title,
                       y_axis_format=axis.format, y_lim=list(axis.limits) if axis.limits else None)


def lr_chart(records: list[dict[str, Any]]) -> gr.LinePlot:
    """Return the LR preview's update for :func:`azr.services.lr_preview` records: from zero to a fifth above the
    highest LR, so the trained part (flat at the top after a short run) stands clear of the frame."""
    frame = chart_frame([(r["iteration"], r["lr"], r["part"]) for r in records], LR_PARTS)
    top = max((r["lr"] for r in records), default=0.0)
    return gr.LinePlot(frame, y_lim=[0, 1.2 * top] if top > 0 else None)


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
