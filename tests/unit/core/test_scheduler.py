"""The scheduler's decisions, driven directly: no loop, no sleeps, a manual clock."""

from __future__ import annotations

import pytest
from harness import GB, Harness

from modelpool.core.events import EventKind
from modelpool.core.lease import Lease, Waiter
from modelpool.core.states import ModelState
from modelpool.errors import (
    CircuitOpen,
    DoesNotFit,
    InsufficientMemory,
    LoadFailed,
    PoolClosed,
    QueueFull,
    UnknownModel,
    WaitTimeout,
)
from modelpool.plugins import POLICIES

FOUR = {"memory": 4 * GB}


def test_resident_model_is_granted_at_once_without_loading() -> None:
    h = Harness({"a": FOUR})
    h.load("a")
    lease = h.lease("a", "t1")
    assert lease.hit
    assert lease.task_id == "t1"
    assert lease.obj == "<a>"
    assert h.started_loads() == ["a"]


def test_concurrent_requests_for_a_cold_model_load_it_once() -> None:
    h = Harness({"a": FOUR})
    waiters = [h.wait("a", f"t{i}") for i in range(50)]
    assert h.started_loads() == ["a"]
    h.finish_load("a")
    assert h.started_loads() == ["a"]
    leases = [h.fx.granted[w.waiter_id] for w in waiters]
    assert all(isinstance(lease, Lease) and not lease.hit for lease in leases)
    assert len({lease.lease_id for lease in leases if lease}) == 50


def test_model_bigger_than_the_budget_is_refused_before_anything_is_evicted() -> None:
    h = Harness({"a": FOUR, "huge": {"memory": 9 * GB}})
    h.load("a")
    with pytest.raises(DoesNotFit, match="huge") as caught:
        h.request("huge")
    assert caught.value.need == 9 * GB
    assert caught.value.budget == 8 * GB
    assert h.fx.unloads == []
    assert h.state("a") is ModelState.READY


def test_unknown_model_names_the_configured_ones() -> None:
    h = Harness({"a": FOUR, "b": FOUR})
    with pytest.raises(UnknownModel, match=r"'nope'.*a, b"):
        h.request("nope")


def test_alias_resolves_to_the_model() -> None:
    h = Harness({"a": {**FOUR, "aliases": ("alpha",)}})
    h.load("alpha")
    assert h.lease("alpha").model_id == "a"


def test_policy_picks_the_victim_and_the_load_starts_after_the_unload() -> None:
    h = Harness({"a": FOUR, "b": FOUR, "c": FOUR})
    h.load("a", "b")
    h.clock.advance(5)
    h.s.release(h.lease("a"))  # a used more recently than b
    h.wait("c")
    assert h.fx.unloads == ["b"]
    assert h.state("c") is ModelState.LOADING
    assert "c" not in h.started_loads()
    h.finish_unload("b")
    assert h.started_loads()[-1] == "c"
    reason = h.fx.kinds(EventKind.UNLOAD_STARTED)[-1].detail["reason"]
    assert "lru" in reason
    assert "c" in reason


def test_a_leased_model_is_never_evicted_the_request_waits_for_the_lease() -> None:
    h = Harness({"a": FOUR, "b": FOUR, "c": FOUR})
    h.load("a", "b")
    lease_a, lease_b = h.lease("a", "t-a"), h.lease("b", "t-b")
    waiter = h.wait("c")
    assert h.fx.unloads == []
    assert h.fx.kinds(EventKind.WAITING_FOR_MEMORY)
    h.s.release(lease_b)
    assert h.fx.unloads == ["b"]
    h.settle()
    assert isinstance(h.fx.granted[waiter.waiter_id], Lease)
    assert h.state("a") is ModelState.READY
    assert not lease_a.released


def test_timeout_while_waiting_for_memory_names_what_holds_it() -> None:
    h = Harness({"a": FOUR, "b": FOUR, "c": FOUR})
    h.load("a", "b")
    h.lease("a", "task-7"), h.lease("b", "task-9")
    waiter = h.wait("c")
    h.s.expire(waiter)
    error = h.fx.rejected[waiter.waiter_id]
    assert isinstance(error, InsufficientMemory)
    assert "task-7" in str(error)
    assert "task-9" in str(error)
    assert "'c'" in str(error)
    assert h.s.waiting == 0


