"""Replicas and per-model concurrency in the scheduler: no loop, a manual clock."""

from __future__ import annotations

from collections import Counter

import pytest
from harness import GB, Harness

from modelpool.config import ModelSpec
from modelpool.core.events import EventKind
from modelpool.core.lease import Lease
from modelpool.core.replicas import EXTRA_IDLE_SECONDS
from modelpool.core.states import ModelState
from modelpool.errors import ModelQueueFull, QueueFull, WaitTimeout

TWO = {"memory": 2 * GB, "replicas": 2}
ELASTIC = {"memory": 2 * GB, "replicas": {"min": 1, "max": 2, "target_inflight": 1}}


def both_loaded(h: Harness, model: str = "m") -> None:
    h.load(model)  # the first copy for the load, the second to reach min
    assert [h.state(f"{model}#{n}") for n in (1, 2)] == [ModelState.READY] * 2


def test_a_model_with_replicas_is_one_record_per_copy_and_one_model() -> None:
    h = Harness({"m": {**TWO, "aliases": ("em",)}})
    assert [r.model_id for r in h.s.records()] == ["m#1", "m#2"]
    assert list(h.s.models()) == ["m"]
    assert h.s.model_id_of("em") == h.s.model_id_of("m#2") == "m"
    assert h.s.model_spec("em").id == "m"
    assert h.s.model_state("m") is ModelState.UNLOADED


def test_fixed_replicas_load_both_copies_on_first_use() -> None:
    h = Harness({"m": TWO})
    waiter = h.wait("m")
    assert h.started_loads() == ["m#1"]
    h.finish_load("m#1")
    assert isinstance(h.fx.granted[waiter.waiter_id], Lease)
    assert h.started_loads() == ["m#1", "m#2"]  # below min while in use: the second starts
    started = h.fx.kinds(EventKind.REPLICA_STARTED)
    assert [e.model_id for e in started] == ["m#2"]
    assert "min 2" in started[0].detail["reason"]
    h.finish_load("m#2")
    assert h.s.model_state("m") is ModelState.READY


def test_requests_go_to_the_copy_with_the_fewest_in_flight() -> None:
    h = Harness({"m": TWO})
    both_loaded(h)
    leases = [h.lease("m", f"t{i}") for i in range(6)]
    assert Counter(lease.model_id for lease in leases) == {"m#1": 3, "m#2": 3}
    for lease in leases:
        if lease.model_id == "m#2":
            h.s.release(lease)
    assert {h.lease("m").model_id for _ in range(3)} == {"m#2"}  # m#1 still has 3 out


def test_a_new_copy_starts_when_every_copy_is_busier_than_the_target() -> None:
    h = Harness({"m": ELASTIC})
    h.load("m")
    assert h.started_loads() == ["m#1"]  # min 1: one copy
    h.lease("m")
    assert h.started_loads() == ["m#1"]  # 1 in flight: not above target 1
    h.lease("m")
    assert h.started_loads() == ["m#1", "m#2"]
    (event,) = h.fx.kinds(EventKind.REPLICA_STARTED)
    assert "more than 1 requests in flight" in event.detail["reason"]
    h.finish_load("m#2")
    assert h.lease("m").model_id == "m#2"


def test_a_new_copy_never_evicts_a_model_with_more_demand() -> None:
    h = Harness({"m": ELASTIC, "b": {"memory": 6 * GB}}, budgets={"cpu": 8 * GB})
    h.load("m")
    h.s.release(_loaded(h, "b"))
    for _ in range(20):  # b is wanted far more than m
        h.s.release(h.lease("b"))
    h.lease("m")
    h.lease("m")
    assert h.started_loads() == ["m#1", "b"]  # no room for m#2 without b: b stays
    assert h.fx.unloads == []


def _loaded(h: Harness, model: str) -> Lease:
    h.load(model)
    return h.lease(model)


