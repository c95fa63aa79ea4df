"""``strategy: auto`` on a real pool: the traffic turns from task phases to bursts, and
the pool switches strategy once, with the evaluation's table in its events.

The pool, its scheduler, its release path and the replays are real; the backend is the
shipped fake, made to take its load time on the pool's manual clock (so the pool
measures a 20 s load without the test waiting 20 s).
"""

from __future__ import annotations

import asyncio

from modelpool import EventKind, FakeBackend, ModelPool, ModelSpec
from modelpool.config import ModelSpec as Spec
from modelpool.core.ports import Handle
from modelpool.core.testing import ManualClock
from modelpool.sim.auto import AutoStrategy
from modelpool.types import DeviceId

GB = 10**9
LOAD_SECONDS = {"big": 20.0, "s1": 1.0, "s2": 1.0}
"""One expensive model and two cheap ones, all 4 GB, in 8 GB: two fit at once."""


class ClockedFakeBackend(FakeBackend):
    """The fake backend, whose loads take ``LOAD_SECONDS`` on the pool's manual clock."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock = clock

    async def load(self, spec: Spec, device: DeviceId) -> Handle:
        self.clock.advance(LOAD_SECONDS[spec.id])
        return await super().load(spec, device)


async def play(pool: ModelPool, clock: ManualClock, pattern: list[str], rounds: int) -> None:
    """Requests one after another: each holds its lease 0.5 s; the next comes 5 s later."""
    for _ in range(rounds):
        for model in pattern:
            lease = await pool.acquire(model)
            clock.advance(0.5)
            pool.release(lease)
            clock.advance(5.0)


def test_from_phases_to_bursts_the_pool_switches_once_and_says_why() -> None:
    clock = ManualClock(0.0)
    specs = [ModelSpec(id=m, backend="fake", memory=4 * GB, device="cpu") for m in LOAD_SECONDS]
    pool = ModelPool(
        specs,
        budgets={"cpu": 8 * GB},
        strategy="auto",
        backends={"fake": ClockedFakeBackend(clock)},
        clock=clock,
    )
    auto = AutoStrategy(pool)  # replays in a worker process, as in a server

    async def scenario() -> list[tuple[str, str]]:
        chosen = []
        async with pool:
            # Task phases: a run of s1, then a run of s2; they fit together, nothing to choose.
            await play(pool, clock, ["s1"] * 10 + ["s2"] * 10, rounds=2)
            chosen.append(((await auto.evaluate()).current, pool.strategy))
            # Bursts: the expensive model between alternating cheap ones; keeping it pays.
            await play(pool, clock, ["big", "s1", "s2", "s1", "s2"], rounds=20)
            chosen.append(((await auto.evaluate()).current, pool.strategy))
            await play(pool, clock, ["big", "s1", "s2", "s1", "s2"], rounds=10)
            chosen.append(((await auto.evaluate()).current, pool.strategy))
            await auto.stop()
        return chosen

    steps = asyncio.run(scenario())
    assert steps == [("hybrid", "hybrid"), ("hybrid", "cost_aware"), ("cost_aware", "cost_aware")]
    events = pool.recent_events()
    evaluated = [e for e in events if e.kind is EventKind.STRATEGY_EVALUATED]
    changed = [e for e in events if e.kind is EventKind.STRATEGY_CHANGED]
    assert len(evaluated) == 3
    assert len(changed) == 1
    assert (changed[0].detail["old"], changed[0].detail["new"]) == ("hybrid", "cost_aware")
    table = {row["strategy"]: row for row in changed[0].detail["table"]}
    assert set(table) >= {"hybrid", "lru", "lfu", "fifo", "cost_aware"}  # every registered one
    assert table["cost_aware"]["total_wait"] < 0.9 * table["hybrid"]["total_wait"]
    assert table["cost_aware"]["cold_loads"] < table["hybrid"]["cold_loads"]
    assert "cost_aware would have waited" in changed[0].detail["why"]
    # the first evaluation: the phases cost every strategy the same, so hybrid stayed
    first = evaluated[0].detail
    assert not first["switched"]
    assert first["requests"] == 40
    assert auto.status()["switches"] == 1
