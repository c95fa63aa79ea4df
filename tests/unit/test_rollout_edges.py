"""Rollout plans, routing and operations at their edges: defaults, limits, messages.

Pure functions and a dataclass: no pool. Companion of ``test_rollout_plans.py``.
"""

from __future__ import annotations

import random
import re

import pytest

from modelpool.rollout import PlanError, Strategy, make_plan
from modelpool.rollout.operation import Operation, Status, wall_time
from modelpool.rollout.routing import choose, pick, split, sticky_point
from modelpool.rollout.strategies import parse_strategy


def problems(strategy: str, settings: dict[str, object]) -> list[str]:
    with pytest.raises(PlanError) as caught:
        make_plan(strategy, settings)
    assert str(caught.value) == "; ".join(caught.value.problems)
    return caught.value.problems


# --- defaults ---------------------------------------------------------------------------


def test_each_strategys_defaults() -> None:
    gradual = make_plan("gradual")
    assert gradual.shares == (0.2, 0.4, 0.6, 0.8, 1.0)
    assert (gradual.period, gradual.guarded, gradual.hold_on_warning) == (60.0, True, False)
    ab = make_plan("ab")
    assert (ab.shares, ab.period, ab.guarded, ab.then) == ((0.5,), 3600.0, True, "revert")
    assert not ab.hold_on_warning
    canary = make_plan("canary")
    assert canary.shares == pytest.approx((0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0))
    assert (canary.period, canary.guarded, canary.hold_on_warning) == (300.0, True, True)
    immediate = make_plan(Strategy.IMMEDIATE, None)
    assert (immediate.then, immediate.hold_on_warning) == ("promote", False)


def test_a_canary_ends_exactly_at_one_hundred_percent() -> None:
    assert make_plan("canary", {"initial_percentage": 50, "step_percentage": 50}).shares == (
        0.5,
        1.0,
    )
    assert make_plan("canary", {"initial_percentage": 100}).shares == (1.0,)
    assert make_plan("canary", {"initial_percentage": 90, "step_percentage": 30}).shares == (
        0.9,
        1.0,
    )


def test_one_gradual_step_is_all_at_once_after_the_duration() -> None:
    plan = make_plan("gradual", {"steps": 1, "duration": 10})
    assert (plan.shares, plan.period) == ((1.0,), 10.0)
    assert len(make_plan("gradual", {"steps": 1000}).shares) == 1000


def test_seed_units_scale_minutes_and_hours() -> None:
    assert make_plan("ab", {"test_duration_minutes": 2}).period == 120.0
    assert make_plan("ab", {"test_duration_hours": 0.5}).period == 1800.0
    assert make_plan("ab", {"percentage": 0.5}).shares == (0.005,)
    assert make_plan("canary", {"evaluation_period": "90s"}).period == 90.0
    assert make_plan("canary", {"evaluation_period_minutes": 0}).period == 0.0
    assert make_plan("gradual", {"duration_minutes": 1, "steps": 2}).period == 30.0


# --- refusals and their messages -------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "settings", "message"),
    [
        ("ab", {"percentage": 0}, "percentage: expected a percentage in (0, 100], got 0"),
        ("ab", {"percentage": 100.5}, "percentage: expected a percentage in (0, 100], got 100.5"),
        ("ab", {"percentage": True}, "percentage: expected a percentage in (0, 100], got True"),
        ("ab", {"percentage": "50"}, "percentage: expected a percentage in (0, 100], got '50'"),
        (
            "ab",
            {"duration": [1]},
            "duration: expected a duration such as 30, '30s' or '10m', got [1]",
        ),
        (
            "ab",
            {"duration": False},
            "duration: expected a duration such as 30, '30s' or '10m', got False",
        ),
        ("ab", {"test_duration_hours": -1}, "test_duration_hours: expected a number >= 0, got -1"),
        (
            "ab",
            {"test_duration_hours": True},
            "test_duration_hours: expected a number >= 0, got True",
        ),
        (
            "ab",
            {"test_duration_hours": "1"},
            "test_duration_hours: expected a number >= 0, got '1'",
        ),
        (
            "gradual",
            {"steps": 0},
            "steps: expected a whole number of steps from 1 to 1000, got 0",
        ),
        (
            "gradual",
            {"steps": 1001},
            "steps: expected a whole number of steps from 1 to 1000, got 1001",
        ),
        (
            "gradual",
            {"steps": 2.0},
            "steps: expected a whole number of steps from 1 to 1000, got 2.0",
        ),
        (
            "gradual",
            {"steps": True},
            "steps: expected a whole number of steps from 1 to 1000, got True",
        ),
        ("ab", {"then": "keep"}, "then: expected 'promote' or 'revert', got 'keep'"),
    ],
)
def test_a_bad_setting_is_named_with_what_it_takes(
    strategy: str, settings: dict[str, object], message: str
) -> None:
    assert problems(strategy, settings) == [message]


def test_an_unknown_setting_lists_what_the_strategy_takes() -> None:
    assert problems("gradual", {"step": 3}) == [
        "step: not a setting of gradual (did you mean 'steps'?); "
        "it takes steps, duration, duration_minutes"
    ]
    assert problems("ab", {"zzz": 1}) == [
        "zzz: not a setting of ab; it takes percentage, traffic_percentage, duration, "
        "test_duration_hours, test_duration_minutes, then"
    ]
    assert problems("canary", {"then": "promote"})[0].startswith("then: not a setting of canary")


