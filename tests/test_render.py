"""What the charts and tables are given: titled axes with fixed-width tick formats, short x labels, sparse series
drawn as lines from their first measurement, an empty state instead of a "NaN" axis, a legend of the lines drawn
only, an LR preview that ends at its target with the planned part joined to the trained one, and tables with
headers for people."""
from __future__ import annotations

import math

from azr.app.render import (
    EMPTY_NOTE,
    LOSS_AXIS,
    LOSS_SERIES,
    LR_AXIS,
    REWARD_AXIS,
    REWARD_SERIES,
    X_MARGIN,
    checkpoint_table,
    history_chart,
    history_frame,
    line_chart,
    lr_chart,
    runs_table,
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
        assert chart.y_axis_format in (".2f", ".4f") and chart.x_axis_format == "~s"
    assert line_chart(history_frame([], {}), "t", "id", REWARD_AXIS).y_lim is None  # a reward may leave 0 to 1


def test_an_empty_chart_says_so_and_has_an_axis_instead_of_nan():
    chart = line_chart(history_frame([], LOSS_SERIES), "t", "id", LOSS_AXIS)
    assert chart.caption == EMPTY_NOTE and chart.x_lim == [0, 100 * X_MARGIN] and chart.colors_in_legend == []


def test_the_legend_names_only_the_lines_drawn_and_the_chart_changes_only_with_its_lines_or_target():
    history = [{"iteration": i, "loss": 5.0, "val_loss": None} for i in range(1, 11)]
    _, props, shown = history_chart(history, LOSS_SERIES, 500, None)
    assert props == shown and props["colors_in_legend"] == ["loss"] and props["caption"] is None
    assert props["x_lim"] == [0, 500 * X_MARGIN]  # the run's target, a little past it (no label flush at the end)
    history.append({"iteration": 11, "loss": 4.9, "val_loss": None})
    assert history_chart(history, LOSS_SERIES, 500, shown)[1] is None  # the points only
    history[-1]["val_loss"] = 4.0
    assert history_chart(history, LOSS_SERIES, 500, shown)[1]["colors_in_legend"] == ["loss", "val loss"]
    assert history_chart(history, LOSS_SERIES, 800, shown)[1]["x_lim"] == [0, 800 * X_MARGIN]


def test_the_lr_preview_ends_at_its_target_and_its_planned_line_starts_where_the_trained_one_ends():
    records = [{"iteration": i, "lr": 3e-4, "part": "trained"} for i in range(1, 31)]
    records += [{"iteration": i, "lr": 3e-4 * (1 - i / 2000), "part": "planned"} for i in range(31, 2001, 50)]
    records.append({"iteration": 2000, "lr": 0.0, "part": "planned"})
    frame, props = lr_chart(records)
    assert props["y_lim"] == [0, 1.2 * 3e-4] and props["x_lim"] == [0, 2000 * X_MARGIN]
    assert props["y_axis_format"] == ".5f" and format(3e-4, props["y_axis_format"]) == "0.00030"
    planned = frame[frame["series"] == "planned"].dropna()
    assert (30, 3e-4) in set(zip(planned["iteration"], planned["value"]))  # joined to the last trained point
    assert lr_chart([])[1]["caption"] == EMPTY_NOTE


def test_tables_have_headers_for_people_and_no_blank_or_internal_cells():
    entry = {"name": "run-a/model_iter_10", "run": "run-a", "source": "local", "kind": "iter", "iteration": 10,
             "max_iterations": 10, "loss": 4.0, "val_loss": None, "timestamp": "2026-12-07T10:00:00",
             "size_bytes": 3 * 2**20, "has_optimizer": True, "valid": False, "reason": "a file is missing"}
    table = checkpoint_table([entry])
    assert not any("_" in header for header in table.columns)
    row = dict(zip(table.columns, table.iloc[0]))
    assert (row["Size (MiB)"], row["Optimizer"], row["Valid"], row["Problem"]) == ("3.0", "yes", "no",
                                                                                   "a file is missing")
    runs = runs_table([{"run": "run-a", "id": "ed708c185972abcd", "created": None, "seed": 0, "base_model": None,
                        "checkpoints": 1}])
    assert list(runs.columns) == ["Run", "Checkpoints", "Created", "Seed", "Base model"]
    assert runs.iloc[0]["Base model"] == "—" and "ed708c" not in runs.to_string()
