"""What the page shows: the status panel, the progress bar, the charts and the checkpoint and run tables."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

CHART_POINTS = 1000  # points per chart series; longer histories are thinned evenly
CHART_TYPES = {"iteration": "int64", "value": "float64", "series": "string"}
LOSS_SERIES = {"loss": "loss", "val_loss": "val loss"}  # history key -> chart label
REWARD_SERIES = {"reward": "reward", "heldout_reward": "held-out reward"}
LR_PARTS = ("trained", "planned")
STATE_WORDS = {"checkpoint": "saving checkpoint"}  # a state's name as the status panel says it
QUALITY_WORDS = {"seq_rep_4": "repeated 4-token sequences (seq-rep-4, 0 is best)",
                 "distinct_2": "distinct token pairs (distinct-2, 1 is best)"}


@dataclass(frozen=True)
class Axis:
    """A chart's y axis: its title (with the unit), a d3 format for its tick labels, optional fixed limits."""

    title: str
    format: str
    limits: tuple[float, float | None] | None = None


LOSS_AXIS = Axis("loss (nats per token)", ".2f")
REWARD_AXIS = Axis("reward (weighted sum of the functions)", ".2f")  # ngram goes below 0, weights above 1
LR_AXIS = Axis("learning rate", ".4f", (0.0, None))
EMPTY_NOTE = "No points yet: the curves start with the first iteration."
EMPTY_END = 100  # where an empty chart's x axis ends
# An x axis reaches this much past its last iteration: the chart aligns a label at the very end of the axis flush
# with it, shifted into its neighbour ("480500"); a label just inside the end stays centred on its tick.
X_MARGIN = 1.02
# (the name tells the kind, model_<kind>_<N>, and where it is: hf://<repo>/... on the Hub)
TABLE_COLUMNS = {"name": "Checkpoint", "iteration": "Iteration", "max_iterations": "Target", "loss": "Loss",
                 "val_loss": "Val loss", "timestamp": "Saved", "size_mib": "Size (MiB)", "has_optimizer": "Optimizer",
                 "valid": "Valid", "reason": "Problem"}
RUN_COLUMNS = {"run": "Run", "checkpoints": "Checkpoints", "created": "Created", "seed": "Seed",
               "base_model": "Base model"}


def _time(timestamp: str | None) -> str:
    return (timestamp or "")[:19].replace("T", " ")


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def render_status(status: dict[str, Any]) -> str:
    """Return the status panel as Markdown, every number with its unit and every measure in words."""
    total = status["max_iterations"]
    percent = f" ({100 * status['iteration'] / total:.1f}%)" if total else ""
    eta = "—" if status["eta_s"] is None else duration_text(status["eta_s"])
    lines = [
        f"**State:** `{STATE_WORDS.get(status['state'], status['state'])}` · "
        f"**Iteration:** {status['iteration']} / {total}{percent}",
        "",
        "| loss (nats/token) | val loss | reward | held-out reward | LR | tokens/s | time left | peak memory (MiB) |",
        "|---|---|---|---|---|---|---|---|",
        f"| {_fmt(status['loss'])} | {_fmt(status['val_loss'])} | {_fmt(status['reward'])} | "
        f"{_fmt(status.get('heldout_reward'))} | "
        f"{_fmt(status['lr'], '.3g')} | {_fmt(status['tokens_per_s'], ',.0f')} | {eta} | "
        f"{_fmt(status['memory_mb'], ',.0f')} |",
    ]
    if status["reward_components"]:
        parts = " · ".join(f"{k} {v:.3f}" for k, v in status["reward_components"].items())
        lines += ["", f"**Rewards (mean of each function):** {parts} · spread within a group (std) "
                      f"{_fmt(status.get('reward_std'), '.3f')} · drift from the reference model (KL, nats) "
                      f"{_fmt(status.get('kl'), '.4f')}"]
    lines += [f"- `{_quote(s['prompt'])}` → `{_quote(s['continuation'])}` (reward {s['reward']:.3f})"
              for s in status.get("samples") or []]
    if status.get("quality"):
        parts = " · ".join(f"{QUALITY_WORDS.get(k, k)} {v:.3f}" for k, v in status["quality"].items())
        lines += ["", f"**Held-out prompts, continued greedily:** {parts}"]
    lines += ["", f"**Run:** {status['run'] or '—'} · **Last checkpoint:** {status['checkpoint'] or '—'}"]
    if status["pushes"]:
        lines.append("**Hub pushes:** " + " · ".join(f"{k}: {v}" for k, v in status["pushes"].items()))
    if status["message"]:
        lines += ["", status["message"]]
    lines += [f"⚠️ {warning}" for warning in status["warnings"]]
    return "\n".join(lines)