def test_an_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(PlanError) as caught:
        parse_strategy("zzz")
    assert caught.value.problems == [
        "unknown strategy 'zzz'; known: immediate, gradual, ab, canary"
    ]
    assert parse_strategy("ab") is Strategy.AB
    assert parse_strategy(Strategy.CANARY) is Strategy.CANARY


# --- routing ------------------------------------------------------------------------------


def test_split_at_the_edges() -> None:
    assert split("t", "s", 1.5) == (("t", 1.0),)
    assert split("t", "s", -0.1) == (("s", 1.0),)
    assert split("t", "s", 0.25) == (("t", 0.25), ("s", 0.75))


def test_pick_takes_the_slice_that_holds_the_point() -> None:
    weights = (("a", 0.25), ("b", 0.75))
    assert pick(weights, 0.0) == "a"
    assert pick(weights, 0.2499) == "a"
    assert pick(weights, 0.25) == "b"  # slices are [start, end)
    assert pick(weights, 0.9999) == "b"
    assert pick((("a", 0.5), ("b", 0.4999)), 0.99995) == "b"  # rounding: the last one


def test_a_single_version_is_chosen_without_drawing() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    assert choose("m", (("only", 1.0),), None, rng) == "only"
    assert rng.getstate() == state


def test_a_key_decides_without_drawing_and_no_key_draws() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    weights = split("t", "s", 0.5)
    by_key = choose("m", weights, "alice", rng)
    assert by_key == pick(weights, sticky_point("m", "alice"))
    assert rng.getstate() == state
    choose("m", weights, None, rng)
    assert rng.getstate() != state
    # an empty key is no key: it draws
    state = rng.getstate()
    choose("m", weights, "", rng)
    assert rng.getstate() != state


def test_sticky_points_are_in_the_unit_interval_and_depend_on_both_names() -> None:
    points = {sticky_point(m, k) for m in ("m", "n") for k in ("a", "b", "ab")}
    assert len(points) == 6
    assert all(0.0 <= p < 1.0 for p in points)
    assert sticky_point("ab", "c") != sticky_point("a", "bc")  # the separator counts
    assert sticky_point("m", "alice") == pytest.approx(sticky_point("m", "alice"), abs=0)


# --- operations ---------------------------------------------------------------------------


def operation(**fields: object) -> Operation:
    settings = {"initial_percentage": 50, "step_percentage": 50}
    values: dict[str, object] = {
        "id": "op-1",
        "model": "chat",
        "source": "v1",
        "target": "v2",
        "strategy": Strategy.CANARY,
        "settings": settings,
        "plan": make_plan(Strategy.CANARY, settings),
        "created": 1_790_000_000.0,
        **fields,
    }
    return Operation(**values)  # type: ignore[arg-type]


def test_progress_counts_steps_and_the_final_hold() -> None:
    op = operation()  # shares (0.5, 1.0) and a period: 3 parts
    assert op.progress == 0.0
    op.step = 0
    assert op.progress == pytest.approx(1 / 3)
    op.step = 1
    assert op.progress == pytest.approx(2 / 3)
    op.status = Status.COMPLETED
    assert op.progress == 1.0
    immediate = operation(strategy=Strategy.IMMEDIATE, settings={}, plan=make_plan("immediate"))
    immediate.step = 0
    assert immediate.progress == 1.0  # one step, no hold


def test_ended_statuses() -> None:
    ended = {s for s in Status if operation(status=s).ended}
    assert ended == {Status.COMPLETED, Status.ROLLED_BACK, Status.ABORTED, Status.FAILED}


def test_an_operation_round_trips_through_its_dict() -> None:
    op = operation(status=Status.RUNNING, step=0, share=0.5, reason="on hold")
    op.note(1_790_000_001.5, "v2 takes 50% of traffic")
    data = op.to_dict()
    assert data == {
        "operation_id": "op-1",
        "model": "chat",
        "source": "v1",
        "target": "v2",
        "strategy": "canary",
        "status": "running",
        "share": 0.5,
        "progress": pytest.approx(1 / 3),
        "reason": "on hold",
        "settings": {"initial_percentage": 50, "step_percentage": 50},
        "step": 0,
        "steps": [0.5, 1.0],
        "period": 300.0,
        "created": "2026-09-21T14:13:20.000+00:00",
        "created_ts": 1_790_000_000.0,
        "history": [
            {
                "at": "2026-09-21T14:13:21.500+00:00",
                "status": "running",
                "share": 0.5,
                "message": "v2 takes 50% of traffic",
            }
        ],
    }
    back = Operation.from_dict(data)
    assert back.to_dict() == data
    assert back.plan == op.plan
    assert back.next_step_at is None


def test_an_operation_without_history_or_reason_reads_back() -> None:
    data = operation().to_dict()
    del data["history"], data["reason"]
    back = Operation.from_dict(data)
    assert (back.history, back.reason, back.status) == ([], None, Status.PENDING)


def test_wall_time_is_utc_with_milliseconds() -> None:
    assert wall_time(0.0) == "1970-01-01T00:00:00.000+00:00"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", wall_time(1e9))
