"""``foresight``: does the ranking of the replayed window hold for the next interval?"""

from __future__ import annotations

import pytest

from modelpool.sim.auto_choice import CandidateRow
from modelpool.sim.auto_hindsight import foresight, foresight_of_pairs, waits_between


def table(**waits: float) -> list[CandidateRow]:
    return [CandidateRow(name, wait, 0.0, 0) for name, wait in waits.items()]


def test_the_wait_between_two_replays_of_one_start_is_their_difference() -> None:
    before, after = table(lru=10.0, lfu=20.0), table(lru=15.0, lfu=50.0, fifo=3.0)
    assert waits_between(before, after) == {"lru": 5.0, "lfu": 30.0}  # fifo: only after


def test_a_ranking_that_holds_is_a_hit_with_correlation_one() -> None:
    # a < b < c in every window, and in what each interval adds
    tables = [table(a=10, b=20, c=30), table(a=20, b=40, c=60), table(a=30, b=60, c=90)]
    seen = foresight(tables)
    assert (seen.compared, seen.hits, seen.strategies) == (2, 2, 3)
    assert seen.rank_correlation == pytest.approx(1.0)
    assert seen.hit_rate == 1.0


def test_a_ranking_that_turns_over_is_a_miss_with_correlation_minus_one() -> None:
    # the window says a < b < c; the next interval adds c < b < a
    seen = foresight([table(a=10, b=20, c=30), table(a=40, b=40, c=40)])
    assert (seen.compared, seen.hits) == (1, 0)
    assert seen.rank_correlation == pytest.approx(-1.0)


def test_intervals_that_cannot_tell_the_strategies_apart_are_not_counted() -> None:
    tied = [table(a=10.0, b=10.05), table(a=20.0, b=30.0), table(a=30.0, b=40.05)]
    # first: the window ties; second: the window differs but its interval adds a tie
    seen = foresight(tied)
    assert seen.compared == 0
    assert seen.hit_rate == 0.0
    assert seen.rank_correlation == 0.0
    assert foresight([]).compared == 0


def test_pairs_score_a_forecast_against_the_fact_with_the_extra_wait_of_its_picks() -> None:
    pairs = [
        ({"a": 1.0, "b": 2.0}, {"a": 10.0, "b": 20.0}),  # a hit
        ({"a": 1.0, "b": 2.0}, {"a": 30.0, "b": 20.0}),  # a miss: a waits 10 s more
        ({"a": 1.0, "b": 1.0}, {"a": 30.0, "b": 20.0}),  # the forecast ties: not counted
    ]
    seen = foresight_of_pairs(pairs)
    assert (seen.compared, seen.hits) == (2, 1)
    assert seen.regret == pytest.approx(10.0 / (10.0 + 20.0))
    assert seen.rank_correlation == pytest.approx(0.0)  # +1 then -1
