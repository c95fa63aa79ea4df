"""The warm tier's decisions: evict to host RAM, restore, drop by policy, fall back."""

from __future__ import annotations

import pytest
from harness import GB, Harness

from modelpool.core.events import EventKind
from modelpool.core.lease import Waiter
from modelpool.core.ports import HOST
from modelpool.core.states import ModelState

FOUR = {"memory": 4 * GB}


def warm_harness(warm_budget: int = 8 * GB, **models: dict[str, int]) -> Harness:
    specs = models or {"a": FOUR, "b": FOUR, "c": FOUR}
    return Harness(
        specs,
        budgets={"cpu": 4 * GB},
        policy="lru",
        warm_budget=warm_budget,
        offloadable=tuple(specs),
    )


def test_an_evicted_model_goes_warm_and_comes_back_by_restore() -> None:
    h = warm_harness()
    h.load("a")
    b = h.wait("b")
    assert h.fx.offloads == ["a"]
    assert h.fx.unloads == []
    assert h.state("a") is ModelState.UNLOADING
    assert h.s.warm.account.started == {"a": 4 * GB}
    h.finish_offload("a", footprint=4 * GB)
    assert h.state("a") is ModelState.WARM
    assert h.s.ledger.account("cpu").committed == {}  # the device is free for b
    assert h.started_loads() == ["a", "b"]
    h.finish_load("b")
    lease = h.fx.granted[b.waiter_id]
    assert lease is not None
    h.s.release(lease)

    h.wait("a")
    h.settle()
    assert h.fx.restores == [("a", "cpu")]
    assert h.started_loads() == ["a", "b"]  # a came back without a cold load
    assert h.state("a") is ModelState.READY
    assert h.state("b") is ModelState.WARM
    record = h.s.resolve("a")
    assert record.warm is None
    assert (record.stats.load_count, record.stats.restore_count) == (1, 1)
    assert "a" not in h.s.warm.account.committed
    loaded = h.fx.kinds(EventKind.LOADED)[-1]
    assert loaded.model_id == "a"
    assert loaded.detail["restored"] is True


@pytest.mark.parametrize(("touched", "dropped"), [(None, "a"), ("a", "b")])
def test_a_full_warm_tier_drops_the_copy_the_policy_chooses(
    touched: str | None, dropped: str
) -> None:
    h = warm_harness(8 * GB, a=FOUR, b=FOUR, c=FOUR, d=FOUR)
    for model in "abc":  # a and b end up warm, the tier full
        h.clock.advance(1)
        h.load(model)
    if touched is not None:  # used most recently: LRU keeps it
        h.s.resolve(touched).stats.record_done(h.clock.advance(1), 0.1, ok=True)
    h.wait("d")  # c is evicted to the tier: one copy must go
    h.settle()
    drops = h.fx.kinds(EventKind.WARM_DROPPED)
    assert [e.model_id for e in drops] == [dropped]
    assert drops[0].detail["reason"] == "warm tier full: room for c"
    assert h.state(dropped) is ModelState.UNLOADED
    assert h.state("c") is ModelState.WARM
    assert h.s.warm.account.committed_total == 8 * GB


def test_the_offload_waits_for_the_dropped_copy_to_be_gone() -> None:
    h = warm_harness(warm_budget=4 * GB)
    h.load("a", "b")  # a is warm, b ready
    assert h.state("a") is ModelState.WARM
    h.wait("c")  # evicts b: a's copy must go first
    assert h.fx.unloads == ["a"]  # the drop of a's copy
    assert h.fx.offloads == ["a"]  # b's offload has not started yet
    h.finish_unload("a")  # the copy is gone
    assert h.fx.offloads == ["a", "b"]
    assert h.state("a") is ModelState.UNLOADED


def test_a_model_bigger_than_the_warm_budget_is_unloaded_the_ordinary_way() -> None:
    h = warm_harness(warm_budget=2 * GB)
    h.load("a")
    h.wait("b")
    assert h.fx.offloads == []
    assert h.fx.unloads == ["a"]


def test_a_failed_offload_falls_back_to_an_unload() -> None:
    h = warm_harness()
    h.load("a")
    h.wait("b")
    h.finish_offload("a", ok=False)
    assert h.fx.kinds(EventKind.OFFLOAD_FAILED)[0].detail["error"] == "offload boom"
    assert h.fx.unloads == ["a"]
    assert h.s.warm.account.reserved == {}
    h.settle()
    assert h.state("a") is ModelState.UNLOADED
    assert h.state("b") is ModelState.READY


