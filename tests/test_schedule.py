"""LR plans: warmup and decay shapes, and re-planning without jumps."""
from __future__ import annotations

import json

import pytest

from azr.config.schedule import LRPlan

PEAK, FINAL, WARMUP, TARGET = 1e-3, 1e-4, 10, 100


def fresh(kind: str, warmup: int = WARMUP) -> LRPlan:
    return LRPlan.fresh(kind, PEAK, FINAL / PEAK, warmup, TARGET)


def assert_non_increasing(plan: LRPlan, start: int, end: int) -> None:
    lrs = [plan.lr_at(i) for i in range(start, end + 1)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(lrs, lrs[1:])), lrs


@pytest.mark.parametrize("kind", ["cosine", "constant", "wsd"])
def test_warmup_ramps_linearly_to_peak(kind):
    plan = fresh(kind)
    assert [plan.lr_at(i) for i in range(WARMUP)] == pytest.approx([PEAK * (i + 1) / WARMUP for i in range(WARMUP)])
    assert plan.lr_at(WARMUP) == pytest.approx(PEAK)


def test_cosine_decays_to_final():
    plan = fresh("cosine")
    assert_non_increasing(plan, WARMUP, TARGET)
    assert plan.lr_at((WARMUP + TARGET) // 2) == pytest.approx((PEAK + FINAL) / 2)
    assert plan.lr_at(TARGET) == pytest.approx(FINAL)
    assert plan.lr_at(TARGET + 50) == pytest.approx(FINAL)


def test_constant_stays_at_peak():
    plan = fresh("constant", warmup=0)
    assert {plan.lr_at(i) for i in range(TARGET + 5)} == {PEAK}


def test_wsd_holds_peak_then_decays_linearly_over_last_20_percent():
    plan = fresh("wsd", warmup=0)
    assert {plan.lr_at(i) for i in range(81)} == {PEAK}
    assert [plan.lr_at(i) for i in range(80, 101)] == pytest.approx(
        [PEAK + (FINAL - PEAK) * (i - 80) / 20 for i in range(80, 101)]
    )


@pytest.mark.parametrize("k", [0, 5, 10, 50, 99, 100])
@pytest.mark.parametrize("kind", ["cosine", "constant", "wsd"])
def test_replanned_with_same_target_is_identical(kind, k):
    plan = fresh(kind)
    for same in (plan.replanned(k, TARGET), plan.replanned(k, TARGET, lr=PEAK, kind=kind)):
        assert [same.lr_at(i) for i in range(TARGET + 20)] == [plan.lr_at(i) for i in range(TARGET + 20)]


@pytest.mark.parametrize("k", [0, 4, 10, 30, 50, 85, 99, 100])
@pytest.mark.parametrize("kind", ["cosine", "wsd"])
def test_extending_the_target_is_continuous_then_decays_to_final(kind, k):
    """During warmup the ramp continues unchanged; from then on the LR only falls, reaching final at 250 (a
    finished run does so with extend="final_lr"; by default it re-warms, tested below)."""
    old = fresh(kind)
    new = old.replanned(k, 250, extend="final_lr" if k == TARGET else "rewarm")
    assert new.lr_at(k) == pytest.approx(old.lr_at(k), rel=1e-12)
    for i in range(k, WARMUP):
        assert new.lr_at(i) == old.lr_at(i)
    assert_non_increasing(new, max(k, WARMUP), 250)
    assert new.lr_at(250) == pytest.approx(FINAL)
    assert all(new.lr_at(i) >= old.lr_at(i) * (1 - 1e-12) for i in range(k, 250))  # never decays faster


def test_extending_twice_stays_continuous():
    first = fresh("cosine").replanned(60, 250)
    second = first.replanned(200, 400)
    assert second.lr_at(200) == pytest.approx(first.lr_at(200), rel=1e-12)
    assert_non_increasing(second, 200, 400)
    assert second.lr_at(400) == pytest.approx(FINAL)


@pytest.mark.parametrize("min_lr_ratio, final", [(None, 5e-5), (0.5, 2.5e-4)])
def test_new_lr_starts_exactly_there(min_lr_ratio, final):
    plan = fresh("cosine").replanned(40, 150, lr=5e-4, min_lr_ratio=min_lr_ratio)
    assert plan.lr_at(40) == 5e-4
    assert_non_increasing(plan, 40, 150)
    assert plan.lr_at(150) == pytest.approx(final)


@pytest.mark.parametrize("k", [20, 50, 85, 99])
@pytest.mark.parametrize("old_kind, new_kind", [("cosine", "wsd"), ("wsd", "cosine"), ("cosine", "constant")])
def test_kind_change_is_continuous(old_kind, new_kind, k):
    old = fresh(old_kind)
    new = old.replanned(k, TARGET, kind=new_kind)
    assert new.kind == new_kind
    assert new.lr_at(k) == pytest.approx(old.lr_at(k), rel=1e-12)
    assert_non_increasing(new, k, TARGET)


@pytest.mark.parametrize("plan", [fresh("wsd"), fresh("cosine").replanned(30, 250, lr=2e-3, kind="wsd")])
def test_to_dict_from_dict_round_trip(plan):
    restored = LRPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert restored == plan
    assert [restored.lr_at(i) for i in range(260)] == [plan.lr_at(i) for i in range(260)]


def test_a_kind_change_during_warmup_finishes_the_warmup_instead_of_freezing():
    plan = LRPlan.fresh("cosine", PEAK, 0.1, 100, 500)  # the case: resumed at 10 with "constant"
    changed = plan.replanned(10, 500, kind="constant")
    assert changed.lr_at(10) == pytest.approx(plan.lr_at(10))  # continuous at the resume point
    assert changed.lr_at(100) == pytest.approx(PEAK) and changed.lr_at(500) == pytest.approx(PEAK)
    wsd = plan.replanned(10, 500, kind="wsd")
    assert wsd.lr_at(200) == pytest.approx(PEAK) and wsd.lr_at(500) == pytest.approx(PEAK * 0.1)


def test_a_new_min_lr_ratio_alone_changes_the_final_lr_continuously():
    plan = fresh("cosine")
    changed = plan.replanned(50, TARGET, min_lr_ratio=0.5)
    assert changed.lr_at(50) == pytest.approx(plan.lr_at(50))
    assert changed.lr_at(TARGET) == pytest.approx(PEAK * 0.5)
    assert plan.replanned(50, TARGET, min_lr_ratio=FINAL / PEAK) is plan  # the same ratio changes nothing


@pytest.mark.parametrize("kind", ["cosine", "wsd"])
def test_extending_a_finished_run_rewarms_with_no_jump_beyond_the_ramp(kind):
    """The default ramps from the final LR into the fresh plan of the new horizon; every step within the ramp."""
    done = fresh(kind)
    plan = done.replanned(TARGET, 2 * TARGET)
    lrs = [done.lr_at(i) for i in range(TARGET)] + [plan.lr_at(i) for i in range(TARGET, 2 * TARGET + 1)]
    ramp = plan.ramp_length
    assert ramp == 5 and plan.lr_at(TARGET) == pytest.approx(FINAL)
    fresh_long = LRPlan.fresh(kind, PEAK, FINAL / PEAK, WARMUP, 2 * TARGET)
    assert [plan.lr_at(i) for i in range(TARGET + ramp, 2 * TARGET + 1)] == pytest.approx(
        [fresh_long.lr_at(i) for i in range(TARGET + ramp, 2 * TARGET + 1)])
    largest_ramp_step = (PEAK - FINAL) / ramp
    steps = [abs(b - a) for a, b in zip(lrs[WARMUP:], lrs[WARMUP + 1:])]
    assert max(steps) <= largest_ramp_step * (1 + 1e-9)
    assert max(plan.lr_at(i) for i in range(TARGET, 2 * TARGET)) > 3 * FINAL  # it does re-warm
    assert plan.replanned(TARGET + 3, 2 * TARGET) is plan  # a resume mid-ramp keeps the plan


def test_final_lr_option_keeps_the_finished_run_at_its_final_lr():
    done = fresh("cosine")
    plan = done.replanned(TARGET, 2 * TARGET, extend="final_lr")
    assert {round(plan.lr_at(i), 15) for i in range(TARGET, 2 * TARGET + 1)} == {round(FINAL, 15)}
    assert plan.ramp_length == 0


def test_rewarmed_plan_survives_a_round_trip():
    plan = fresh("cosine").replanned(TARGET, 3 * TARGET)
    assert LRPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_decay_start_is_where_a_wsd_plan_leaves_its_stable_lr():
    plan = fresh("wsd")
    start = plan.decay_start()
    assert start == TARGET - round(0.2 * TARGET)
    assert plan.lr_at(start) == pytest.approx(PEAK) and plan.lr_at(start + 1) < PEAK
    assert fresh("cosine").decay_start() is None and fresh("constant").decay_start() is None
    replanned = plan.replanned(start, 2 * TARGET, extend="final_lr")  # re-planned from there: decays later
    assert replanned.decay_start() == 2 * TARGET - round(0.2 * 2 * TARGET)
    assert replanned.lr_at(start + 1) == pytest.approx(PEAK)
