"""Reconciling the probe with the ledger: usable budgets, drift, measured processes."""

from __future__ import annotations

import asyncio
import os

import pytest
from harness import GB, Harness

from modelpool.core.events import EventKind
from modelpool.core.memory_watch import (
    BUDGET_STEP,
    RELEASE_POLL_SECONDS,
    assess,
    confirm_release,
    measure_processes,
)
from modelpool.core.ports import MemoryReading
from modelpool.core.states import ModelState
from modelpool.core.testing import ManualClock
from modelpool.probes.static import StaticProbe
from modelpool.probes.system import SystemProbe

FOUR = {"memory": 4 * GB}


def reading(used: int, total: int = 16 * GB) -> MemoryReading:
    return MemoryReading("cpu", total, used)


def test_others_use_shrinks_the_usable_budget_rounded_down() -> None:
    check = assess(reading(used=4 * GB + 9 * GB), ours=4 * GB, others_at_start=0,
                   budget=8 * GB, headroom=GB)  # fmt: skip
    assert check.others == 9 * GB
    room = 16 * GB - GB - 9 * GB
    assert check.usable == room - room % BUDGET_STEP
    assert check.drift == 9 * GB


def test_the_configured_budget_is_never_exceeded() -> None:
    check = assess(reading(used=0, total=64 * GB), 0, 0, budget=8 * GB, headroom=0)
    assert check.usable == 8 * GB


def test_memory_the_ledger_overstates_is_not_counted_as_others() -> None:
    check = assess(reading(used=GB), ours=4 * GB, others_at_start=0, budget=8 * GB, headroom=0)
    assert check.others == 0


def test_a_shrunken_budget_evicts_idle_models_and_grows_back() -> None:
    h = Harness({"a": FOUR, "b": FOUR}, budgets={"cpu": 8 * GB}, headroom=GB)
    h.s.on_memory_reading(reading(used=0, total=10 * GB))  # the baseline: nothing else
    h.load("a", "b")
    # A neighbour takes 1.5 GB: with 1 GB of headroom kept, 7.5 GB are left for us.
    h.s.on_memory_reading(reading(used=8 * GB + GB * 3 // 2, total=10 * GB))
    assert h.fx.unloads == ["a"]  # LRU: the older idle model makes room
    assert h.s.ledger.account("cpu").budget < 8 * GB
    h.settle()
    assert h.state("b") is ModelState.READY
    h.s.on_memory_reading(reading(used=4 * GB, total=10 * GB))  # the neighbour left
    assert h.s.ledger.account("cpu").budget == 8 * GB
    changes = [(e.detail["old"], e.detail["new"]) for e in h.fx.kinds(EventKind.BUDGET_CHANGED)]
    assert len(changes) == 2
    assert changes[-1][1] == 8 * GB


def test_probe_noise_below_two_steps_does_not_move_the_budget() -> None:
    h = Harness({"a": FOUR}, budgets={"cpu": 8 * GB})
    h.s.on_memory_reading(reading(used=10 * GB))  # usable: 6 GB, rounded
    first = h.s.ledger.account("cpu").budget
    h.s.on_memory_reading(reading(used=10 * GB + BUDGET_STEP))
    assert h.s.ledger.account("cpu").budget == first
    assert len(h.fx.kinds(EventKind.BUDGET_CHANGED)) == 1


def test_drift_is_reported_once_per_excursion() -> None:
    h = Harness({"a": FOUR}, budgets={"cpu": 8 * GB}, drift_threshold=GB)
    h.s.on_memory_reading(reading(used=GB))  # baseline: 1 GB used by others
    h.load("a")
    for _ in range(3):
        h.s.on_memory_reading(reading(used=GB + 4 * GB + 2 * GB))
    drifts = h.fx.kinds(EventKind.MEMORY_DRIFT)
    assert len(drifts) == 1
    assert drifts[0].detail["drift"] == 2 * GB
    h.s.on_memory_reading(reading(used=GB + 4 * GB))  # back to normal: re-armed
    h.s.on_memory_reading(reading(used=GB + 4 * GB - 3 * GB))  # the ledger overstates now
    assert len(h.fx.kinds(EventKind.MEMORY_DRIFT)) == 1  # others' use cannot go below 0
    h.s.on_memory_reading(reading(used=GB + 4 * GB + 3 * GB))
    assert len(h.fx.kinds(EventKind.MEMORY_DRIFT)) == 2


def test_processes_are_measured_by_the_probe_that_can() -> None:
    own = measure_processes(SystemProbe(), "cpu", [os.getpid()])
    assert own is not None
    assert own > 10 * 2**20  # this interpreter, with pytest loaded
    assert measure_processes(SystemProbe(), "cuda:0", [os.getpid()]) is None
    assert measure_processes(StaticProbe({"cpu": GB}), "cpu", [os.getpid()]) is None


# --- confirming a release, on a manual clock -------------------------------------------


def test_a_release_is_confirmed_when_the_probe_shows_the_memory_back() -> None:
    clock = ManualClock(0.0)
    probe = StaticProbe({"cuda:0": 16 * GB}, {"cuda:0": 10 * GB})

    async def sleep(seconds: float) -> None:  # the driver frees the memory after 1.2 s
        clock.advance(seconds)
        if clock() >= 1.2:
            probe.set_used("cuda:0", 6 * GB)

    waited = asyncio.run(
        confirm_release(probe, "cuda:0", 10 * GB, 4 * GB, 10.0, clock=clock, sleep=sleep)
    )
    assert waited == pytest.approx(1.2, abs=RELEASE_POLL_SECONDS)


def test_a_release_never_seen_gives_up_at_the_timeout() -> None:
    clock = ManualClock(0.0)
    probe = StaticProbe({"cuda:0": 16 * GB}, {"cuda:0": 10 * GB})

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    waited = asyncio.run(
        confirm_release(probe, "cuda:0", 10 * GB, 4 * GB, 3.0, clock=clock, sleep=sleep)
    )
    assert waited is None
    assert 3.0 <= clock() < 3.0 + 2 * RELEASE_POLL_SECONDS