def test_a_new_copy_evicts_an_idle_model_with_less_demand() -> None:
    h = Harness({"m": ELASTIC, "b": {"memory": 6 * GB}}, budgets={"cpu": 8 * GB})
    h.s.release(_loaded(h, "b"))
    h.load("m")
    for _ in range(5):
        h.s.release(h.lease("m"))
    h.lease("m")
    h.lease("m")
    assert h.fx.unloads == ["b"]
    (event,) = h.fx.kinds(EventKind.REPLICA_STARTED)
    assert event.detail["victims"] == ["b"]
    h.settle()
    assert h.state("m#2") is ModelState.READY


def test_an_idle_extra_copy_goes_after_the_idle_time_and_the_first_stays() -> None:
    h = Harness({"m": ELASTIC})
    h.load("m")
    leases = [h.lease("m"), h.lease("m")]
    h.settle()
    for lease in leases:
        h.s.release(lease)
    h.clock.advance(EXTRA_IDLE_SECONDS - 1)
    h.s.on_tick()
    assert h.fx.unloads == []
    h.clock.advance(1)
    h.s.on_tick()
    assert h.fx.unloads == ["m#2"]
    (event,) = [e for e in h.fx.kinds(EventKind.UNLOAD_STARTED) if e.model_id == "m#2"]
    assert event.detail["reason"].endswith("(ttl)")
    h.settle()
    h.clock.advance(10 * EXTRA_IDLE_SECONDS)
    h.s.on_tick()
    assert h.state("m#1") is ModelState.READY  # min 1, no ttl: the first copy stays


def test_with_a_ttl_the_extra_goes_after_the_ttl() -> None:
    h = Harness({"m": {**ELASTIC, "ttl": 30}})
    h.load("m")
    leases = [h.lease("m"), h.lease("m")]
    h.settle()
    h.s.release(leases[0])  # m#1 stays in use
    h.clock.advance(5)
    h.s.release(h.lease("m"))  # m#2 was used at +5
    h.clock.advance(30)
    h.s.on_tick()
    assert h.fx.unloads == ["m#2"]


def test_a_lost_copy_is_replaced_and_the_others_serve_meanwhile() -> None:
    h = Harness({"m": TWO})
    both_loaded(h)
    on_first, on_second = h.lease("m"), h.lease("m")
    assert (on_first.model_id, on_second.model_id) == ("m#1", "m#2")
    handle = h.s.resolve("m#2").handle
    assert handle is not None
    h.s.on_lost("m#2", handle, "exited with -9")
    assert on_second.released  # its request fails at the dead endpoint (a 502)
    assert not on_first.released
    assert {h.lease("m").model_id for _ in range(3)} == {"m#1"}
    assert h.started_loads() == ["m#1", "m#2"]  # backing off after the death
    h.clock.advance(1.0)  # restart_backoff
    h.s.on_tick()
    assert h.started_loads() == ["m#1", "m#2", "m#2"]
    h.finish_load("m#2")
    assert h.lease("m").model_id == "m#2"


def test_max_concurrent_queues_the_rest_and_a_returned_lease_serves_the_next() -> None:
    h = Harness({"a": {"memory": GB, "max_concurrent": 2}})
    h.load("a")
    first, second = h.lease("a"), h.lease("a")
    third = h.wait("a")
    assert third.waiter_id not in h.fx.granted
    h.s.release(first)
    granted = h.fx.granted[third.waiter_id]
    assert isinstance(granted, Lease)
    assert granted.model_id == "a"
    assert second.model_id == "a"


def test_over_max_queue_the_model_refuses_with_model_queue_full() -> None:
    h = Harness({"a": {"memory": GB, "max_concurrent": 1, "max_queue": 2}, "b": {"memory": GB}})
    h.load("a", "b")
    h.lease("a")
    h.wait("a")
    h.wait("a")
    with pytest.raises(ModelQueueFull, match=r"'a'.*2 requests already wait") as caught:
        h.request("a")
    assert isinstance(caught.value, QueueFull)
    assert h.lease("b").model_id == "b"  # another model is not held up


