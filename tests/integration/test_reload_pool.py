"""``apply_diff`` on the real async pool with the shipped FakeBackend: leases out during
a reload, requests that arrive meanwhile, models nobody changed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelpool import (
    ConfigError,
    EventKind,
    FakeBackend,
    ModelPool,
    ModelState,
    PoolEvent,
    UnknownModel,
)
from modelpool.config import Config
from modelpool.config.diff import diff_configs
from modelpool.core.reload import apply_diff
from modelpool.http.reloader import Reloader

GB = 10**9


def fake(memory: str = "2GB", **fields: Any) -> dict[str, Any]:
    return {"backend": "fake", "memory": memory, "device": "cpu", **fields}


def config(**models: dict[str, Any]) -> Config:
    return Config.from_mapping(
        {"pool": {"strategy": "lru", "budgets": {"cpu": "8GB"}}, "models": models}
    )


RUNNING = config(steady=fake(), changing=fake(), leaving=fake(aliases=["bye"]))


def make_pool() -> tuple[ModelPool, FakeBackend]:
    backend = FakeBackend()
    pool = ModelPool.from_config(
        RUNNING, backends={"fake": backend}, probe=None, estimates=None, state_dir=None
    )
    return pool, backend


def loads_of(pool: ModelPool, model_id: str) -> int:
    return sum(
        1 for e in pool.recent_events() if e.kind is EventKind.LOADED and e.model_id == model_id
    )


async def test_a_removed_model_serves_its_lease_to_the_end_then_is_forgotten() -> None:
    pool, _ = make_pool()
    async with pool:
        lease = await pool.acquire("leaving")
        diff = diff_configs(RUNNING, config(steady=fake(), changing=fake()))
        applying = asyncio.create_task(apply_diff(pool, diff))
        await asyncio.sleep(0)  # the reload's first step: everything that applies at once
        with pytest.raises(UnknownModel):
            await pool.acquire("leaving")
        with pytest.raises(UnknownModel):
            await pool.acquire("bye")
        assert pool.state("leaving") is ModelState.READY  # its lease is still served
        assert not applying.done()
        pool.release(lease)
        assert await asyncio.wait_for(applying, 10) == []
        assert "leaving" not in pool.specs


async def test_a_changed_model_drains_and_serves_what_waited_with_its_new_settings() -> None:
    pool, _ = make_pool()
    async with pool:
        steady = await pool.acquire("steady")  # held through the whole reload
        await pool.load("changing")
        held = await pool.acquire("changing")
        diff = diff_configs(
            RUNNING,
            config(
                steady=fake(), changing=fake("3GB", footprint=3 * GB), leaving=fake(aliases=["bye"])
            ),
        )
        applying = asyncio.create_task(apply_diff(pool, diff))
        await asyncio.sleep(0)
        waiting = asyncio.create_task(pool.acquire("changing"))  # arrives during the drain
        await asyncio.sleep(0)
        assert not waiting.done()
        assert pool.spec("changing").memory == 2 * GB  # in force once it has unloaded
        pool.release(held)
        assert await asyncio.wait_for(applying, 10) == []
        lease = await asyncio.wait_for(waiting, 10)
        assert pool.spec("changing").memory == 3 * GB
        assert lease.handle.footprint == 3 * GB
        assert loads_of(pool, "changing") == 2
        pool.release(lease)
        assert not steady.released
        assert pool.state("steady") is ModelState.READY
        assert loads_of(pool, "steady") == 1
        pool.release(steady)


async def test_metadata_changes_never_unload() -> None:
    pool, _ = make_pool()
    async with pool:
        lease = await pool.acquire("steady")
        new = config(
            steady=fake(tags=["chat"], aliases=["bye"], priority=1, ttl=30),
            changing=fake(),
        )
        diff = diff_configs(RUNNING, new)
        applying = asyncio.create_task(apply_diff(pool, diff))
        await asyncio.sleep(0)
        assert pool.resolve("bye") == "steady"  # the alias moved from the removed model
        assert await asyncio.wait_for(applying, 10) == []
        unloads = [e for e in pool.recent_events() if e.kind is EventKind.UNLOAD_STARTED]
        assert unloads == []
        assert pool.spec("steady").tags == ("chat",)
        assert not lease.released
        pool.release(lease)


async def test_an_alias_naming_a_model_on_its_way_out_is_refused_before_anything_changes() -> None:
    pool, _ = make_pool()
    async with pool:
        new = config(steady=fake(aliases=["leaving"]), changing=fake(tags=["t"]))
        with pytest.raises(ConfigError, match=r"models\.steady\.aliases"):
            await apply_diff(pool, diff_configs(RUNNING, new))
        assert "leaving" in pool.specs
        assert pool.spec("changing").tags == ()


async def test_a_caller_that_goes_away_does_not_cut_a_reload_short(tmp_path: Path) -> None:
    path = tmp_path / "modelpool.yaml"
    data = {
        "pool": {"strategy": "lru", "budgets": {"cpu": "8GB"}, "state_dir": str(tmp_path)},
        "models": {"steady": fake(), "leaving": fake()},
    }
    path.write_text(yaml.safe_dump(data))
    running = Config.load(path)
    pool = ModelPool.from_config(running, backends={"fake": FakeBackend()}, probe=None)
    async with pool:
        reloader = Reloader(pool, running)
        lease = await pool.acquire("leaving")
        data["models"] = {"steady": fake(), "newcomer": fake()}
        path.write_text(yaml.safe_dump(data))
        caller = asyncio.create_task(reloader.reload())
        for _ in range(500):  # the file is read on a thread, then applied on the loop
            if "newcomer" in pool.specs:
                break
            await asyncio.sleep(0.01)
        assert "newcomer" in pool.specs
        caller.cancel()  # e.g. a client's timeout, while the reload waits for the lease
        with pytest.raises(asyncio.CancelledError):
            await caller
        pool.release(lease)
        for _ in range(1000):
            if any(e.kind is EventKind.CONFIG_RELOADED for e in pool.recent_events()):
                break
            await asyncio.sleep(0.01)
        assert "leaving" not in pool.specs
        assert sorted(reloader.config.models) == ["newcomer", "steady"]
        again = await reloader.reload()
        assert again.diff is not None
        assert again.diff.empty
        await reloader.stop()


async def next_loaded(events: AsyncIterator[PoolEvent], model_id: str) -> None:
    async for event in events:
        if event.kind is EventKind.LOADED and event.model_id == model_id:
            return


async def test_a_model_added_with_preload_is_preloaded_as_at_start() -> None:
    pool, _ = make_pool()
    async with pool:
        events = pool.events()
        added = config(
            steady=fake(), changing=fake(), leaving=fake(aliases=["bye"]), warmed=fake(preload=True)
        )
        assert await asyncio.wait_for(apply_diff(pool, diff_configs(RUNNING, added)), 10) == []
        await asyncio.wait_for(next_loaded(events, "warmed"), 10)  # nobody asked for it
        assert pool.state("warmed") is ModelState.READY


async def test_turning_preload_on_preloads_a_model_that_is_not_loaded() -> None:
    pool, _ = make_pool()
    async with pool:
        events = pool.events()
        turned_on = config(steady=fake(preload=3), changing=fake(), leaving=fake(aliases=["bye"]))
        diff = diff_configs(RUNNING, turned_on)
        assert await asyncio.wait_for(apply_diff(pool, diff), 10) == []
        await asyncio.wait_for(next_loaded(events, "steady"), 10)
        assert pool.state("steady") is ModelState.READY
        assert pool.state("changing") is not ModelState.READY  # its preload stayed off


async def test_a_model_with_replicas_takes_new_aliases_in_place_and_keeps_serving() -> None:
    two = {"replicas": {"min": 2, "max": 2}}
    running = config(chat=fake("1GB", **two))
    pool = ModelPool.from_config(
        running, backends={"fake": FakeBackend()}, probe=None, estimates=None, state_dir=None
    )
    async with pool:
        held = await pool.acquire("chat")
        new = config(chat=fake("1GB", **two, aliases=["talk"], ttl=60))
        assert await asyncio.wait_for(apply_diff(pool, diff_configs(running, new)), 10) == []
        lease = await asyncio.wait_for(pool.acquire("talk"), 10)  # the new alias, a copy
        assert lease.model_id in ("chat#1", "chat#2")
        assert loads_of(pool, "chat#1") == loads_of(pool, "chat#2") == 1  # none unloaded
        pool.release(lease)
        pool.release(held)
