"""The traffic window ``strategy: auto`` replays: both bounds, and the pool feeding it."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from modelpool import ModelPool, ModelSpec
from modelpool.config import PoolSettings
from modelpool.core.testing import ManualClock
from modelpool.core.traffic_window import TrafficWindow

GB = 10**9


def test_requests_older_than_the_span_are_forgotten() -> None:
    window = TrafficWindow(span=60.0, max_requests=100)
    window.record("a", at=0.0, held=1.0)
    window.record("b", at=30.0, held=2.0)
    window.record("a", at=70.0, held=0.5)  # 0.0 is now 70 s old
    assert [(a.model_id, a.at) for a in window.arrivals(now=70.0)] == [("b", 30.0), ("a", 70.0)]
    assert [a.model_id for a in window.arrivals(now=95.0)] == ["a"]  # 30.0 went at 90
    assert len(window) == 1


def test_at_most_max_requests_are_kept_the_most_recent() -> None:
    window = TrafficWindow(span=3600.0, max_requests=3)
    for second in range(5):
        window.record(f"m{second}", at=float(second), held=0.1)
    assert [a.model_id for a in window.arrivals(now=5.0)] == ["m2", "m3", "m4"]


def test_leases_returned_out_of_order_come_back_sorted_and_within_the_span() -> None:
    window = TrafficWindow(span=10.0)
    window.record("late", at=5.0, held=9.0)  # granted at 5, returned at 14
    window.record("early", at=2.0, held=20.0)  # granted at 2, returned at 22
    window.record("new", at=12.0, held=0.0)
    assert [a.model_id for a in window.arrivals(now=14.0)] == ["late", "new"]  # 2.0 < 4.0


def test_bad_bounds_are_refused_with_both_values() -> None:
    with pytest.raises(ValueError, match="got 0 and 5"):
        TrafficWindow(span=0, max_requests=5)


def test_only_an_auto_pool_keeps_a_window_and_its_bounds_come_from_auto_options() -> None:
    models = [ModelSpec(id="a", backend="fake", memory=GB, device="cpu")]
    fixed = ModelPool(models, budgets={"cpu": "4GB"}, strategy="lru")
    assert fixed.traffic_window is None
    auto = ModelPool(
        models, budgets={"cpu": "4GB"}, strategy="auto",
        auto_options={"window": 120, "max_requests": 7},
    )  # fmt: skip
    assert auto.traffic_window is not None
    assert (auto.traffic_window.span, auto.traffic_window.max_requests) == (120.0, 7)
    assert auto.strategy == "hybrid"  # auto starts from hybrid
    assert auto.settings.strategy == "auto"


def test_auto_options_name_a_bad_candidate() -> None:
    with pytest.raises(ValidationError, match="nope"):
        PoolSettings(strategy="auto", auto_options={"candidates": ["lru", "nope"]})


def test_the_pool_records_each_released_lease_with_the_time_it_was_held() -> None:
    clock = ManualClock(100.0)
    models = [ModelSpec(id="a", backend="fake", memory=GB, device="cpu")]
    pool = ModelPool(models, budgets={"cpu": "4GB"}, strategy="auto", clock=clock)

    async def scenario() -> None:
        async with pool:
            lease = await pool.acquire("a")
            clock.advance(2.5)
            pool.release(lease)
            pool.release(lease)  # a second release is ignored, and not recorded twice

    asyncio.run(scenario())
    assert pool.traffic_window is not None
    arrivals = pool.traffic_window.arrivals(clock.now)
    assert [(a.model_id, a.held) for a in arrivals] == [("a", 2.5)]
