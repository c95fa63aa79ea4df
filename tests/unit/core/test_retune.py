"""Run-time hooks for the seed facades: retuning live settings, a model's ttl, the peak."""

from __future__ import annotations

import pytest
from harness import GB, Harness
from pydantic import ValidationError

from modelpool import ModelPool, ModelSpec
from modelpool.config import PoolSettings

TWO = {"memory": 2 * GB}
FIVE = {name: TWO for name in "abcde"}


def test_a_high_watermark_given_at_run_time_unloads_at_the_next_tick() -> None:
    h = Harness(FIVE, budgets={"cpu": 10 * GB})
    h.used_in_order("a", "b", "c", "d", "e")
    h.s.on_tick()
    assert h.fx.unloads == []
    h.s.retune(h.s.settings.changed(high_watermark=0.8, low_watermark=0.6))
    h.s.on_tick()
    assert h.fx.unloads == ["a", "b"]


def test_a_raised_model_cap_lets_a_waiting_request_go_at_once() -> None:
    h = Harness(FIVE, budgets={"cpu": 10 * GB}, max_models=1)
    h.used_in_order("a")
    lease = h.lease("a", "t1")  # a is busy: b must wait for the cap
    h.s.request("b", "t2")
    assert h.fx.loads[-1][0] == "a"
    h.s.retune(h.s.settings.changed(max_models=2))
    assert h.fx.loads[-1][0] == "b"
    h.s.release(lease)


def test_a_ttl_set_at_run_time_unloads_the_idle_model() -> None:
    h = Harness(FIVE, budgets={"cpu": 10 * GB})
    h.used_in_order("a")
    h.clock.advance(100)
    h.s.on_tick()
    assert h.fx.unloads == []
    h.s.set_ttl("a", 30)
    h.s.on_tick()
    assert h.fx.unloads == ["a"]
    with pytest.raises(ValueError, match="positive"):
        h.s.set_ttl("b", 0)


def test_retune_refuses_what_only_construction_sets_and_checks_values() -> None:
    pool = ModelPool(
        [ModelSpec(id="a", backend="fake", memory="1GB", device="cpu")], budgets={"cpu": "4GB"}
    )
    pool.retune(high_watermark=0.9, reap_interval=5)
    assert (pool.settings.high_watermark, pool.settings.reap_interval) == (0.9, 5)
    with pytest.raises(TypeError, match="budgets"):
        pool.retune(budgets={"cpu": "8GB"})
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        pool.retune(high_watermark=1.5)
    assert pool.settings.high_watermark == 0.9
    assert PoolSettings().high_watermark is None  # defaults untouched


def test_the_ledger_keeps_the_peak_since_start() -> None:
    h = Harness(FIVE, budgets={"cpu": 10 * GB})
    h.used_in_order("a", "b", "c")
    h.s.unload("a")
    h.settle()
    h.s.unload("b")
    h.settle()
    snapshot = h.s.ledger.snapshot()["cpu"]
    assert snapshot["committed"] == 2 * GB
    assert snapshot["peak"] == 6 * GB