def test_memory_held_by_pinned_models_fails_at_once_with_the_holders() -> None:
    h = Harness({"a": {**FOUR, "pinned": True}, "b": {**FOUR, "pinned": True}, "c": FOUR})
    h.load("a", "b")
    waiter = h.wait("c")
    error = h.fx.rejected[waiter.waiter_id]
    assert isinstance(error, InsufficientMemory)
    assert [x.model_id for x in error.holders] == ["a", "b"]
    assert all(x.reason == "pinned" for x in error.holders)


def test_pinned_model_is_kept_even_when_it_is_the_least_recently_used() -> None:
    h = Harness({"a": {**FOUR, "pinned": True}, "b": FOUR, "c": FOUR})
    h.load("a", "b")
    h.clock.advance(10)
    h.s.release(h.lease("b"))
    h.wait("c")
    assert h.fx.unloads == ["b"]


def test_waiting_requests_are_grouped_by_model_abab_served_aabb() -> None:
    h = Harness({"a": FOUR, "b": FOUR}, budgets={"cpu": 4 * GB})
    a1 = h.wait("a", "a1")
    b1 = h.wait("b", "b1")
    h.clock.advance(0.1)
    a2 = h.wait("a", "a2")
    b2 = h.wait("b", "b2")
    h.finish_load("a")
    assert h.fx.granted_order() == [a1.waiter_id, a2.waiter_id]
    for waiter in (a1, a2):
        lease = h.fx.granted[waiter.waiter_id]
        assert lease is not None
        h.s.release(lease)
    h.settle()
    assert h.fx.granted_order() == [a1.waiter_id, a2.waiter_id, b1.waiter_id, b2.waiter_id]
    assert h.started_loads() == ["a", "b"]


def test_resident_model_keeps_serving_until_a_waiter_starves_then_it_drains() -> None:
    h = Harness({"a": FOUR, "b": FOUR}, budgets={"cpu": 4 * GB}, starvation_limit=10.0)
    h.load("a")
    first = h.lease("a")
    b = h.wait("b")
    h.clock.advance(5)
    second = h.lease("a")  # b has not starved yet: a resident model is served first
    h.s.release(first)
    h.clock.advance(6)
    h.s.on_tick()  # b has waited 11 s > 10 s: a is drained
    assert h.fx.kinds(EventKind.DRAINING)[-1].model_id == "a"
    late_a = h.wait("a")  # no new lease on a drained model
    assert h.fx.unloads == []
    h.s.release(second)  # the last lease returns: now a can go
    assert h.fx.unloads == ["a"]
    h.settle()
    assert isinstance(h.fx.granted[b.waiter_id], Lease)
    assert late_a.waiter_id not in h.fx.granted
    assert h.state("b") is ModelState.READY


def test_loads_with_disjoint_evictions_run_in_parallel() -> None:
    h = Harness({m: FOUR for m in "abcd"})
    h.load("a", "b")
    h.wait("c"), h.wait("d")
    assert sorted(h.fx.unloads) == ["a", "b"]
    h.finish_unload("a"), h.finish_unload("b")
    assert sorted(h.started_loads()[-2:]) == ["c", "d"]
    assert h.state("c") is ModelState.LOADING
    assert h.state("d") is ModelState.LOADING


def test_cold_loads_that_fit_start_together() -> None:
    h = Harness({"a": FOUR, "b": FOUR})
    h.wait("a"), h.wait("b")
    assert h.started_loads() == ["a", "b"]


def test_exclusive_group_evicts_the_other_member_even_with_memory_free() -> None:
    heavy = {"memory": 4 * GB, "group": "heavy"}
    h = Harness({"x": heavy, "y": heavy, "small": {"memory": GB}}, budgets={"cpu": 16 * GB})
    h.load("x", "small")
    h.wait("y")
    assert h.fx.unloads == ["x"]
    h.settle()
    assert h.state("y") is ModelState.READY
    assert h.state("small") is ModelState.READY


