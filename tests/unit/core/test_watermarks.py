"""Watermarks: above ``high_watermark`` idle models leave ahead of need, down to the low one."""

from __future__ import annotations

import pytest
from harness import GB, Harness
from pydantic import ValidationError

from modelpool.config import Config, PoolSettings
from modelpool.core.states import ModelState
from modelpool.errors import ConfigError

TWO = {"memory": 2 * GB}
FIVE = {name: TWO for name in "abcde"}


def test_above_the_high_watermark_idle_models_leave_down_to_the_low_one() -> None:
    h = Harness(FIVE, budgets={"cpu": 10 * GB}, high_watermark=0.8, low_watermark=0.6)
    h.used_in_order("a", "b", "c", "d", "e")  # 10 GB booked: above 8
    assert h.fx.unloads == []
    h.s.on_tick()
    assert h.fx.unloads == ["a", "b"]  # 10 - 4 = 6 GB: at the low watermark
    h.settle()
    account = h.s.ledger.account("cpu")
    assert account.budget - account.planned_free == 6 * GB


def test_at_the_high_watermark_nothing_leaves() -> None:
    h = Harness(FIVE, budgets={"cpu": 10 * GB}, high_watermark=0.8)
    h.used_in_order("a", "b", "c", "d")  # exactly 8 GB
    h.s.on_tick()
    assert h.fx.unloads == []


def test_leased_pinned_and_wanted_models_stay() -> None:
    h = Harness(
        {**FIVE, "p": {**TWO, "pinned": True}}, budgets={"cpu": 12 * GB}, high_watermark=0.5
    )
    h.s.pin("p")
    h.load("p")
    h.used_in_order("a", "b", "c", "d")
    lease = h.lease("a", "t1")
    h.s.on_tick()
    # 10 of 12 GB booked, down to 0.4 * 12 = 4.8 GB: b, c and d go; a is leased, p pinned.
    assert h.fx.unloads == ["b", "c", "d"]
    assert h.state("a") is ModelState.READY
    assert h.state("p") is ModelState.READY
    h.s.release(lease)


def test_without_a_watermark_the_tick_unloads_nothing() -> None:
    h = Harness(FIVE, budgets={"cpu": 10 * GB})
    h.used_in_order("a", "b", "c", "d", "e")
    h.s.on_tick()
    assert h.fx.unloads == []


def test_the_low_watermark_defaults_to_a_tenth_below_the_high_one() -> None:
    assert PoolSettings(high_watermark=0.8).low_watermark_in_force == pytest.approx(0.7)
    assert PoolSettings(high_watermark=0.05).low_watermark_in_force == 0.0


@pytest.mark.parametrize(
    ("pool", "message"),
    [
        (
            {"high_watermark": 0.7, "low_watermark": 0.7},
            r"pool.low_watermark: must be below high_watermark \(0.7\)",
        ),
        ({"low_watermark": 0.5}, "low_watermark needs a high_watermark"),
        ({"high_watermark": 1.5}, "less than or equal to 1"),
    ],
)
def test_watermarks_out_of_order_are_config_problems(pool: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_mapping({"pool": pool})
    with pytest.raises(ValidationError):
        PoolSettings(**pool)
