"""A replica's report to the router, from a real pool's status (no Ray): the adapter
``cluster/reports.py`` and the router's own memory of where it sent models
(``cluster/hints.py``)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from modelpool.cluster.hints import RouteHints
from modelpool.cluster.reports import (
    ASKS_KEY,
    RELOAD_SECONDS_UNKNOWN,
    STATS_KEY,
    model_asks,
    reload_seconds,
    replica_stats,
    routing_report,
    saturated,
)
from modelpool.cluster.routing import (
    DeviceRoom,
    Evictable,
    MemoryAwareRouter,
    ModelAsk,
    Rank,
    ReplicaStats,
    assess,
)
from modelpool.config import Config, ModelSpec
from modelpool.core.events import EventKind
from modelpool.core.pool import ModelPool
from modelpool.core.ports import Clock
from modelpool.core.testing import ManualClock
from modelpool.errors import ConfigError

GB = 10**9


def fake(model_id: str, memory: str, **options: object) -> ModelSpec:
    return ModelSpec.model_validate(
        {"id": model_id, "backend": "fake", "memory": memory, "device": "cpu", **options}
    )


def pool_of(*specs: ModelSpec, budget: str = "10GB", clock: Clock = time.monotonic) -> ModelPool:
    return ModelPool(list(specs), budgets={"cpu": budget}, strategy="lru", clock=clock)


async def test_an_idle_pool_reports_free_memory_and_nothing_held() -> None:
    async with pool_of(fake("a", "4GB")) as pool:
        stats = replica_stats("r1", pool.get_resource_status())
    assert stats == ReplicaStats("r1", devices=(DeviceRoom(10 * GB),))


async def test_a_ready_model_is_reported_ready_and_evictable_with_its_load_time() -> None:
    async with pool_of(fake("a", "4GB", load_seconds=0.05), fake("pinned", "1GB")) as pool:
        await pool.load("a")
        await pool.load("pinned")
        pool.pin("pinned")
        stats = replica_stats("r1", pool.get_resource_status())
    assert stats.ready == {"a", "pinned"}
    assert stats.loading == frozenset()
    (device,) = stats.devices
    assert device.free == 5 * GB
    (victim,) = device.evictable  # a pinned model is never evictable
    assert (victim.model_id, victim.bytes) == ("a", 4 * GB)
    assert victim.reload_seconds >= 0.05
    assert 0.0 <= victim.idle_seconds < 1.0  # its load counts as a use: just now


async def test_an_evictable_model_carries_how_long_it_has_been_idle() -> None:
    clock = ManualClock(100.0)
    async with pool_of(fake("a", "4GB"), clock=clock) as pool:
        async with pool.use("a"):
            pass
        clock.advance(90.0)
        stats = replica_stats("r1", pool.get_resource_status())
    ((victim,),) = [d.evictable for d in stats.devices]
    assert victim.idle_seconds == pytest.approx(90.0)


async def test_a_model_with_requests_out_is_busy_and_counted_in_flight() -> None:
    async with pool_of(fake("a", "4GB")) as pool:
        lease = await pool.acquire("a")
        stats = replica_stats("r1", pool.get_resource_status())
        pool.release(lease)
    assert stats.busy == {"a"}
    assert stats.in_flight == 1
    # Busy models are not evicted: no room can be made for a model needing a's bytes.
    assert assess(stats, ModelAsk("b", 8 * GB)).rank is Rank.NO_ROOM


async def test_a_model_on_its_way_in_is_reported_loading_with_its_waiters_queued() -> None:
    async with pool_of(fake("slow", "4GB", load_seconds=0.2)) as pool:
        events = pool.events()
        waiter = asyncio.create_task(pool.acquire("slow"))
        async with asyncio.timeout(5):
            async for event in events:
                if event.kind is EventKind.LOAD_STARTED:
                    break
        stats = replica_stats("r1", pool.get_resource_status())
        pool.release(await waiter)
    assert stats.loading == {"slow"}
    assert stats.ready == frozenset()
    assert stats.queued == 1
    assert assess(stats, ModelAsk("slow", 4 * GB)).rank is Rank.LOADING


async def test_replicas_of_a_model_count_as_that_model() -> None:
    spec = fake("chat", "2GB", replicas={"min": 2, "max": 2})
    async with pool_of(spec) as pool:
        await pool.load("chat")
        stats = replica_stats("r1", pool.get_resource_status())
    assert stats.ready == {"chat"}
    assert {v.model_id for v in stats.devices[0].evictable} == {"chat"}


async def test_a_model_at_its_max_concurrent_is_saturated() -> None:
    specs = [fake("one", "1GB", max_concurrent=1), fake("batch", "1GB")]
    async with pool_of(*specs) as pool:
        one, batch = await pool.acquire("one"), await pool.acquire("batch")
        status = pool.get_resource_status()
        full = replica_stats("r1", status, pool.specs)
        unknown = replica_stats("r1", status)  # no specs: no max_concurrent known
        pool.release(one)
        pool.release(batch)
        idle = replica_stats("r1", pool.get_resource_status(), pool.specs)
    assert full.saturated == {"one"}  # a batching server is never saturated by itself
    assert unknown.saturated == frozenset()
    assert idle.saturated == frozenset()
    assert routing_report("r1", status, pool.specs)[STATS_KEY].saturated == {"one"}


def test_a_ready_model_with_requests_waiting_for_a_slot_is_saturated_specs_or_not() -> None:
    assert saturated({"status": "ready", "waiting": 1, "leases": 1}, None)
    assert not saturated({"status": "ready", "waiting": 0, "leases": 9}, None)


def test_a_model_on_its_way_in_saturates_with_max_concurrent_waiting() -> None:
    assert saturated({"status": "loading", "waiting": 2}, 2)
    assert not saturated({"status": "loading", "waiting": 1}, 2)
    assert not saturated({"status": "loading", "waiting": 9}, None)
    copies = [{"status": "ready"}, {"status": "ready"}, {"status": "loading"}]
    assert not saturated({"status": "ready", "leases": 3, "replicas": copies}, 2)
    assert saturated({"status": "ready", "leases": 4, "replicas": copies}, 2)


async def test_asks_carry_each_models_size_and_devices() -> None:
    specs = [fake("a", "4GB"), fake("b", "1GB")]
    async with pool_of(*specs) as pool:
        status = pool.get_resource_status()
        asks = model_asks(status, pool.specs)
        report = routing_report("r1", status, pool.specs)
    assert asks == {"a": ModelAsk("a", 4 * GB, 1), "b": ModelAsk("b", GB, 1)}
    assert report[ASKS_KEY] == asks
    assert report[STATS_KEY].replica_id == "r1"


def test_reload_seconds_prefers_the_last_load_then_the_mean_then_a_floor() -> None:
    assert reload_seconds({"last_load_seconds": 3.0, "load_count": 2}) == 3.0
    assert reload_seconds({"load_count": 2, "load_seconds_total": 5.0}) == 2.5
    assert reload_seconds({}) == RELOAD_SECONDS_UNKNOWN


def test_the_config_cluster_section_gives_ray_actor_options() -> None:
    config = Config.from_mapping(
        {"cluster": {"replicas": 3, "num_gpus": 2, "resources": {"node_a": 1}}}
    )
    assert config.cluster.replicas == 3
    assert config.cluster.actor_options() == {
        "num_cpus": 1.0,
        "num_gpus": 2.0,
        "resources": {"node_a": 1.0},
    }


def test_a_bad_cluster_section_says_where() -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_mapping({"cluster": {"replicas": 0, "num_gpus": -1}})
    where = {issue.path for issue in caught.value.issues}
    assert {"cluster.replicas", "cluster.num_gpus"} <= where


# --- hints: what the router sent where, until the reports catch up ------------------


def test_a_routed_model_counts_as_loading_there_until_reported() -> None:
    hints = RouteHints(ttl=10)
    hints.routed("r1", "m", now=0.0)
    stale = ReplicaStats("r1", devices=(DeviceRoom(GB),))
    assert hints.applied(stale, now=1.0).loading == {"m"}
    # The rest of the burst joins that load instead of starting one on r2.
    other = ReplicaStats("r2", devices=(DeviceRoom(GB),))
    ranking = MemoryAwareRouter().rank(
        ModelAsk("m", GB // 2),
        [hints.applied(stale, 1.0), hints.applied(other, 1.0)],
        random.Random(0),
    )
    assert ranking[0] == "r1"
    # Once the report shows it, the hint goes; a later eviction is then believed.
    hints.applied(ReplicaStats("r1", ready=frozenset({"m"})), now=2.0)
    assert hints.pending("r1") == frozenset()
    assert hints.applied(stale, now=3.0).loading == frozenset()


def test_a_hint_the_reports_never_confirm_expires() -> None:
    hints = RouteHints(ttl=5)
    hints.routed("r1", "m", now=0.0)
    stats = ReplicaStats("r1")
    assert hints.applied(stats, now=5.0).loading == {"m"}
    assert hints.applied(stats, now=5.1).loading == frozenset()


def test_a_hint_withdrawn_goes_unless_renewed_since() -> None:
    hints = RouteHints(ttl=5)
    hints.routed("r1", "m", now=1.0)
    hints.withdraw("r1", "m", at=1.0)  # that request went to another replica
    assert hints.pending("r1") == frozenset()
    hints.routed("r1", "m", now=2.0)
    hints.routed("r1", "m", now=3.0)  # a later request renewed it
    hints.withdraw("r1", "m", at=2.0)
    assert hints.pending("r1") == {"m"}


def test_a_dead_replicas_hints_are_forgotten() -> None:
    hints = RouteHints(ttl=5)
    hints.routed("r1", "m", now=0.0)
    hints.forget("r1")
    assert hints.pending("r1") == frozenset()
    with pytest.raises(ValueError, match="ttl must be positive"):
        RouteHints(ttl=0)


def test_evictable_entries_are_what_the_router_costs() -> None:
    room = DeviceRoom(0, (Evictable("a", GB, 2.0),))
    stats = ReplicaStats("r1", ready=frozenset({"a"}), devices=(room,))
    verdict = assess(stats, ModelAsk("b", GB))
    assert (verdict.rank, verdict.cost) == (Rank.EVICTS, 2.0)
