"""The simulator replays ``strategy: auto`` itself: it switches on the virtual clock at
each interval, and its wait is measured like any fixed strategy's."""

from __future__ import annotations

from modelpool.config import AutoOptions
from modelpool.plugins import POLICIES
from modelpool.sim.auto_replay import simulate_auto
from modelpool.sim.engine import Simulation
from modelpool.sim.models import ModelSet, SimModel
from modelpool.sim.workload import Request, Workload

GB = 10**9
MODELS = ModelSet(
    "three",
    (
        SimModel("big", 4 * GB, 20.0, device="cpu"),
        SimModel("s1", 4 * GB, 1.0, device="cpu"),
        SimModel("s2", 4 * GB, 1.0, device="cpu"),
    ),
    {"cpu": 8 * GB},
)


def phases_then_bursts() -> Workload:
    pattern = ["s1"] * 10 + ["s2"] * 10 + ["big", "s1", "s2", "s1", "s2"] * 40
    requests = tuple(Request(5.0 * i, m, service=0.5) for i, m in enumerate(pattern))
    return Workload("phases-then-bursts", requests)


def test_auto_switches_once_when_the_traffic_turns_and_waits_less_than_its_start() -> None:
    workload = phases_then_bursts()
    options = AutoOptions(interval=100.0, window=600.0)
    result, hook = simulate_auto(workload, MODELS, options=options)
    assert [to_ for _, _, to_ in hook.switches] == ["cost_aware"]
    when, from_, _ = hook.switches[0]
    assert from_ == "hybrid"
    assert 100.0 < when <= 300.0  # at an interval, once the bursts are in the window
    assert when % 100.0 == 0.0
    hybrid = Simulation(workload, MODELS, POLICIES.get("hybrid")()).run()
    cost_aware = Simulation(workload, MODELS, POLICIES.get("cost_aware")()).run()
    assert result.label == "auto"
    assert result.total_wait < 0.75 * hybrid.total_wait
    assert result.total_wait >= cost_aware.total_wait  # it pays for the time it took to see


def test_without_a_change_worth_the_hysteresis_auto_is_its_starting_strategy() -> None:
    pattern = ["s1"] * 10 + ["s2"] * 10
    workload = Workload(
        "phases", tuple(Request(5.0 * i, m, 0, 0, 0.5) for i, m in enumerate(pattern))
    )
    result, hook = simulate_auto(workload, MODELS, options=AutoOptions(interval=30.0))
    assert hook.switches == []
    hybrid = Simulation(workload, MODELS, POLICIES.get("hybrid")()).run()
    assert result.total_wait == hybrid.total_wait
