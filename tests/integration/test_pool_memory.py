"""The async pool's memory evidence and warm tier, with the FakeBackend and scripted
probes: offload/restore through real tasks, others' use shrinking the budget, drift,
and unloads that wait for the probe to show the memory back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from modelpool import EventKind, FakeBackend, ModelPool, ModelSpec, ModelState, StaticProbe
from modelpool.core.events import PoolEvent
from modelpool.core.ports import MemoryReading
from modelpool.types import Bytes, DeviceId

GB = 10**9


class CountedProbe(StaticProbe):
    """A StaticProbe that lets a test wait until the pool has read it ``n`` more times:
    the pool's ticks and its unload confirmation are the only readers, so that many
    reads means that many looks at the memory, whatever the wall clock did."""

    def __init__(self, totals: dict[DeviceId, Bytes]) -> None:
        super().__init__(totals)
        self.reads = 0
        self._read = asyncio.Event()

    def read(self, device: DeviceId) -> MemoryReading | None:
        self.reads += 1
        self._read.set()
        return super().read(device)

    async def read_more(self, n: int) -> None:
        """Until ``n`` reads after this call (bounded: a probe nobody reads fails)."""
        goal = self.reads + n
        async with asyncio.timeout(10):
            while self.reads < goal:
                self._read.clear()
                await self._read.wait()


def spec(model_id: str, device: str = "cpu", **fields: object) -> ModelSpec:
    return ModelSpec(id=model_id, backend="fake", memory=4 * GB, device=device, **fields)


def gpu_pool(probe: StaticProbe, release_timeout: float) -> ModelPool:
    """One fake 4 GB model on a scripted GPU, where unloads wait for the probe."""
    return ModelPool(
        [spec("a", device="cuda:0")],
        budgets={"cuda:0": 8 * GB},
        backends={"fake": FakeBackend()},
        probe=probe,
        release_timeout=release_timeout,
    )


async def first(events: AsyncIterator[PoolEvent], kind: EventKind) -> PoolEvent:
    async with asyncio.timeout(10):  # a missing event fails the test, never hangs it
        async for event in events:
            if event.kind is kind:
                return event
    raise AssertionError(f"the pool stopped before a {kind} event")


async def test_an_evicted_model_waits_warm_and_is_restored_not_reloaded() -> None:
    backend = FakeBackend()
    pool = ModelPool(
        [spec("a"), spec("b")],
        budgets={"cpu": 4 * GB},
        warm_budget=8 * GB,
        strategy="lru",
        backends={"fake": backend},
    )
    async with pool:
        async with pool.use("a") as lease:
            assert lease.obj("hi") == "[a@cpu] hi"
        await pool.load("b")
        assert pool.state("a") is ModelState.WARM
        assert backend.warm == {"a"}
        status = pool.get_resource_status()
        assert status["warm_memory"]["committed"] == 4 * GB
        assert status["model_resources"]["a"]["memory_bytes"] == 4 * GB

        async with pool.use("a") as lease:
            assert lease.obj("again") == "[a@cpu] again"
        assert backend.loads == ["a", "b"]  # no second cold load of a
        assert backend.restores == ["a"]
        assert pool.state("b") is ModelState.WARM
        stats = pool.get_resource_status()["model_resources"]["a"]
        assert (stats["load_count"], stats["restore_count"], stats["offload_count"]) == (1, 1, 1)
    assert backend.warm == set()  # stop dropped every copy
    assert backend.resident == set()


async def test_memory_taken_by_other_processes_shrinks_the_budget_and_evicts() -> None:
    probe = StaticProbe({"cpu": 16 * GB})
    backend = FakeBackend()
    pool = ModelPool(
        [spec("a"), spec("b")],
        budgets={"cpu": 8 * GB},
        strategy="lru",
        backends={"fake": backend},
        probe=probe,
        reap_interval=0.01,
        drift_threshold="2GB",
        headroom="1GB",
    )
    async with pool:
        await pool.load("a")
        await pool.load("b")
        events = pool.events()
        probe.set_used("cpu", 8 * GB + 7 * GB + GB // 2)  # ours 8 GB, someone else's 7.5
        changed = await first(events, EventKind.BUDGET_CHANGED)
        assert changed.detail["others"] == 7 * GB + GB // 2
        assert changed.detail["new"] <= 16 * GB - 7.5 * GB - 1 * GB  # total - others - headroom
        await first(events, EventKind.UNLOADED)  # one idle model made room
        states = {pool.state("a"), pool.state("b")}
        assert states == {ModelState.READY, ModelState.UNLOADED}
        budget = pool.get_resource_status()["memory_info"]["cpu"]["budget"]
        assert budget == changed.detail["new"]

        events = pool.events()
        probe.set_used("cpu", 4 * GB)  # the neighbour left
        restored = await first(events, EventKind.BUDGET_CHANGED)
        assert restored.detail["new"] == 8 * GB


async def test_drift_between_ledger_and_probe_is_reported_once() -> None:
    probe = CountedProbe({"cpu": 64 * GB})
    pool = ModelPool(
        [spec("a")],
        budgets={"cpu": 8 * GB},
        backends={"fake": FakeBackend()},
        probe=probe,
        reap_interval=0.01,
        drift_threshold="1GB",
    )
    async with pool:
        await pool.load("a")
        events = pool.events()
        probe.set_used("cpu", 4 * GB + 3 * GB)  # 3 GB nobody booked
        drift = await first(events, EventKind.MEMORY_DRIFT)
        assert (drift.detail["drift"], drift.detail["ledger"]) == (3 * GB, 4 * GB)
        probe.set_used("cpu", 4 * GB + 3 * GB + 1)
        await pool.load("a")
        await probe.read_more(5)  # five more ticks: none may report the same drift again
    kinds = [e.kind for e in pool.recent_events()]
    assert kinds.count(EventKind.MEMORY_DRIFT) == 1


async def test_a_gpu_unload_completes_when_the_probe_shows_the_memory_back() -> None:
    probe = CountedProbe({"cuda:0": 16 * GB})
    pool = gpu_pool(probe, release_timeout=30)
    async with pool:
        await pool.load("a")
        probe.set_used("cuda:0", 4 * GB)
        events = pool.events()
        unload = asyncio.create_task(pool.unload("a"))
        await first(events, EventKind.UNLOAD_STARTED)
        for _ in range(3):  # the backend returned at once; the probe has not seen it yet
            await probe.read_more(1)
            assert pool.state("a") is ModelState.UNLOADING
        probe.set_used("cuda:0", 0)
        await unload
        assert pool.state("a") is ModelState.UNLOADED


async def test_an_unconfirmed_gpu_unload_gives_up_after_the_timeout_and_says_so() -> None:
    probe = StaticProbe({"cuda:0": 16 * GB})
    pool = gpu_pool(probe, release_timeout=0.1)
    async with pool:
        await pool.load("a")
        probe.set_used("cuda:0", 4 * GB)  # and it never comes back
        await pool.unload("a")
        assert pool.state("a") is ModelState.UNLOADED
        drift = [e for e in pool.recent_events() if e.kind is EventKind.MEMORY_DRIFT]
        assert "not seen coming back" in drift[0].detail["reason"]