def duration_text(seconds: float) -> str:
    """``seconds`` as a short text with its units: ``45 s``, ``12 min 05 s``, ``2 h 03 min``."""
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _quote(text: str) -> str:
    """Text shown inside Markdown code: on one line, without backticks, characters that draw nothing (control
    and unassigned ones, which a browser shows as a box) as their escapes."""
    text = "".join(c if c.isprintable() or c.isspace() else c.encode("unicode_escape").decode() for c in text)
    return " ".join(text.replace("`", "'").split()) or " "


def render_progress(status: dict[str, Any]) -> str:
    """Return an HTML progress bar of iteration / max_iterations."""
    total = max(status["max_iterations"], 1)
    return f'<progress value="{status["iteration"]}" max="{total}" style="width:100%;height:1.2em"></progress>'


def verification_text(entries: list[dict[str, Any]]) -> str:
    """What verifying the local checkpoints' files found: how many, and which are damaged and why."""
    local = [e for e in entries if e["source"] == "local"]
    damaged = [f"{e['name']} ({e['reason']})" for e in local if not e["valid"]]
    text = f"{len(local)} checkpoint{'' if len(local) == 1 else 's'} verified, {len(damaged)} damaged"
    return text + (": " + "; ".join(damaged) if damaged else "") + "."


def history_frame(history: list[dict[str, Any]], series: dict[str, str]) -> pd.DataFrame:
    """Return a long DataFrame (iteration, value, series) of the history keys in ``series`` (key -> label).

    A key measured now and then (reward at self-play, val loss at validation) keeps its latest value up to the
    newest iteration, so its line is drawn from its first measurement on instead of a lone point.
    """
    rows = [(i, v, label) for key, label in series.items() for i, v in points(history, key)]
    return chart_frame(rows, series.values())


