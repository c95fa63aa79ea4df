"""Preloads on the real pool: started at start in priority order, serving never blocked."""

from __future__ import annotations

import asyncio

from modelpool import Config, EventKind, FakeBackend, ModelPool, ModelState

GB = 10**9


def config(**preloads: object) -> Config:
    models = {
        name: {"backend": "fake", "memory": "4GB", "device": "cpu", "preload": preload}
        for name, preload in preloads.items()
    }
    return Config.from_mapping({"pool": {"budgets": {"cpu": "8GB"}}, "models": models})


async def test_preloads_start_in_priority_order_as_far_as_the_budget_allows() -> None:
    pool = ModelPool.from_config(
        config(third=3, first=1, second=2, never=False), state_dir=None, estimates=None
    )
    events = pool.events()
    async with pool:
        skipped = None
        async with asyncio.timeout(10):
            async for event in events:
                if event.kind == EventKind.PRELOAD_SKIPPED:
                    skipped = event
                    break
        assert skipped is not None
        assert skipped.model_id == "third"
        assert "a preload of priority" in skipped.detail["reason"]
        states = {m: pool.get_resource_status()["model_resources"][m]["status"] for m in
                  ("first", "second", "third", "never")}  # fmt: skip
        assert states == {"first": "ready", "second": "ready", "third": "unloaded",
                          "never": "unloaded"}  # fmt: skip


async def test_a_request_during_start_preloads_takes_the_room_before_later_preloads() -> None:
    backend = FakeBackend()
    slow = {"backend": "fake", "memory": "4GB", "device": "cpu", "load_seconds": 0.2}
    data = {
        "pool": {"budgets": {"cpu": "8GB"}},
        "models": {
            "pre1": {**slow, "preload": 1},
            "pre2": {**slow, "preload": 2},
            "asked": slow,
        },
    }
    pool = ModelPool.from_config(
        Config.from_mapping(data), backends={"fake": backend}, state_dir=None, estimates=None
    )
    async with pool:
        # The request comes before pre2's turn and takes the other half of the room.
        async with pool.use("asked") as lease:
            assert lease.model_id == "asked"
        assert await pool.preload("pre1") is True
        assert await pool.preload("pre2") is False  # it would evict what was asked for
        assert sorted(backend.loads) == ["asked", "pre1"]


async def test_pool_preload_says_whether_it_loaded() -> None:
    pool = ModelPool.from_config(config(a=False, b=False, c=False), state_dir=None, estimates=None)
    async with pool:
        await pool.load("a")
        await pool.load("b")
        assert await pool.preload("c") is False  # room only by evicting what was asked for
        assert pool.get_resource_status()["model_resources"]["c"]["status"] == "unloaded"
        await pool.unload("b")
        assert await pool.preload("c", priority=0) is True
        assert pool.get_resource_status()["model_resources"]["c"]["status"] == ModelState.READY
