"""A remote model (``backend: remote``) books no memory here: the scheduler's decisions,
driven directly with the recording effects and a manual clock.

It is placed with 0 bytes, so it goes at once; no eviction, watermark or count cap
ever picks it (its leaving would free nothing), it is no holder in a refusal, and its
circuit never opens (its server comes back on its own).
"""

from __future__ import annotations

import pytest
from harness import GB, REMOTE, Harness

from modelpool.core.events import EventKind
from modelpool.core.lease import Lease
from modelpool.core.states import ModelState
from modelpool.errors import CircuitOpen, InsufficientMemory, LoadFailed

FOUR = {"memory": 4 * GB}


def test_a_remote_model_is_booked_with_no_bytes_and_never_evicted_for_room() -> None:
    h = Harness({"far": REMOTE, "a": FOUR, "b": FOUR, "c": FOUR})
    h.used_in_order("far", "a", "b")  # far is the least recently used
    account = h.s.ledger.account("cpu")
    assert account.committed["far"] == 0
    h.wait("c")
    assert h.fx.unloads == ["a"]  # lru's next pick: far's leaving would free nothing
    h.settle()
    assert h.state("far") is ModelState.READY
    assert h.state("c") is ModelState.READY


def test_a_remote_model_counts_toward_no_max_models() -> None:
    h = Harness({"far": REMOTE, "a": FOUR, "b": FOUR}, max_models=1)
    h.used_in_order("far", "a")
    assert h.fx.unloads == []  # far loaded beside a: it counts for nothing
    h.wait("b")
    assert h.fx.unloads == ["a"]
    h.settle()
    assert {m: h.state(m) for m in ("far", "a", "b")} == {
        "far": ModelState.READY,
        "a": ModelState.UNLOADED,
        "b": ModelState.READY,
    }


def test_a_remote_model_loads_at_once_on_a_device_over_budget() -> None:
    h = Harness({"a": {**FOUR, "pinned": True}, "far": REMOTE})
    h.s.load("a")
    h.finish_load("a", footprint=9 * GB)  # measured bigger than the whole budget
    assert h.s.ledger.account("cpu").over_budget
    assert h.fx.kinds(EventKind.OVER_BUDGET)
    waiter = h.wait("far")
    assert h.started_loads()[-1] == "far"
    h.finish_load("far")
    assert isinstance(h.fx.granted[waiter.waiter_id], Lease)


def test_a_remote_model_is_no_holder_in_a_refusal() -> None:
    h = Harness({"far": REMOTE, "a": {**FOUR, "pinned": True}, "big": {"memory": 6 * GB}})
    h.load("far", "a")
    h.lease("far", "t-far")  # in use: still nothing of the room is its
    waiter = h.wait("big")
    error = h.fx.rejected[waiter.waiter_id]
    assert isinstance(error, InsufficientMemory)
    assert "held by: a (" in str(error)
    assert "far" not in str(error)
    assert h.fx.unloads == []  # nor evicted in the attempt
    assert h.state("far") is ModelState.READY


def test_the_high_watermark_unloads_local_models_only() -> None:
    h = Harness({"far": REMOTE, "a": {"memory": 5 * GB}}, high_watermark=0.5)
    h.used_in_order("far", "a")
    h.clock.advance(1)
    h.s.on_tick()
    assert h.fx.unloads == ["a"]
    assert h.state("far") is ModelState.READY


def test_the_circuit_of_a_remote_model_never_opens_its_backoff_still_grows() -> None:
    h = Harness({"far": REMOTE, "a": FOUR}, max_failures=2, max_restart_backoff=8.0)
    waits: list[float] = []
    for _ in range(5):
        h.wait("far")
        h.fail_load("far", "GET http://10.0.0.5:8000/v1/models was refused")
        with pytest.raises(LoadFailed) as backing_off:
            h.request("far")
        assert not isinstance(backing_off.value, CircuitOpen)
        assert backing_off.value.retry_after is not None
        waits.append(backing_off.value.retry_after)
        h.clock.advance(backing_off.value.retry_after)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert not h.fx.kinds(EventKind.CIRCUIT_OPEN)
    for _ in range(2):  # a local model's opens, as before
        h.wait("a")
        h.fail_load("a")
        h.clock.advance(60)
    with pytest.raises(CircuitOpen):
        h.request("a")