def points(history: Sequence[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """Return the (iteration, value) points of ``key`` in ``history``, thinned evenly to about
    :data:`CHART_POINTS`; a sparse key's latest value is carried to the newest iteration (see
    :func:`history_frame`)."""
    newest = history[-1]["iteration"] if history else 0
    found = [(r["iteration"], r[key]) for r in history if r.get(key) is not None]
    found = found[:: max(1, len(found) // CHART_POINTS)]
    if found and found[-1][0] < newest:
        found.append((newest, found[-1][1]))
    return found


def chart_frame(rows: list[tuple[int, float, str]], labels: Iterable[str]) -> pd.DataFrame:
    """Return (iteration, value, series) rows as a DataFrame typed for a line chart.

    Each label also gets a row without a value: the page fixes a chart's series (and their colours) when it
    first draws it, so even an empty chart must name them.
    """
    placeholders = [(0, float("nan"), label) for label in labels]
    return pd.DataFrame(placeholders + rows, columns=["iteration", "value", "series"]).astype(CHART_TYPES)


def measured(history: list[dict[str, Any]], series: dict[str, str]) -> list[str]:
    """Return the labels of the ``series`` keys that have a value in ``history``: the lines a chart draws."""
    return [label for key, label in series.items() if any(r.get(key) is not None for r in history)]


def chart_state(lines: list[str], end: int) -> dict[str, Any]:
    """Return the props that show what a chart holds: a legend of its ``lines`` only and an x axis from 0 to its
    last iteration ``end`` (see :data:`X_MARGIN`); without lines, a note in place of the points and an x axis of 0
    to 100 (vega would label an empty axis "NaN")."""
    end = end if lines and end > 0 else EMPTY_END
    return {"colors_in_legend": list(lines), "caption": None if lines else EMPTY_NOTE, "x_lim": [0, end * X_MARGIN]}


def line_chart(frame: pd.DataFrame, title: str, elem_id: str, axis: Axis, height: int = 260) -> gr.LinePlot:
    """Return an empty line chart of a :func:`chart_frame`, one coloured line per series, its y axis as ``axis``
    says.

    Tick labels have one width whatever the values (a d3 format), so the page never clips them; the x labels are
    short (``1.5k``) and the x axis ends a little past its last iteration (:data:`X_MARGIN`), so they never run
    into each other.
    """
    return gr.LinePlot(frame, x="iteration", y="value", color="series", title=title, height=height,
                       elem_id=elem_id, x_title="iteration", x_axis_format="~s", y_title=axis.title,
                       y_axis_format=axis.format, y_lim=list(axis.limits) if axis.limits else None,
                       **chart_state([], 0))


def restyled(props: dict[str, Any] | None) -> Any:
    """Return the update that gives a chart ``props`` (None: none).

    The page draws new points in place, but a change of props rebuilds the chart from the points it had before
    the update: so every chart update is two, the points first (the frame alone), then the props (this one).
    """
    return gr.skip() if props is None else gr.LinePlot(**props)


def history_chart(history: list[dict[str, Any]], series: dict[str, str], target: int,
                  shown: dict[str, Any] | None) -> tuple[pd.DataFrame, dict[str, Any] | None, dict[str, Any]]:
    """Return a chart's points for ``history`` of a run to ``target`` iterations, its new props (None while they
    stay ``shown``, the props the page's chart has now) and its props (see :func:`restyled`). The x axis ends at the
    target, so the chart rebuilds only when a line appears or the target changes, not at every point."""
    props = chart_state(measured(history, series), max(target, history[-1]["iteration"] if history else 0))
    return history_frame(history, series), None if props == shown else props, props


def lr_format(top: float) -> str:
    """Return a fixed-point d3 format with the decimals an LR axis up to ``top`` needs (``0.0005``, not
    ``5e-4``)."""
    return f".{max(1, math.ceil(-math.log10(top)) + 1)}f" if top > 0 else LR_AXIS.format


def lr_chart(records: list[dict[str, Any]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return the LR preview's points and props for :func:`azr.services.lr_preview` records (see :func:`restyled`).

    Its x axis ends at the last record (the target) and its y axis goes from zero to a fifth above the highest LR,
    so the trained part (flat at the top after a short run) stands clear of the frame. The planned line starts at
    the last trained point, so the two join.
    """
    rows = [(r["iteration"], r["lr"], r["part"]) for r in records]
    trained = [row for row in rows if row[2] == LR_PARTS[0]]
    if trained and len(trained) < len(rows):
        rows.append((trained[-1][0], trained[-1][1], LR_PARTS[1]))
    top = max((r["lr"] for r in records), default=0.0)
    lines = sorted({row[2] for row in rows}, key=LR_PARTS.index)
    end = max((r["iteration"] for r in records), default=0)
    return chart_frame(rows, LR_PARTS), {"y_lim": [0, 1.2 * top] if top > 0 else list(LR_AXIS.limits),
                                         "y_axis_format": lr_format(top), **chart_state(lines, end)}


def checkpoint_label(entry: dict[str, Any]) -> str:
    """Return a checkpoint's line in the dropdowns."""
    where = "Hub" if entry["source"] == "hub" else "local"
    target = f"/{entry['max_iterations']}" if entry["max_iterations"] else ""
    return f"{entry['name']} · iteration {entry['iteration']}{target} · {where}"


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def checkpoint_table(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """Return the checkpoint listing as the Checkpoints tab's table, its columns named for people."""
    rows = [{**e, "size_mib": _fmt(e["size_bytes"] / 2**20, ",.1f"), "loss": _fmt(e["loss"]),
             "val_loss": _fmt(e["val_loss"]), "timestamp": _time(e["timestamp"]), "valid": _yes(e["valid"]),
             "has_optimizer": _yes(e["has_optimizer"]), "reason": e["reason"] or "—"}
            for e in entries]
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).rename(columns=TABLE_COLUMNS)


def runs_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Return the run listing (one row per run directory, with its checkpoint count) as a table; the run's id stays
    internal (its name says which run it is)."""
    rows = [{**run, "created": _time(run["created"]), "seed": _fmt(run["seed"], "d"),
             "base_model": run["base_model"] or "—"} for run in runs]
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS)).rename(columns=RUN_COLUMNS)


def _size(size: int) -> str:
    """A number of bytes in MB or GB (decimal: 1 GB = 10⁹ bytes)."""
    return f"{size / 1e9:,.2f} GB" if size >= 1e9 else f"{size / 1e6:,.1f} MB"


def render_memory(estimate: dict[str, Any]) -> str:
    """Return ``/estimate_memory``'s answer (see :func:`azr.config.memory.estimate`) as one Markdown line."""
    return (f"**Estimated memory** (an estimate, fp32; 1 GB = 10⁹ bytes): {estimate['parameters'] / 1e6:,.1f} M "
            f"parameters · weights + AdamW state {_size(estimate['weights_and_optimizer_bytes'])} · gradients "
            f"{_size(estimate['gradients_bytes'])} · activations, roughly, {_size(estimate['activations_bytes'])} "
            f"for a batch of {estimate['batch_size']} × {estimate['seq_len']} tokens · "
            + (f"a background save's copy {_size(estimate['staged_copy_bytes'])} · "
               if estimate.get("staged_copy_bytes") else "")
            + f"in all about {_size(estimate['total_bytes'])}." + _too_large(estimate))


def _too_large(estimate: dict[str, Any]) -> str:
    """What fits instead, when the estimate exceeds the memory free on this machine (nothing when it fits)."""
    free, fits = estimate.get("available_bytes"), estimate.get("largest_batch_that_fits")
    if free is None or estimate["total_bytes"] <= free:
        return ""
    what_fits = f"a batch of {fits} fits" if fits else "not even a batch of 1 fits: choose a smaller model"
    return f" **That is more than the {_size(free)} free on this machine**: {what_fits}."
