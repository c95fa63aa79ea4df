"""The forward replay of ``sim/auto_forward.py``: forecasts from the window, and each
candidate's cost played on from a fork of the running simulation."""

from __future__ import annotations

import random

import pytest

from modelpool.core.traffic_window import Arrival
from modelpool.plugins import POLICIES
from modelpool.sim.auto_forward import forward_table, repeat_last, resample
from modelpool.sim.engine import Simulation
from modelpool.sim.models import ModelSet, SimModel
from modelpool.sim.workload import Request, Workload

GB = 1000**3
ABC = ModelSet(
    "test",
    tuple(SimModel(m, GB, 2.0, unload_seconds=0.0, device="gpu") for m in "abc"),
    {"gpu": 2 * GB},
)


def test_repeat_last_shifts_the_last_span_to_start_now() -> None:
    window = [Arrival(10.0, "a", 1.0), Arrival(75.0, "b", 2.0), Arrival(90.0, "c", 3.0)]
    again = repeat_last(window, now=100.0, span=30.0)
    assert [(r.time, r.model, r.service) for r in again] == [(105.0, "b", 2.0), (120.0, "c", 3.0)]
    # a window younger than the span starts now from its first arrival
    assert [r.time for r in repeat_last(window, now=100.0, span=1000.0)] == [100.0, 165.0, 180.0]
    assert repeat_last([], now=100.0, span=30.0) == []


def test_resample_keeps_each_models_rate_and_its_recorded_times() -> None:
    # over 1000 s: a 90 requests holding 1 s, b 10 holding 5 s
    window = [Arrival(i * 1000.0 / 90, "a", 1.0) for i in range(90)]
    window += [Arrival(i * 100.0, "b", 5.0) for i in range(10)]
    window.sort(key=lambda a: a.at)
    drawn = resample(window, now=1000.0, span=10_000.0, rng=random.Random(1))
    a = [r for r in drawn if r.model == "a"]
    b = [r for r in drawn if r.model == "b"]
    assert len(a) == pytest.approx(900, rel=0.15)
    assert len(b) == pytest.approx(100, rel=0.35)
    assert {r.service for r in a} == {1.0}
    assert {r.service for r in b} == {5.0}
    assert all(1000.0 <= r.time < 11_000.0 for r in drawn)
    assert [r.time for r in drawn] == sorted(r.time for r in drawn)
    assert resample([], now=0.0, span=10.0, rng=random.Random(1)) == []


def test_forward_table_plays_each_candidate_on_from_the_state_and_leaves_it() -> None:
    tables = []
    coming = [Request(30.0, "c", service=1.0), Request(35.0, "a", service=1.0)]

    def hook(simulation: Simulation) -> None:
        if not tables:
            tables.append(forward_table(simulation, coming, ["fifo", "lru"]))

    # a at 0, b at 10, a again at 20: at 25 lru keeps a for c, fifo evicts it
    arrivals = ((0, "a"), (10, "b"), (20, "a"), (40, "b"))
    workload = Workload("test", tuple(Request(t, m, service=1.0) for t, m in arrivals))
    result = Simulation(workload, ABC, POLICIES.get("lru")(), every=(25.0, hook)).run()
    assert [(r.strategy, r.total_wait, r.cold_loads) for r in tables[0]] == [
        ("lru", 2.0, 1), ("fifo", 4.0, 2),
    ]  # fmt: skip
    plain = Simulation(workload, ABC, POLICIES.get("lru")()).run()
    assert (result.total_wait, result.cold_loads) == (plain.total_wait, plain.cold_loads)