def test_max_concurrent_holds_per_copy_and_waiters_go_to_whichever_frees() -> None:
    h = Harness({"m": {**TWO, "max_concurrent": 1}})
    both_loaded(h)
    first, second = h.lease("m"), h.lease("m")
    assert {first.model_id, second.model_id} == {"m#1", "m#2"}
    waiter = h.wait("m")
    h.s.release(second)
    granted = h.fx.granted[waiter.waiter_id]
    assert isinstance(granted, Lease)
    assert granted.model_id == second.model_id


def test_requests_waiting_on_full_copies_start_another_copy() -> None:
    h = Harness({"m": {"memory": GB, "max_concurrent": 1, "replicas": {"max": 2}}})
    h.load("m")
    h.lease("m")
    waiter = h.wait("m")
    assert h.started_loads() == ["m#1", "m#2"]
    h.finish_load("m#2")
    granted = h.fx.granted[waiter.waiter_id]
    assert isinstance(granted, Lease)
    assert granted.model_id == "m#2"


def test_unloading_the_model_unloads_every_copy_and_answers_once_all_are_gone() -> None:
    h = Harness({"m": TWO})
    both_loaded(h)
    lease = h.lease("m")
    waiter = h.s.unload("m")
    assert sorted(h.fx.unloads) == sorted({"m#1", "m#2"} - {lease.model_id})
    h.settle()
    assert waiter.waiter_id not in h.fx.granted  # one copy still has a lease out
    h.s.release(lease)
    h.settle()
    assert h.fx.granted[waiter.waiter_id] is None
    assert h.s.model_state("m") is ModelState.UNLOADED
    assert h.started_loads() == ["m#1", "m#2"]  # nothing came back by itself


def test_pinning_the_model_pins_the_copies_within_min() -> None:
    h = Harness({"m": {"memory": GB, "replicas": {"min": 1, "max": 3}}})
    h.s.pin("m")
    assert [r.pinned for r in h.s.records()] == [True, False, False]
    h.s.pin("m", False)
    assert not any(r.pinned for r in h.s.records())


def test_a_copy_can_be_asked_for_by_its_own_id() -> None:
    h = Harness({"m": TWO})
    both_loaded(h)
    assert {h.lease("m#2").model_id for _ in range(3)} == {"m#2"}


def test_a_wait_for_a_slot_that_runs_out_names_the_model_and_why() -> None:
    h = Harness({"m": {**TWO, "max_concurrent": 1}})
    both_loaded(h)
    h.lease("m")
    h.lease("m")
    waiter = h.wait("m")
    h.clock.advance(30)
    h.s.expire(waiter)
    error = h.fx.rejected[waiter.waiter_id]
    assert isinstance(error, WaitTimeout)
    assert str(error) == (
        "gave up waiting for 'm' after 30.0s (model is serving, every copy at max_concurrent)"
    )


def test_copies_of_an_offloadable_model_go_to_the_warm_tier() -> None:
    h = Harness(
        {"m": {"memory": 4 * GB, "replicas": {"max": 2}}, "b": {"memory": 6 * GB}},
        warm_budget=8 * GB,
        offloadable=("m",),  # the shell names the model, not its copies
    )
    h.load("m")
    h.wait("b")
    assert h.fx.offloads == ["m#1"]


def test_copies_of_a_model_added_at_run_time_go_to_the_warm_tier_too() -> None:
    h = Harness({"b": {"memory": 6 * GB}}, warm_budget=8 * GB)
    spec = ModelSpec(id="m", backend="fake", device="cpu", memory=4 * GB, replicas={"max": 2})
    h.s.add_model(spec, 4 * GB, offloadable=True)  # a reload adds it: named as the model
    h.load("m")
    h.wait("b")
    assert h.fx.offloads == ["m#1"]
