"""Many concurrent clients, cancellations, timeouts and failing loads through the real
async shell: every request is answered, nothing leaks, and stop leaves nothing behind."""

from __future__ import annotations

import asyncio
import random

import pytest

from modelpool import FakeBackend, ModelPool, ModelPoolError, ModelSpec

GB = 10**9
MODELS = [
    ModelSpec(id="a", backend="fake", memory=3 * GB, device="cpu", load_seconds=0.002),
    ModelSpec(id="b", backend="fake", memory=4 * GB, device="cpu", load_seconds=0.001),
    ModelSpec(id="c", backend="fake", memory=5 * GB, device="cpu", group="heavy"),
    ModelSpec(id="d", backend="fake", memory=5 * GB, device="cpu", group="heavy"),
    ModelSpec(id="e", backend="fake", memory=2 * GB, device="cpu", fail_loads=3),
    ModelSpec(id="p", backend="fake", memory=1 * GB, device="cpu", pinned=True),
]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_concurrent_clients_are_all_answered_and_nothing_leaks(seed: int) -> None:
    rng = random.Random(seed)
    backend = FakeBackend()
    pool = ModelPool(
        MODELS,
        budgets={"cpu": 10 * GB},
        strategy="hybrid",
        backends={"fake": backend},
        starvation_limit=0.05,
        max_queue=150,
    )
    outcomes: dict[str, int] = {"served": 0, "error": 0, "cancelled": 0}

    async def client(model: str, hold: int, timeout: float) -> None:
        try:
            async with pool.use(model, timeout=timeout):
                for _ in range(hold):
                    await asyncio.sleep(0)  # hold the lease across a few loop turns
            outcomes["served"] += 1
        except ModelPoolError:
            outcomes["error"] += 1

    async with pool:
        tasks = [
            asyncio.create_task(
                client(rng.choice("abcdep"), rng.randint(0, 5), rng.choice([0.01, 1.0, 5.0]))
            )
            for _ in range(300)
        ]
        for task in rng.sample(tasks, 30):  # callers that leave while they wait or hold
            for _ in range(rng.randint(1, 4)):
                await asyncio.sleep(0)
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        outcomes["cancelled"] = sum(isinstance(r, asyncio.CancelledError) for r in results)
        assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)
        assert sum(outcomes.values()) == 300
        assert outcomes["served"] > 100
        status = pool.get_resource_status()
        assert status["queue"]["waiting"] == 0
        assert status["active_allocations"] == {}
        assert all(m["leases"] == 0 for m in status["model_resources"].values())
        assert "p" in status["loaded_models"]
        memory = status["memory_info"]["cpu"]
        assert memory["committed"] + memory["reserved"] <= memory["budget"]
    assert backend.resident == set()
    assert pool.get_resource_status()["memory_info"]["cpu"]["committed"] == 0
