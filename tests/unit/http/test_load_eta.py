"""A 503's ``Retry-After`` after a wait for a load: when that load should be over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from modelpool.backends.fake import FakeBackend
from modelpool.config import ModelSpec
from modelpool.core.events import EventKind, PoolEvent
from modelpool.core.pool import ModelPool
from modelpool.core.record import ASSUMED_LOAD_BANDWIDTH
from modelpool.core.testing import ManualClock
from modelpool.http.load_eta import (
    SOONEST,
    expected_load_seconds,
    load_retry_after,
    seconds_until_loaded,
)


def test_the_expected_load_is_the_mean_of_those_measured() -> None:
    assert expected_load_seconds(total_seconds=30.0, loads=3, size=10**12) == 10.0


def test_a_model_never_loaded_is_guessed_from_its_size() -> None:
    size = 4 * 10**9
    assert expected_load_seconds(0.0, 0, size) == size / ASSUMED_LOAD_BANDWIDTH


def test_the_time_a_load_has_run_is_taken_off() -> None:
    assert seconds_until_loaded(10.0, started_at=100.0, now=103.0) == pytest.approx(7.0)


def test_a_load_not_begun_has_its_whole_length_ahead() -> None:
    assert seconds_until_loaded(10.0, started_at=None, now=103.0) == 10.0


def test_a_load_past_its_estimate_may_end_any_moment() -> None:
    assert seconds_until_loaded(10.0, started_at=100.0, now=130.0) == SOONEST
    assert seconds_until_loaded(0.001, started_at=None, now=0.0) == SOONEST


async def next_event(events: AsyncIterator[PoolEvent], kind: EventKind, model: str) -> None:
    async for event in events:
        if event.kind is kind and event.model_id == model:
            return


async def test_a_pool_model_is_expected_after_its_measured_load_less_what_has_run() -> None:
    clock, backend = ManualClock(), FakeBackend()
    spec = ModelSpec(id="a", backend="fake", memory="1GB", device="cpu")
    pool = ModelPool([spec], budgets={"cpu": "4GB"}, backends={"fake": backend}, clock=clock)
    gate = backend.gate("a")
    async with pool:
        assert load_retry_after(pool, "a") == pytest.approx(1.0)  # 1 GB at 1 GB/s, unmeasured
        events = pool.events()
        first = asyncio.create_task(pool.load("a"))
        await asyncio.wait_for(next_event(events, EventKind.LOAD_STARTED, "a"), 5)
        clock.advance(10.0)  # the first load takes 10 s
        gate.set()
        await first
        assert load_retry_after(pool, "a") is None  # resident: nothing to wait for
        await pool.unload("a")
        assert load_retry_after(pool, "a") == pytest.approx(10.0)  # all of it ahead

        gate.clear()
        second = asyncio.create_task(pool.load("a"))
        await asyncio.wait_for(next_event(events, EventKind.LOAD_STARTED, "a"), 5)
        clock.advance(3.0)
        assert load_retry_after(pool, "a") == pytest.approx(7.0)
        gate.set()
        await second