def test_a_failed_restore_marks_the_model_failed_and_frees_its_copy() -> None:
    h = warm_harness()
    h.load("a", "b")
    h.wait("a")
    assert h.in_flight()["offload"] == ["b"]  # the tier has room for b's copy
    h.finish_offload("b")
    assert h.fx.restores == [("a", "cpu")]
    h.fail_load("a", "cuda out of memory")
    assert h.state("a") is ModelState.FAILED
    assert "a" not in h.s.warm.account.committed


def test_a_warm_copy_lost_on_its_own_frees_its_host_bytes_for_the_next_offload() -> None:
    # A sleeping server process that dies: its copy is gone, without a drop to wait for.
    h = warm_harness(warm_budget=4 * GB)
    h.load("a", "b")  # a is warm, b ready
    warm = h.s.resolve("a").warm
    assert warm is not None
    h.s.on_lost("a", warm, "exited with code 9 while asleep")
    assert h.state("a") is ModelState.UNLOADED
    assert h.s.resolve("a").last_error == "exited with code 9 while asleep"
    assert h.fx.kinds(EventKind.LOST)[-1].detail == {
        "device": HOST,
        "reason": "exited with code 9 while asleep",
    }
    assert h.s.warm.account.committed == {}
    h.wait("c")  # b's offload needs no drop: the tier is empty
    assert h.fx.unloads == []
    assert h.fx.offloads == ["a", "b"]
    h.s.on_lost("a", warm, "late news")  # stale: ignored
    assert len(h.fx.kinds(EventKind.LOST)) == 1


def test_an_explicit_unload_of_a_warm_model_drops_its_copy() -> None:
    h = warm_harness()
    h.load("a", "b")
    waiter = h.s.unload("a")
    assert h.fx.unloads == ["a"]
    assert waiter.waiter_id not in h.fx.granted
    h.finish_unload("a")
    assert waiter.waiter_id in h.fx.granted
    assert h.state("a") is ModelState.UNLOADED
    assert h.s.warm.account.committed_total == 0


def test_a_request_for_a_copy_being_dropped_loads_cold_once_it_is_gone() -> None:
    h = warm_harness()
    h.load("a", "b")
    h.s.unload("a")
    h.wait("a")
    assert h.fx.restores == []
    assert h.started_loads() == ["a", "b"]
    h.finish_unload("a")  # copy gone: now b is evicted for a cold load of a
    h.settle()
    assert h.started_loads() == ["a", "b", "a"]
    assert h.state("a") is ModelState.READY


def test_stop_drops_every_warm_copy_before_it_is_done() -> None:
    h = warm_harness()
    h.load("a", "b")
    done = h.s.stop()
    assert isinstance(done, Waiter)
    assert sorted(h.fx.unloads) == ["a", "b"]  # b unloaded, a's copy dropped
    h.finish_unload("b")
    assert done.waiter_id not in h.fx.granted
    h.finish_unload("a")
    assert done.waiter_id in h.fx.granted
    assert h.s.warm.account.committed_total == 0


def test_a_warm_handle_lives_in_host_memory() -> None:
    h = warm_harness()
    h.load("a", "b")
    warm = h.s.resolve("a").warm
    assert warm is not None
    assert warm.device == HOST


def test_restoring_a_model_never_drops_its_own_copy_to_make_room() -> None:
    # One model fits the device, one the warm tier: restoring a evicts b, whose offload
    # needs the tier's room, held by a's own copy, the one being restored. b must be
    # unloaded instead, and a restored from its copy.
    h = warm_harness(warm_budget=4 * GB)
    h.load("a", "b")
    assert h.state("a") is ModelState.WARM
    h.wait("a")
    assert h.fx.offloads == ["a"]  # b is not offloaded: there is no room for it
    assert h.fx.unloads == ["b"]
    h.settle()
    assert h.fx.restores == [("a", "cpu")]
    assert h.state("a") is ModelState.READY
    assert h.state("b") is ModelState.UNLOADED


def test_a_warm_copy_of_known_size_is_booked_at_that_size_from_the_start() -> None:
    # A server stopped with its 1 GB model file kept cached holds 1 GB, not the 4 GB it
    # held on its device: booked so from the start, it leaves room for another copy.
    sizes = {"a": 1 * GB}
    h = Harness(
        {"a": FOUR, "b": FOUR, "c": FOUR},
        budgets={"cpu": 4 * GB},
        policy="lru",
        warm_budget=2 * GB,
        offloadable=("a", "b", "c"),
        warm_size=lambda spec: sizes.get(spec.id),
    )
    h.load("a")
    h.wait("b")
    assert h.fx.offloads == ["a"]  # 4 GB would not fit a 2 GB tier: it would unload
    assert h.s.warm.account.started == {"a": 1 * GB}