def test_exclusive_group_waits_for_a_leased_member() -> None:
    heavy = {"memory": 4 * GB, "group": "heavy"}
    h = Harness({"x": heavy, "y": heavy}, budgets={"cpu": 16 * GB})
    h.load("x")
    lease = h.lease("x")
    h.wait("y")
    assert h.fx.unloads == []
    h.s.release(lease)
    assert h.fx.unloads == ["x"]


def test_idle_model_is_unloaded_after_its_ttl() -> None:
    h = Harness({"a": {**FOUR, "ttl": 60}, "b": FOUR})
    h.load("a", "b")
    h.clock.advance(59)
    h.s.on_tick()
    assert h.fx.unloads == []
    h.clock.advance(2)
    h.s.on_tick()
    assert h.fx.unloads == ["a"]
    assert "ttl" in h.fx.kinds(EventKind.UNLOAD_STARTED)[-1].detail["reason"]


def test_ttl_counts_from_the_last_use_and_spares_leased_models() -> None:
    h = Harness({"a": {**FOUR, "ttl": 60}})
    h.load("a")
    h.clock.advance(50)
    lease = h.lease("a")
    h.clock.advance(100)
    h.s.on_tick()
    assert h.fx.unloads == []
    h.s.release(lease)
    h.clock.advance(30)
    h.s.on_tick()
    assert h.fx.unloads == []


def test_load_failure_marks_failed_rejects_its_waiters_and_others_keep_serving() -> None:
    h = Harness({"a": FOUR, "b": FOUR})
    h.load("b")
    waiters = [h.wait("a") for _ in range(3)]
    h.fail_load("a", "RuntimeError: weights missing")
    assert h.state("a") is ModelState.FAILED
    for waiter in waiters:
        error = h.fx.rejected[waiter.waiter_id]
        assert isinstance(error, LoadFailed)
        assert "weights missing" in str(error)
    assert h.lease("b").model_id == "b"
    assert h.s.ledger.account("cpu").reserved_total == 0
    with pytest.raises(LoadFailed, match=r"next try in 1\.0s"):
        h.request("a")  # backing off: refused at once
    h.clock.advance(1)
    h.wait("a")  # after the backoff, a new request tries again
    assert h.started_loads().count("a") == 2


def test_queue_is_bounded() -> None:
    h = Harness({"a": FOUR}, max_queue=2)
    h.wait("a"), h.wait("a")
    with pytest.raises(QueueFull, match="2 requests"):
        h.request("a")


def test_expiring_a_request_for_a_loading_model_is_a_wait_timeout() -> None:
    h = Harness({"a": FOUR})
    waiter = h.wait("a")
    h.clock.advance(30)
    h.s.expire(waiter)
    error = h.fx.rejected[waiter.waiter_id]
    assert isinstance(error, WaitTimeout)
    assert "loading" in str(error)
    h.finish_load("a")
    assert waiter.waiter_id not in h.fx.granted


def test_cancelled_request_is_not_granted_later() -> None:
    h = Harness({"a": FOUR})
    gone, kept = h.wait("a"), h.wait("a")
    assert h.s.cancel(gone)
    h.finish_load("a")
    assert gone.waiter_id not in h.fx.granted
    assert kept.waiter_id in h.fx.granted
    assert not h.s.cancel(gone)


def test_footprint_bigger_than_estimated_evicts_idle_models_to_get_back_in_budget() -> None:
    h = Harness({"a": FOUR, "b": FOUR})
    h.load("a")
    h.s.load("b")
    h.finish_load("b", footprint=5 * GB)
    assert h.fx.unloads == ["a"]
    assert h.s.ledger.account("cpu").over_budget == 0
    assert h.s.resolve("b").estimate == 5 * GB  # the next load reserves what was measured


