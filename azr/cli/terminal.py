"""How the CLI shows things: progress of a run, checkpoint tables, checkpoint reports, and the small formatters."""
from __future__ import annotations

import functools
import os
import shlex
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

from azr.checkpoints.names import iteration_in_name
from azr.utils.units import mib_text

if TYPE_CHECKING:  # annotations only: rendering a listing must not import torch
    from azr.checkpoints.info import CheckpointInfo
    from azr.training.status import TrainingStatus


def say(line: str, stream: TextIO | None = None) -> None:
    """Print a line above any progress bar and flush it (logs of hosted runners see it at once)."""
    stream = stream or sys.stdout
    tqdm.write(line, file=stream)
    stream.flush()


def _saved_line(status: TrainingStatus) -> str:
    """The line for a checkpoint status: one written in the background says where training is now."""
    now = f"iteration {status.iteration}, loss {number_text(status.loss)}"
    if iteration_in_name(Path(status.checkpoint).name) == status.iteration:
        return f"Saved {status.checkpoint} ({now})"
    return f"Saved {status.checkpoint} in the background (training is at {now})"


def say_resume(checkpoint: str, max_iterations: int) -> None:
    """Print the command that resumes ``checkpoint``."""
    say(f"Resume with: azr resume {shlex.quote(checkpoint)} --max-iterations {max_iterations}")


BAR_INTERVAL_S = 0.25  # the bar is redrawn at most this often, however fast the steps
SIZELESS_TERMINAL = {"ncols": 80, "nrows": 24}  # the bar's size on a terminal that reports none


