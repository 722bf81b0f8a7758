"""One page's copy of the job's history, kept up to date by asking only for the records it does not have yet.

Each browser session holds a :class:`Feed` in a ``gr.State``. Every poll asks the job for the records after
the newest one the feed has, so a poll costs what is new, not the length of the run. The feed starts over when
the job starts or resumes a run (its ``launch`` changes) or its iteration goes backwards.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azr.app.render import history_chart

Status = dict[str, Any]


@dataclass
class Feed:
    """The launch a page shows, that launch's history records so far, and what the page last drew."""

    launch: int | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    drawn: tuple | None = None  # the key of the status the page shows (see :func:`status_key`)
    charted: tuple[int | None, int] = (None, -1)  # (launch, record count) the charts show
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)  # the props each chart has, by its name
    restyle: dict[str, dict[str, Any]] = field(default_factory=dict)  # props each chart gets after its points

    @property
    def last_iteration(self) -> int:
        """The iteration of the newest record (0 when there is none)."""
        return self.records[-1]["iteration"] if self.records else 0


def follow(feed: Feed, fetch: Callable[[int], Status]) -> Status:
    """Bring ``feed`` up to date in place and return the status that did it.

    ``fetch(since)`` returns the job's status with the history records after iteration ``since``. Normally it
    is called once, with the feed's newest iteration; after a new launch or a rewind the feed is emptied and
    refilled with a second call from iteration 0.
    """
    status = fetch(feed.last_iteration)
    if status["launch"] != feed.launch or status["iteration"] < feed.last_iteration:
        if feed.last_iteration:
            status = fetch(0)
        feed.launch, feed.records = status["launch"], []
    last = feed.last_iteration
    feed.records.extend(r for r in status["history"] if r["iteration"] > last)
    return status


def status_key(status: Status) -> tuple:
    """What of a status the page shows: when it is unchanged, nothing needs drawing."""
    return (status["launch"], status["state"], status["checkpoint"], status["iteration"], status["message"],
            tuple(status["pushes"].items()), tuple(status["warnings"]))


def charts_stale(feed: Feed) -> bool:
    """True when the charts do not show the feed's records yet; marks them as shown."""
    current = (feed.launch, len(feed.records))
    stale, feed.charted = current != feed.charted, current
    return stale


def chart(feed: Feed, name: str, series: dict[str, str], max_iterations: int) -> Any:
    """The points of the feed's chart ``name`` (see :func:`history_chart`); its new props wait in ``feed.restyle``."""
    frame, props, feed.charts[name] = history_chart(feed.records, series, max_iterations, feed.charts.get(name))
    if props is not None:
        feed.restyle[name] = props
    return frame