def test_explicit_unload_waits_for_leases_and_stops_new_ones() -> None:
    h = Harness({"a": FOUR})
    h.load("a")
    lease = h.lease("a")
    done = h.s.unload("a")
    assert h.fx.unloads == []
    assert done.waiter_id not in h.fx.granted
    assert isinstance(h.request("a"), Waiter)
    h.s.release(lease)
    assert h.fx.unloads == ["a"]
    assert done.waiter_id not in h.fx.granted
    h.finish_unload("a")
    assert h.fx.calls[-2:] == [("grant", done.waiter_id), ("load", "a")]  # then the queued one


def test_stop_rejects_waiters_unloads_everything_and_balances_the_books() -> None:
    h = Harness({"a": FOUR, "b": FOUR, "c": FOUR})
    h.load("a", "b")
    lease = h.lease("a")
    waiter = h.wait("c")
    done = h.s.stop()
    assert isinstance(h.fx.rejected[waiter.waiter_id], PoolClosed)
    assert h.fx.unloads == ["b"]
    h.s.release(lease)
    h.settle()
    assert done.waiter_id in h.fx.granted
    assert h.s.ledger.is_empty()
    with pytest.raises(PoolClosed):
        h.request("a")


def test_auto_device_goes_where_there_is_room() -> None:
    h = Harness(
        {"a": {"memory": 3 * GB, "device": "auto"}, "big": {"memory": 6 * GB, "device": "gpu:0"}},
        budgets={"gpu:0": 8 * GB, "cpu": 4 * GB},
    )
    h.load("big")
    h.load("a")
    assert h.s.resolve("a").device == "cpu"


def test_best_model_for_task_uses_tags_weighted_by_health() -> None:
    h = Harness(
        {
            "coder": {**FOUR, "tags": ("code",)},
            "chat": {**FOUR, "tags": ("chat", "general")},
            "tts": {**FOUR, "tags": ("speech",)},
        }
    )
    assert h.s.best_model_for_task("code") == "coder"
    assert h.s.best_model_for_task("summarization") == "chat"
    for _ in range(9):
        h.s.record_performance("coder", 1.0, success=False)
    h.s.record_performance("coder", 1.0, success=True)
    assert h.s.best_model_for_task("code") == "chat"  # 1.0 x 0.1 health < 0.7


def test_demand_follows_the_tags_of_recent_requests() -> None:
    h = Harness({"coder": {**FOUR, "tags": ("code",)}, "chat": {**FOUR, "tags": ("chat",)}})
    h.load("coder")
    for _ in range(3):
        h.s.release(h.lease("coder"))
    h.wait("chat")
    assert h.s.demand() == {"code": 0.75, "chat": 0.25}


def test_more_important_waiters_are_planned_first() -> None:
    h = Harness({m: FOUR for m in "abc"}, budgets={"cpu": 4 * GB})
    h.load("a")
    lease = h.lease("a")
    background = h.wait("b", priority=9)
    h.clock.advance(1)
    urgent = h.wait("c", priority=1)
    h.s.release(lease)
    h.settle()
    assert urgent.waiter_id in h.fx.granted
    assert background.waiter_id not in h.fx.granted
    assert h.started_loads() == ["a", "c"]


def test_strategy_options_reach_the_policy() -> None:
    h = Harness({"a": FOUR, "b": FOUR, "c": FOUR})
    h.load("a", "b")
    h.s.release(h.lease("a"), ok=False)  # a errs once but is the most recently used
    h.s.set_policy(POLICIES.get("hybrid")(weights={"idle": 0, "loads": 0, "tasks": 0, "errors": 1}))
    h.wait("c")
    assert h.fx.unloads == ["a"]
    assert h.fx.kinds(EventKind.STRATEGY_CHANGED)[-1].detail == {"old": "lru", "new": "hybrid"}


def test_stop_gives_back_reservations_of_loads_that_had_not_started() -> None:
    h = Harness({"a": FOUR, "b": FOUR, "c": FOUR})
    h.load("a", "b")
    h.wait("c")  # evicts one, c waits for its memory
    assert h.state("c") is ModelState.LOADING
    h.s.stop()
    h.settle()
    assert h.state("c") is ModelState.UNLOADED
    assert "c" not in h.started_loads()
    assert h.s.ledger.is_empty()


