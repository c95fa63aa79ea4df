"""Strategy plans and the traffic split: pure functions, no pool."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from modelpool.rollout import PlanError, Strategy, make_plan
from modelpool.rollout.routing import choose, pick, split, sticky_point


def test_immediate_is_one_unwatched_step() -> None:
    plan = make_plan("immediate")
    assert (plan.shares, plan.period, plan.guarded) == ((1.0,), 0.0, False)


def test_gradual_takes_equal_steps_over_its_duration() -> None:
    plan = make_plan(Strategy.GRADUAL, {"steps": 4, "duration": "2m"})
    assert plan.shares == (0.25, 0.5, 0.75, 1.0)
    assert plan.period == 30.0
    assert plan.guarded


def test_seed_spellings_are_understood() -> None:
    assert make_plan("gradual", {"duration_minutes": 10, "steps": 5}).period == 120.0
    ab = make_plan("ab", {"traffic_percentage": 20, "test_duration_hours": 48})
    assert (ab.shares, ab.period, ab.then) == ((0.2,), 48 * 3600.0, "revert")
    canary = make_plan(
        "canary",
        {"initial_percentage": 5, "step_percentage": 15, "evaluation_period_minutes": 30},
    )
    assert canary.shares == pytest.approx((0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0))
    assert canary.period == 1800.0
    assert canary.hold_on_warning


def test_an_ab_test_may_promote_its_target_when_it_ends() -> None:
    assert make_plan("ab", {"then": "promote"}).then == "promote"


def test_every_problem_of_the_settings_is_reported_at_once() -> None:
    with pytest.raises(PlanError) as caught:
        make_plan("canary", {"initial_percentag": 5, "step_percentage": 0, "period": "soon"})
    problems = caught.value.problems
    assert len(problems) == 3
    assert "did you mean 'initial_percentage'" in problems[0]
    assert problems[1].startswith("step_percentage: expected a percentage")
    assert problems[2].startswith("period: ")


def test_unknown_strategy_suggests_the_near_one() -> None:
    with pytest.raises(PlanError, match="did you mean 'canary'"):
        make_plan("canery")
    with pytest.raises(PlanError, match="takes no settings"):
        make_plan("immediate", {"steps": 3})


def test_split_keeps_the_target_first_and_drops_empty_sides() -> None:
    assert split("v2", "v1", 0.3) == (("v2", 0.3), ("v1", 0.7))
    assert split("v2", "v1", 1.0) == (("v2", 1.0),)
    assert split("v2", "v1", 0.0) == (("v1", 1.0),)


def test_random_picks_follow_the_weights() -> None:
    rng = random.Random(3)
    weights = split("v2", "v1", 0.2)
    picks = Counter(choose("m", weights, None, rng) for _ in range(20_000))
    assert picks["v2"] / 20_000 == pytest.approx(0.2, abs=0.01)


def test_a_key_stays_on_the_target_as_its_share_grows() -> None:
    keys = [f"user-{n}" for n in range(1000)]
    rng = random.Random(0)
    on_target: set[str] = set()
    for share in (0.05, 0.2, 0.5, 0.9):
        now = {k for k in keys if choose("m", split("v2", "v1", share), k, rng) == "v2"}
        assert on_target <= now  # nobody who saw v2 goes back to v1
        assert len(now) / len(keys) == pytest.approx(share, abs=0.05)
        on_target = now


def test_sticky_points_are_stable_and_spread() -> None:
    assert sticky_point("m", "alice") == sticky_point("m", "alice")
    assert sticky_point("m", "alice") != sticky_point("other", "alice")
    points = [sticky_point("m", f"k{n}") for n in range(1000)]
    assert 0.45 < sum(points) / len(points) < 0.55
    assert pick((("a", 0.5), ("b", 0.5)), 0.999999999) == "b"
