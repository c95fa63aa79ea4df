"""Preloads: behind every request, only into room nobody needs, most important first."""

from __future__ import annotations

from harness import GB, Harness

from modelpool.core.states import ModelState
from modelpool.errors import PoolClosed, PreloadSkipped

FOUR = {"memory": 4 * GB}
ABC = {"a": FOUR, "b": FOUR, "c": FOUR}


def test_a_preload_loads_into_free_room_and_answers_when_resident() -> None:
    h = Harness(ABC)
    waiter = h.s.preload("a")
    assert h.started_loads() == ["a"]
    assert waiter.waiter_id not in h.fx.granted
    h.settle()
    assert h.state("a") is ModelState.READY
    assert h.fx.granted[waiter.waiter_id] is None


def test_a_preload_waits_while_a_request_waits() -> None:
    h = Harness(ABC)
    h.wait("a")
    h.s.preload("b")
    assert h.started_loads() == ["a"]  # the request's load first, the preload behind it
    h.finish_load("a")
    assert h.started_loads() == ["a", "b"]


def test_a_preload_never_evicts_what_requests_brought_in() -> None:
    h = Harness(ABC)
    h.load("a", "b")
    waiter = h.s.preload("c")
    error = h.fx.rejected[waiter.waiter_id]
    assert isinstance(error, PreloadSkipped)
    assert "which requests brought in" in str(error)
    assert h.fx.unloads == []
    assert [e.detail["reason"] for e in h.fx.events if e.kind == "preload_skipped"]


def test_a_preload_displaces_only_less_important_preloads() -> None:
    h = Harness(ABC)
    h.s.preload("a", priority=5)
    h.s.preload("b", priority=2)
    h.settle()
    more = h.s.preload("c", priority=1)  # more important than both: a (5) makes way
    assert h.fx.unloads == ["a"]
    h.settle()
    assert h.fx.granted[more.waiter_id] is None
    less = h.s.preload("a", priority=9)
    assert "a preload of priority" in str(h.fx.rejected[less.waiter_id])


def test_a_preloaded_model_that_served_a_request_is_traffic_s() -> None:
    h = Harness(ABC)
    h.s.preload("a", priority=9)
    h.s.preload("b", priority=9)
    h.settle()
    h.clock.advance(5)
    h.s.release(h.lease("a"))  # used last: lru would pick b anyway, and a is no preload now
    waiter = h.s.preload("c", priority=1)
    assert h.fx.unloads == ["b"]  # b is still a preload; a served someone
    h.settle()
    assert h.fx.granted[waiter.waiter_id] is None


def test_preloads_go_in_priority_order() -> None:
    h = Harness(ABC)
    h.wait("a")  # keeps the preloads pending
    h.s.preload("c", priority=7)
    h.s.preload("b", priority=3)
    h.finish_load("a")
    assert h.started_loads() == ["a", "b"]  # c waits: its room is not free (b holds it)
    assert h.fx.rejected == {}


def test_a_resident_model_s_preload_is_answered_at_once() -> None:
    h = Harness(ABC)
    h.load("a")
    waiter = h.s.preload("a")
    assert h.fx.granted[waiter.waiter_id] is None


def test_stop_answers_pending_preloads() -> None:
    h = Harness(ABC)
    h.wait("a")
    waiter = h.s.preload("b")
    h.s.stop()
    assert isinstance(h.fx.rejected[waiter.waiter_id], PoolClosed)


def test_a_cancelled_preload_is_forgotten() -> None:
    h = Harness(ABC)
    h.wait("a")
    waiter = h.s.preload("b")
    assert h.s.cancel(waiter)
    h.finish_load("a")
    assert h.started_loads() == ["a"]
