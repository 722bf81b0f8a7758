"""What the charts are given: titled axes with fixed-width tick formats, short x labels, sparse series drawn as lines
from their first measurement, and an LR preview whose trained part stands clear of the frame."""
from __future__ import annotations

import math

from azr.app.render import (
    LOSS_AXIS,
    LOSS_SERIES,
    LR_AXIS,
    REWARD_AXIS,
    REWARD_SERIES,
    history_frame,
    line_chart,
    lr_chart,
)


def test_a_single_self_play_round_is_a_line_up_to_the_newest_iteration():
    history = [{"iteration": i, "loss": 5.0 - i / 100, "reward": 0.6 if i == 10 else None,
                "val_loss": None} for i in range(1, 16)]
    frame = history_frame(history, REWARD_SERIES)
    points = [(i, v) for i, v in zip(frame["iteration"], frame["value"]) if not math.isnan(v)]
    assert points == [(10, 0.6), (15, 0.6)]
    loss = history_frame(history, LOSS_SERIES)
    assert list(loss[loss["series"] == "loss"]["iteration"])[1:] == list(range(1, 16))  # dense: unchanged
    assert history_frame([], REWARD_SERIES)["value"].isna().all()


def test_axes_have_units_fixed_width_labels_and_short_iteration_labels():
    for axis, title in ((LOSS_AXIS, "loss (nats per token)"), (REWARD_AXIS, "reward (weighted sum of the functions)"),
                        (LR_AXIS, "learning rate")):
        chart = line_chart(history_frame([], {}), "t", "id", axis)
        assert (chart.y_title, chart.x_title) == (title, "iteration")
        assert chart.y_axis_format in (".2f", ".0e") and chart.x_axis_format == "~s"
    assert line_chart(history_frame([], {}), "t", "id", REWARD_AXIS).y_lim is None  # a reward may leave 0 to 1


def test_the_lr_preview_starts_at_zero_with_room_above_the_highest_lr():
    records = [{"iteration": i, "lr": 3e-4, "part": "trained"} for i in range(1, 31)]
    records += [{"iteration": i, "lr": 3e-4 * (1 - i / 2000), "part": "planned"} for i in range(31, 2000, 50)]
    chart = lr_chart(records)
    assert chart.y_lim == [0, 1.2 * 3e-4]
    assert {row[2] for row in chart.value["data"]} == {"trained", "planned"}