def _bar_size(stream: TextIO) -> dict[str, Any]:
    """tqdm's size options for ``stream``: the terminal's own, or a fixed size where the terminal reports none
    (``script``, some CI consoles), where tqdm would draw nothing."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return SIZELESS_TERMINAL
    return {"dynamic_ncols": True} if size.columns > 0 and size.lines > 0 else SIZELESS_TERMINAL


class Progress:
    """Renders a run's statuses: a tqdm bar on a terminal (plain lines elsewhere), a line per checkpoint saved,
    each warning once. Call it with every status, and :meth:`step` after every step (the bar moves between
    statuses); it can follow several runs one after another."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.bar: tqdm | None = None
        self.warned: set[str] = set()
        self.pushes: dict[str, str] = {}
        self.last: TrainingStatus | None = None

    def __call__(self, status: TrainingStatus) -> None:
        self.last = status
        for warning in status.warnings:
            if warning not in self.warned:
                self.warned.add(warning)
                say(f"warning: {warning}", self.stream)
        for name, push in status.pushes.items():
            if push != self.pushes.get(name) and push.startswith(("pushed", "failed", "pending")):
                say(f"Push of {name}: {push}")
        self.pushes = dict(status.pushes)
        if status.state == "checkpoint":
            say(_saved_line(status))
            for sample in status.samples:
                say(f"  self-play: {sample['prompt'][-60:]!r} -> {sample['continuation'][:80]!r} "
                    f"(reward {sample['reward']:.3f})")
        elif status.state == "running" and status.message:
            say(status.message)
        elif status.state == "running" and not self.interactive:
            eta = tqdm.format_interval(status.eta_s) if status.eta_s is not None else "?"
            say(f"iteration {status.iteration}/{status.max_iterations}  {_metrics(status)}  ETA {eta}", self.stream)
        if self.bar is None:
            self.bar = tqdm(total=status.max_iterations, initial=status.iteration, unit="it", file=self.stream,
                            mininterval=BAR_INTERVAL_S, disable=not self.interactive, **_bar_size(self.stream))
        self.bar.set_postfix_str(_metrics(status), refresh=False)
        self.bar.update(status.iteration - self.bar.n)
        if not status.is_training:
            self.close()

    def step(self, iteration: int) -> None:
        """Move the bar to ``iteration`` (redrawn at most every :data:`BAR_INTERVAL_S`; no line off a terminal)."""
        if self.bar is not None:
            self.bar.update(iteration - self.bar.n)

    def close(self) -> None:
        """Close the current bar; the next status starts a new one."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _metrics(status: TrainingStatus) -> str:
    parts = [("loss", status.loss, "{:.4f}"), ("reward", status.reward, "{:.3f}"), ("±", status.reward_std, "{:.3f}"),
             ("held-out", status.heldout_reward, "{:.3f}"),
             ("kl", status.kl, "{:.4f}"), ("lr", status.lr, "{:.2e}")]  # as lr_text
    text = "  ".join(f"{name} {form.format(value)}" for name, value, form in parts if value is not None)
    if status.tokens_per_s:
        text += f"  {status.tokens_per_s:,.0f} tok/s"
    return text


def format_checkpoints(infos: list[CheckpointInfo], run_names: list[str] | None = None) -> str:
    """Return the checkpoints as an aligned text table; with ``run_names`` (one per checkpoint), a RUN column first."""
    header = ("NAME", "KIND", "ITER", "LOSS", "VAL LOSS", "SAVED", "SIZE", "OPTIMIZER", "STATUS")
    rows = [header] + [
        (i.name, i.kind, number_text(i.iteration), number_text(i.loss), number_text(i.val_loss),
         local_time(i.timestamp), mib_text(i.size_bytes), "yes" if i.has_optimizer else "no",
         "valid" if i.valid else f"invalid: {i.reason}")
        for i in infos
    ]
    if run_names is not None:
        rows = [(run, *row) for run, row in zip(["RUN", *run_names], rows)]
        header = rows[0]
    widths = [max(len(row[c]) for row in rows) for c in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)


REPORT_WIDTH = 100  # a report's lines wrap before this many characters
TRAINING_GROUPS = {  # a run's settings in a report: these by concern, the others as "Training"
    "Learning rate": ("lr", "lr_schedule", "warmup", "min_lr_ratio", "extend_schedule", "weight_decay", "grad_clip"),
    "Saving": ("save_every", "async_save", "keep_last", "keep_best", "status_every", "val_every", "val_windows"),
    "Self-play": ("self_play_every", "self_play_batch", "num_generations", "rl_weight", "rl_norm_rescale",
                  "scale_rewards", "loss_type", "beta", "ref_sync_every", "rewards", "gen_max_new_tokens",
                  "temperature", "top_k", "top_p"),
}


def format_report(report: dict[str, Any]) -> str:
    """Return a checkpoint report (see ``azr.cli.checkpoint_commands.inspect_checkpoint``) as aligned lines."""
    config = report["train_config"] or {}
    position = report["data_position"] or {}
    corpus = report["corpus"] or {}
    checksums = "ok" if report["valid"] else f"INVALID: {report['reason']}"
    run = f"{report['run']} (id {report['run_id']})" if report.get("run") and report["run_id"] else None
    lines = [
        ("Checkpoint", report["path"]),
        ("Run", run or report.get("run") or report["run_id"] or "-"),
        ("Kind", report["kind"]),
        ("Iteration", f"{report['iteration']} of {report['max_iterations']}"),
        ("Has optimizer", "yes" if report["has_optimizer"] else "no"),
        ("History length", report["history_length"]),
        ("Loss / val loss / reward", " / ".join(number_text(report[k]) for k in ("loss", "val_loss", "reward"))),
        ("Saved", local_time(report["timestamp"])),
        ("LR at this point", f"{lr_text(report['lr'])} ({config.get('lr_schedule', '?')} schedule)"),
        ("Data position", f"epoch {position.get('epoch')}, sample {position.get('offset')} "
                          f"of {position.get('num_samples')}"),
        ("Corpus", f"{corpus.get('source')}, {corpus.get('num_texts')} text(s)"
                   + (f", stored as {corpus['file']}" if corpus.get("file") else "")),
        ("Model", pairs(report["model_config"])),
        *((label, pairs(settings)) for label, settings in _training_groups(config).items()),
        ("Files", f"{report['files']} files, {mib_text(report['size_bytes'])}, checksums {checksums}"),
        ("Versions", pairs(report["versions"])),
    ]
    width = max(len(label) for label, _ in lines) + 2  # the values' column; a long value goes on below, indented
    wrap = functools.partial(textwrap.wrap, width=REPORT_WIDTH - width, break_long_words=False, break_on_hyphens=False)
    return "\n".join(f"{label + ':':<{width}}" + ("\n" + " " * width).join(wrap(str(value)) or [""])
                     for label, value in lines)


def _training_groups(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A run's settings by :data:`TRAINING_GROUPS`, the LR as :func:`lr_text`; the others under "Training"."""
    values = {**config, "lr": lr_text(config["lr"])} if "lr" in config else config
    groups = {label: {k: values[k] for k in keys if k in values} for label, keys in TRAINING_GROUPS.items()}
    grouped = {key for settings in groups.values() for key in settings}
    return {"Training": {k: v for k, v in values.items() if k not in grouped}, **{k: v for k, v in groups.items() if v}}


def pairs(values: dict[str, Any] | None) -> str:
    return " ".join(f"{key}={value}" for key, value in (values or {}).items()) or "-"


def lr_text(value: float | None) -> str:
    """A learning rate as the CLI shows every one (the progress bar's ``lr 3.00e-03`` too)."""
    return "-" if value is None else f"{value:.2e}"


def number_text(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3e}" if abs(value) < 1e-3 and value else f"{value:.4f}"


def local_time(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromisoformat(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


