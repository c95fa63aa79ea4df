"""``Simulation.fork`` and ``continue_with``: a running simulation copied as it stands
and played on with other requests, without touching the original."""

from __future__ import annotations

import pytest

from modelpool.plugins import POLICIES
from modelpool.sim.engine import Simulation
from modelpool.sim.models import ModelSet, SimModel
from modelpool.sim.results import RunResult
from modelpool.sim.workload import Request, Workload

GB = 1000**3
ABC = ModelSet(
    "test",
    tuple(SimModel(m, GB, 2.0, unload_seconds=0.0, device="gpu") for m in "abc"),
    {"gpu": 2 * GB},
)
# a loaded at 0, b at 10, a again at 20: at 25 a and b are resident, a used last.
ARRIVALS = ((0, "a"), (10, "b"), (20, "a"), (40, "b"))
SPARSE = Workload("test", tuple(Request(t, m, service=1.0) for t, m in ARRIVALS))
THEN = [Request(30.0, "c", service=1.0), Request(35.0, "a", service=1.0)]


def forked_at_25(workload: Workload = SPARSE) -> tuple[Simulation, RunResult, list[Simulation]]:
    """The run under lru with a hook that forks it at 25 s (and only then)."""
    forks: list[Simulation] = []

    def hook(simulation: Simulation) -> None:
        if not forks:
            forks.append(simulation.fork())

    simulation = Simulation(workload, ABC, POLICIES.get("lru")(), every=(25.0, hook))
    return simulation, simulation.run(), forks


def test_a_fork_plays_on_from_the_state_it_was_taken_in() -> None:
    _, _, forks = forked_at_25()
    result = forks[0].continue_with(THEN)
    # c evicts b (lru: a was used last), and a is still resident at 35 s: one load only
    assert (result.requests, result.cold_loads, result.hits) == (2, 1, 1)
    assert result.total_wait == pytest.approx(2.0)
    assert result.label == "lru"


def test_the_policy_given_decides_from_the_fork_on() -> None:
    _, _, forks = forked_at_25()
    result = forks[0].continue_with(THEN, POLICIES.get("fifo")())
    # fifo evicts a (loaded first) for c: a misses at 35 s
    assert (result.cold_loads, result.hits) == (2, 0)
    assert result.total_wait == pytest.approx(4.0)
    assert result.label == "fifo"


def test_each_fork_is_its_own_copy_and_the_original_runs_as_without_it() -> None:
    _, result, forks = forked_at_25()
    plain = Simulation(SPARSE, ABC, POLICIES.get("lru")()).run()
    assert (result.total_wait, result.cold_loads, result.hits) == (
        plain.total_wait, plain.cold_loads, plain.hits,
    )  # fmt: skip
    fork = forks[0]
    first = fork.fork().continue_with(THEN, POLICIES.get("fifo")())
    second = fork.fork().continue_with(THEN)
    assert (first.total_wait, second.total_wait) == (pytest.approx(4.0), pytest.approx(2.0))


def test_a_fork_carries_no_hook_and_counts_only_what_follows() -> None:
    calls: list[float] = []
    forks: list[Simulation] = []

    def hook(simulation: Simulation) -> None:
        calls.append(simulation.clock.now)
        if not forks:
            forks.append(simulation.fork())

    Simulation(SPARSE, ABC, POLICIES.get("lru")(), every=(25.0, hook)).run()
    seen = len(calls)
    result = forks[0].continue_with([Request(t, "c", service=1.0) for t in (60, 80, 100)])
    assert len(calls) == seen  # the fork's own periodic events do not call the hook
    assert (result.requests, result.cold_loads, result.hits) == (3, 1, 2)
    assert forks[0].arrived == []  # the past requests stayed with the original


def test_continuing_with_a_request_before_the_clock_is_refused() -> None:
    _, _, forks = forked_at_25()
    with pytest.raises(ValueError, match=r"at 5 s, before the simulation's clock \(25 s\)"):
        forks[0].continue_with([Request(5.0, "a", service=1.0)])
