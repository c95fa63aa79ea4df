"""``max_models``: a cap on loaded models, pool-wide and per device, by the same policy.

Driven through the scheduler's handlers with the recording effects: the cap is a
decision like eviction, so its tests read what the scheduler asked for.
"""

from __future__ import annotations

import pytest
from harness import GB, Harness

from modelpool.core.states import ModelState
from modelpool.errors import ModelLimitReached

ONE = {"memory": GB}


def test_the_pool_cap_evicts_in_policy_order_though_memory_would_fit() -> None:
    h = Harness({"a": ONE, "b": ONE, "c": ONE}, max_models=2)
    h.load("a", "b")
    h.clock.advance(5)
    h.s.release(h.lease("a"))  # a used last: lru picks b
    h.wait("c")
    assert h.fx.unloads == ["b"]
    h.settle()
    assert {m: h.state(m) for m in "abc"} == {
        "a": ModelState.READY,
        "b": ModelState.UNLOADED,
        "c": ModelState.READY,
    }


def test_exactly_the_cap_loads_without_evicting() -> None:
    h = Harness({"a": ONE, "b": ONE}, max_models=2)
    h.load("a", "b")
    assert h.fx.unloads == []
    assert h.state("b") is ModelState.READY


def test_memory_victims_count_toward_the_cap() -> None:
    # c needs 6 GB: evicting a (4 GB) makes the room and also frees a slot.
    h = Harness({"a": {"memory": 4 * GB}, "b": ONE, "c": {"memory": 6 * GB}}, max_models=2)
    h.load("a", "b")
    h.clock.advance(1)
    h.s.release(h.lease("b"))
    h.wait("c")
    assert h.fx.unloads == ["a"]


def test_a_device_cap_counts_only_its_own_device() -> None:
    h = Harness(
        {"a": {**ONE, "device": "cuda:0"}, "b": {**ONE, "device": "cuda:0"}, "c": ONE},
        budgets={"cpu": 8 * GB, "cuda:0": 8 * GB},
        device_max_models={"cuda:0": 1},
    )
    h.load("a", "c")
    assert h.fx.unloads == []  # c is on the cpu: no cap there
    h.wait("b")
    assert h.fx.unloads == ["a"]


def test_leased_models_over_the_cap_make_a_request_wait_not_fail() -> None:
    h = Harness({"a": ONE, "b": ONE}, max_models=1)
    h.load("a")
    lease = h.lease("a", "t1")
    waiter = h.wait("b")
    assert h.fx.unloads == []
    assert h.state("b") is ModelState.UNLOADED
    assert any("max_models of the pool" in holder.reason for holder in h.s.resolve("b").blocked_by)
    h.s.release(lease)
    h.settle()
    assert h.fx.granted[waiter.waiter_id] is not None
    assert h.state("a") is ModelState.UNLOADED


def test_pinned_models_filling_the_cap_refuse_at_once_naming_them() -> None:
    h = Harness({"a": {**ONE, "pinned": True}, "b": ONE}, max_models=1)
    h.s.pin("a")
    h.load("a")
    waiter = h.wait("b")
    error = h.fx.rejected[waiter.waiter_id]
    assert isinstance(error, ModelLimitReached)
    assert "the pool allows 1 model at once" in str(error)
    assert "a (" in str(error)
    assert "pinned" in str(error)


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_never_more_loaded_than_the_cap(cap: int) -> None:
    models = {name: ONE for name in "abcdef"}
    h = Harness(models, max_models=cap)
    for round_ in range(3):
        for name in models:
            h.clock.advance(1)
            h.s.load(name)
            loaded = [r for r in h.s.records() if r.state in (ModelState.LOADING, ModelState.READY)]
            assert len(loaded) <= cap, (round_, name, [r.model_id for r in loaded])
            h.settle()