def test_a_starving_request_keeps_later_loads_off_its_device() -> None:
    h = Harness({"a": FOUR, "b": FOUR, "c": FOUR, "x": {"memory": 8 * GB}}, starvation_limit=10)
    h.load("a", "b")
    lease = h.lease("a")
    big = h.wait("x")
    h.clock.advance(11)
    h.s.on_tick()  # x starves: a drains, and the device is held for x
    late = h.wait("c")
    assert h.fx.unloads == []  # c may not take b's memory from under x
    assert [holder.model_id for holder in h.s.resolve("c").blocked_by] == ["x"]
    h.s.release(lease)
    assert sorted(h.fx.unloads) == ["a", "b"]
    h.settle()
    assert isinstance(h.fx.granted[big.waiter_id], Lease)
    assert late.waiter_id not in h.fx.granted


def test_a_model_that_died_is_failed_its_memory_freed_and_a_stale_report_ignored() -> None:
    h = Harness({"a": FOUR, "b": FOUR, "c": FOUR})
    h.load("a", "b")
    lease = h.lease("a", "t1")
    h.lease("b", "t2")
    first = h.s.resolve("a").handle
    assert first is not None
    waiter = h.wait("c")  # both resident models are leased: c waits for memory
    assert "c" not in h.started_loads()
    h.s.on_lost("a", first, "exited with code 9")
    assert h.state("a") is ModelState.FAILED
    assert lease.released
    assert h.fx.kinds(EventKind.LOST)[-1].detail["reason"] == "exited with code 9"
    assert h.s.ledger.account("cpu").committed.get("a") is None
    assert h.started_loads()[-1] == "c"  # a's memory went to the waiting c
    assert h.fx.unloads == []  # and b, still leased, was left alone
    h.settle()
    assert isinstance(h.fx.granted[waiter.waiter_id], Lease)
    h.s.on_lost("a", first, "late news about the old process")  # stale: ignored
    assert h.state("a") is ModelState.FAILED
    assert len(h.fx.kinds(EventKind.LOST)) == 1


def test_failures_in_a_row_back_off_exponentially_then_open_the_circuit() -> None:
    h = Harness({"a": FOUR}, restart_backoff=2.0, max_restart_backoff=5.0, max_failures=3)
    waits = []
    for _ in range(3):
        h.wait("a")
        h.fail_load("a")
        waits.append(h.s.resolve("a").retry_at - h.clock.now)
        h.clock.advance(waits[-1])
    assert waits == [2.0, 4.0, 5.0]  # doubling, capped
    assert h.fx.kinds(EventKind.CIRCUIT_OPEN)[-1].detail["failures"] == 3
    with pytest.raises(CircuitOpen):
        h.request("a")
    h.s.load("a")  # an explicit load closes the circuit and tries at once
    h.finish_load("a")
    assert h.state("a") is ModelState.READY
    assert h.s.resolve("a").failures == 0


def test_an_unload_asked_while_loading_answers_the_explicit_load_and_stays_unloaded() -> None:
    h = Harness({"a": FOUR})
    load = h.s.load("a", token="load")
    unload = h.s.unload("a", token="unload")
    h.finish_load("a")
    assert h.fx.granted[load.waiter_id] is None  # the load it asked for happened
    assert h.fx.unloads == ["a"]
    h.finish_unload("a")
    assert h.fx.granted[unload.waiter_id] is None
    assert h.state("a") is ModelState.UNLOADED
    assert h.started_loads() == ["a"]  # nobody asked for it again


def test_unloading_a_failed_model_resets_it() -> None:
    h = Harness({"a": FOUR}, max_failures=1)
    h.wait("a")
    h.fail_load("a")
    assert h.state("a") is ModelState.FAILED
    done = h.s.unload("a")
    assert h.fx.granted[done.waiter_id] is None
    assert h.state("a") is ModelState.UNLOADED
    h.wait("a")  # the circuit was open; after the reset a plain request loads it again
    assert h.started_loads() == ["a", "a"]
