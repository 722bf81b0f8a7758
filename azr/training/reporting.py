"""Reporting a run's scalars to TensorBoard or trackio (cf. transformers' ``report_to`` and its integrations).

Each target is a :class:`~azr.training.callbacks.TrainerCallback`: at every checkpoint it records the checkpoint's
metrics (so a push right after carries them) and at every status the status's metrics, each tag at most once per
iteration. A resumed run appends to the same logs: it writes only iterations after the one it resumed from, and
TensorBoard's ``purge_step`` hides anything an earlier session wrote past that point (a crash after the last
checkpoint). TensorBoard event files go to ``<run>/runs/``, pushed with each checkpoint to the Hub repo's ``runs/``,
where the Hub shows them as training metrics. trackio logs locally (its own directory, no network).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any

from azr.checkpoints.runs import LOG_DIR
from azr.config import REPORT_TO
from azr.errors import ConfigError
from azr.training.callbacks import TrainerCallback
from azr.training.status import TrainingStatus

log = logging.getLogger(__name__)

TRACKIO_PROJECT = "azr"


def scalars(values: dict[str, Any]) -> dict[str, float]:
    """Return the scalars to report from a status's or a checkpoint state's fields, by tag."""
    tags = {"train/loss": values.get("loss"), "eval/loss": values.get("val_loss"),
            "train/reward": values.get("reward"), "eval/heldout_reward": values.get("heldout_reward"),
            "train/learning_rate": values.get("lr"),
            "train/tokens_per_s": values.get("tokens_per_s")}
    tags.update({f"reward/{name}": value for name, value in (values.get("reward_components") or {}).items()})
    return {tag: float(value) for tag, value in tags.items() if value is not None}


def report_targets(report_to: str | list[str] | None) -> list[str]:
    """Return the targets ``report_to`` names ("none", "tensorboard", "trackio" or a list of them).

    Raises ConfigError for an unknown target.
    """
    targets = [report_to or "none"] if isinstance(report_to, str) or report_to is None else list(report_to)
    unknown = [t for t in targets if t not in REPORT_TO]
    if unknown:
        raise ConfigError(f"report_to must be among {', '.join(REPORT_TO)}, got {unknown[0]!r}.")
    return targets


def reporters(targets: list[str], run_dir: Path, start_iteration: int) -> list[TrainerCallback]:
    """Return a callback for each target of :func:`report_targets`, reporting after ``start_iteration``."""
    made: list[TrainerCallback] = []
    if "tensorboard" in targets:
        made.append(TensorBoardReporter(run_dir, start_iteration))
    if "trackio" in targets:
        made.append(TrackioReporter(run_dir.resolve().name, start_iteration))
    return made


class ScalarReporter(TrainerCallback):
    """Writes each tag once per iteration, only for iterations after ``start_iteration``."""

    def __init__(self, start_iteration: int) -> None:
        self._written: dict[str, int] = {}  # tag -> the last iteration written
        self._start = start_iteration

    def on_save(self, path: Path, kind: str) -> None:
        state = json.loads((path / "trainer_state.json").read_text())
        self._report(scalars(state), state["iteration"])
        self.flush()

    def on_status(self, status: TrainingStatus) -> None:
        self._report(scalars(status.as_dict(with_history=False)), status.iteration)

    def _report(self, values: dict[str, float], step: int) -> None:
        new = {tag: value for tag, value in values.items() if step > self._written.get(tag, self._start)}
        if new:
            self.write(new, step)
            self._written.update(dict.fromkeys(new, step))

    def write(self, values: dict[str, float], step: int) -> None:
        """Record ``values`` at ``step``."""
        raise NotImplementedError

    def flush(self) -> None:
        """Make what was written readable by others (before a push)."""


class TensorBoardReporter(ScalarReporter):
    """TensorBoard event files in ``<run_dir>/runs/``."""

    def __init__(self, run_dir: Path, start_iteration: int) -> None:
        super().__init__(start_iteration)
        from torch.utils.tensorboard import (
            SummaryWriter,  # noqa: PLC0415 - only when reporting to TensorBoard
        )

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / LOG_DIR),
                                    purge_step=start_iteration + 1 if start_iteration else None)

    def write(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class TrackioReporter(ScalarReporter):
    """A local trackio run (project ``azr``, named after the run directory), continued on resume."""

    def __init__(self, name: str, start_iteration: int) -> None:
        super().__init__(start_iteration)
        try:
            import trackio  # noqa: PLC0415 - only when reporting to trackio
        except ImportError as exc:
            raise ConfigError("report_to trackio needs the trackio package: pip install 'azr-trainer[trackio]'."
                              ) from exc

        self.trackio = trackio
        with contextlib.redirect_stdout(io.StringIO()) as said:  # trackio prints; the library never does
            self.run = trackio.init(project=TRACKIO_PROJECT, name=name, resume="allow", embed=False,
                                    auto_log_gpu=False, auto_log_cpu=False)
        log.info("%s", said.getvalue().strip())

    def write(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()) as said:
            self.trackio.finish()  # also forgets the current run, which trackio would finish again at exit
        log.info("%s", said.getvalue().strip())
