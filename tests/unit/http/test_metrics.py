"""ServerMetrics against a real pool: events counted, gauges equal to the status numbers.

Each test drives a ``ModelPool`` with fake models, feeds the events it published to
``ServerMetrics`` (as the app does from ``pool.events()``), renders, and reads the
text back with Prometheus' own parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelpool import EventKind, FakeBackend, LoadFailed, ModelPool, ModelSpec, StaticProbe
from modelpool.core.events import UNLOAD_CAUSES, PoolEvent, unload_cause
from modelpool.core.ports import Handle
from modelpool.core.states import ModelState
from modelpool.core.testing import ManualClock
from modelpool.http.metrics import CONTENT_TYPE, ServerMetrics
from modelpool.types import DeviceId

GB = 10**9

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class TimedBackend(FakeBackend):
    """A FakeBackend whose loads and restores take set seconds on the pool's manual clock."""

    def __init__(
        self, clock: ManualClock, load_seconds: Mapping[str, float], restore_seconds: float
    ) -> None:
        super().__init__()
        self._clock = clock
        self._load_seconds = load_seconds
        self._restore_seconds = restore_seconds

    async def load(self, spec: ModelSpec, device: DeviceId) -> Handle:
        self._clock.advance(self._load_seconds[spec.id])
        return await super().load(spec, device)

    async def restore(self, warm: Handle, device: DeviceId) -> Handle:
        self._clock.advance(self._restore_seconds)
        return await super().restore(warm, device)


def spec(model_id: str, memory: int = 4 * GB, **fields: object) -> ModelSpec:
    return ModelSpec(id=model_id, backend="fake", memory=memory, device="cpu", **fields)


def make_pool(
    *specs: ModelSpec, budget: int = 8 * GB, backend: FakeBackend | None = None, **kw: Any
) -> tuple[ModelPool, FakeBackend]:
    backend = backend or FakeBackend()
    pool = ModelPool(
        specs, budgets={"cpu": budget}, strategy="lru", backends={"fake": backend}, **kw
    )
    return pool, backend


async def next_event(events: AsyncIterator[PoolEvent], kind: EventKind, model: str) -> None:
    async for event in events:
        if event.kind is kind and event.model_id == model:
            return


def feed(metrics: ServerMetrics, pool: ModelPool) -> ServerMetrics:
    """Every event the pool published so far, as the app feeds them from ``events()``."""
    for event in pool.recent_events():
        metrics.observe_event(event)
    return metrics


def scrape(metrics: ServerMetrics, status: Mapping[str, Any]) -> Samples:
    """Render and parse the text back with Prometheus' own parser."""
    text = metrics.render(status).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def label_sets(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for sample_name, labels in samples if sample_name == name]


async def test_loads_and_restores_are_counted_with_their_durations() -> None:
    clock = ManualClock()
    backend = TimedBackend(clock, {"a": 3.0, "b": 30.0}, restore_seconds=0.2)
    pool, _ = make_pool(
        spec("a"), spec("b"), budget=4 * GB, warm_budget=8 * GB, clock=clock, backend=backend
    )
    async with pool:
        await pool.load("a")  # 3 s
        await pool.load("b")  # 30 s; a goes to the warm tier
        await pool.load("a")  # restored in 0.2 s; b goes warm
        samples = scrape(feed(ServerMetrics(), pool), pool.get_resource_status())

    assert value(samples, "modelpool_model_loads_total", model="a", restored="false") == 1
    assert value(samples, "modelpool_model_loads_total", model="a", restored="true") == 1
    assert value(samples, "modelpool_model_loads_total", model="b", restored="false") == 1
    hist = "modelpool_model_load_seconds"
    assert value(samples, f"{hist}_count", model="a", restored="false") == 1
    assert value(samples, f"{hist}_sum", model="a", restored="false") == pytest.approx(3.0)
    assert value(samples, f"{hist}_bucket", model="a", restored="false", le="2.5") == 0
    assert value(samples, f"{hist}_bucket", model="a", restored="false", le="5.0") == 1
    assert value(samples, f"{hist}_sum", model="b", restored="false") == pytest.approx(30.0)
    assert value(samples, f"{hist}_sum", model="a", restored="true") == pytest.approx(0.2)
    # The offload to the warm tier counts as the model leaving its device.
    assert value(samples, "modelpool_model_unloads_total", model="a", reason="evicted") == 1


async def test_a_failed_load_counts_as_a_failure_not_a_load() -> None:
    pool, _ = make_pool(spec("bad", fail_loads=1), spec("idle"))
    async with pool:
        with pytest.raises(LoadFailed):
            await pool.load("bad")
        samples = scrape(feed(ServerMetrics(), pool), pool.get_resource_status())

    assert value(samples, "modelpool_model_load_failures_total", model="bad") == 1
    # Both counters exist at 0 before their first event, for every configured model.
    assert value(samples, "modelpool_model_loads_total", model="bad", restored="false") == 0
    assert value(samples, "modelpool_model_load_failures_total", model="idle") == 0


async def test_unloads_are_counted_by_the_category_of_the_schedulers_reason() -> None:
    clock = ManualClock()
    pool, _ = make_pool(spec("a", ttl=60), spec("b"), spec("c"), clock=clock, reap_interval=0.01)
    async with pool:
        events = pool.events()
        await pool.load("b")
        clock.advance(1)
        await pool.load("c")
        clock.advance(1)
        await pool.load("a")  # the budget holds two: b, least recently used, is evicted
        await pool.unload("c")  # requested
        clock.advance(61)
        await asyncio.wait_for(next_event(events, EventKind.UNLOADED, "a"), 5)  # ttl
        await pool.load("b")
    metrics = feed(ServerMetrics(), pool)  # b is unloaded by the stop
    samples = scrape(metrics, pool.get_resource_status())

    unloads = "modelpool_model_unloads_total"
    assert value(samples, unloads, model="a", reason="ttl") == 1
    assert value(samples, unloads, model="b", reason="evicted") == 1
    assert value(samples, unloads, model="b", reason="stopping") == 1
    assert value(samples, unloads, model="c", reason="requested") == 1
    assert len(label_sets(samples, unloads)) == 4  # nothing fell through to "other"


async def test_over_budget_evictions_and_lost_models_have_their_own_reasons() -> None:
    pool, backend = make_pool(spec("a"), spec("b", footprint=6 * GB))
    async with pool:
        events = pool.events()
        await pool.load("a")
        await pool.load("b")  # measured 6 GB of the 4 reserved: idle a is evicted
        backend.crash("b")
        await asyncio.wait_for(next_event(events, EventKind.LOST, "b"), 5)
        samples = scrape(feed(ServerMetrics(), pool), pool.get_resource_status())

    unloads = "modelpool_model_unloads_total"
    assert value(samples, unloads, model="a", reason="over_budget") == 1
    assert value(samples, unloads, model="b", reason="lost") == 1
    assert {s["reason"] for s in label_sets(samples, unloads)} <= set(UNLOAD_CAUSES)
    assert unload_cause("a reason the scheduler did not have yet") == "other"


def test_requests_are_counted_by_status_errors_and_latency_by_endpoint() -> None:
    pool, _ = make_pool(spec("a"))
    metrics = ServerMetrics()
    metrics.observe_request("a", "chat/completions", 200, 0.004)
    metrics.observe_request("a", "chat/completions", 200, 1.5)
    metrics.observe_request("a", "chat/completions", 503, 30.0)
    metrics.observe_request("a", "chat/completions", 200, 150.0)  # past the last bucket
    metrics.observe_request("unknown", "embeddings", 404, 0.001)
    samples = scrape(metrics, pool.get_resource_status())

    chat = {"model": "a", "endpoint": "chat/completions"}
    assert value(samples, "modelpool_requests_total", **chat, status="200") == 3
    assert value(samples, "modelpool_requests_total", **chat, status="503") == 1
    assert value(samples, "modelpool_request_errors_total", **chat) == 1
    errors = label_sets(samples, "modelpool_request_errors_total")
    assert sorted(e["model"] for e in errors) == ["a", "unknown"]
    hist = "modelpool_request_seconds"
    assert value(samples, f"{hist}_count", **chat) == 4
    assert value(samples, f"{hist}_sum", **chat) == pytest.approx(181.504)
    assert value(samples, f"{hist}_bucket", **chat, le="0.005") == 1
    assert value(samples, f"{hist}_bucket", **chat, le="120.0") == 3
    assert value(samples, f"{hist}_bucket", **chat, le="+Inf") == 4


async def test_memory_gauges_equal_the_status_numbers() -> None:
    probe = StaticProbe({"cpu": 16 * GB}, used={"cpu": 5 * GB})
    pool, backend = make_pool(spec("a"), spec("b"), warm_budget=2 * GB, probe=probe)
    gate = backend.gate("a")
    async with pool:
        await pool.load("b")
        loading = asyncio.create_task(pool.load("a"))
        events = pool.events()
        await asyncio.wait_for(next_event(events, EventKind.LOAD_STARTED, "a"), 5)
        status = pool.get_resource_status()
        samples = scrape(feed(ServerMetrics(), pool), status)
        gate.set()
        await loading

    books = status["memory_info"]["cpu"]
    assert (books["committed"], books["reserved"]) == (4 * GB, 4 * GB)  # b in, a loading
    assert value(samples, "modelpool_memory_budget_bytes", device="cpu") == books["budget"]
    assert value(samples, "modelpool_memory_used_bytes", device="cpu") == books["committed"]
    assert value(samples, "modelpool_memory_reserved_bytes", device="cpu") == books["reserved"]
    observed_used = value(samples, "modelpool_memory_observed_used_bytes", device="cpu")
    observed_total = value(samples, "modelpool_memory_observed_total_bytes", device="cpu")
    assert (observed_used, observed_total) == (5 * GB, 16 * GB)
    warm = status["warm_memory"]
    assert value(samples, "modelpool_memory_budget_bytes", device="host") == warm["budget"] > 0
    assert value(samples, "modelpool_memory_used_bytes", device="host") == warm["committed"]


def test_a_missing_probe_reading_drops_its_series_instead_of_repeating_it() -> None:
    probe = StaticProbe({"cpu": 16 * GB})
    pool, _ = make_pool(spec("a"), probe=probe)
    metrics = ServerMetrics()
    status = pool.get_resource_status()
    assert "observed_used" in status["memory_info"]["cpu"]
    before = scrape(metrics, status)
    for key in ("observed_used", "observed_total"):
        del status["memory_info"]["cpu"][key]
    after = scrape(metrics, status)

    assert label_sets(before, "modelpool_memory_observed_used_bytes") == [{"device": "cpu"}]
    assert label_sets(after, "modelpool_memory_observed_used_bytes") == []
    assert label_sets(after, "modelpool_memory_observed_total_bytes") == []


async def test_model_gauges_show_one_state_held_bytes_leases_and_the_queue() -> None:
    pool, backend = make_pool(spec("a"), spec("b"), spec("c", memory=GB), max_queue=7)
    gate = backend.gate("a")
    async with pool:
        waiting = [asyncio.create_task(pool.acquire("a")) for _ in range(2)]
        async with pool.use("b"):
            status = pool.get_resource_status()
            samples = scrape(feed(ServerMetrics(), pool), status)
        gate.set()
        for lease in await asyncio.gather(*waiting):
            pool.release(lease)

    expected = {"a": ModelState.LOADING, "b": ModelState.READY, "c": ModelState.UNLOADED}
    for model, state in expected.items():
        assert status["model_resources"][model]["status"] == state
        for each in ModelState:
            one_hot = value(samples, "modelpool_model_state", model=model, state=each)
            assert one_hot == (1 if each is state else 0), (model, each)
    memory = "modelpool_model_memory_bytes"
    assert value(samples, memory, model="b") == status["model_resources"]["b"]["memory_bytes"]
    assert value(samples, memory, model="a") == 4 * GB  # reserved while loading
    # The status reports an unloaded model's estimate; it holds nothing, so 0 here.
    assert status["model_resources"]["c"]["memory_bytes"] == GB
    assert value(samples, memory, model="c") == 0
    assert value(samples, "modelpool_model_leases", model="b") == 1
    assert value(samples, "modelpool_model_leases", model="a") == 0
    assert value(samples, "modelpool_queue_waiting") == status["queue"]["waiting"] == 2
    assert value(samples, "modelpool_queue_max") == 7
    # Each device's memory by model: b committed, a reserved, c nowhere.
    by_device = "modelpool_device_model_memory_bytes"
    assert value(samples, by_device, device="cpu", model="b") == GB * 4
    assert value(samples, by_device, device="cpu", model="a") == 4 * GB
    assert {"device": "cpu", "model": "c"} not in label_sets(samples, by_device)


def test_each_server_has_its_own_registry_in_the_classic_text_format() -> None:
    pool, _ = make_pool(spec("a"))
    first, second = ServerMetrics(), ServerMetrics()  # the global registry would refuse this
    first.observe_request("a", "completions", 200, 0.1)

    status = pool.get_resource_status()
    assert label_sets(scrape(first, status), "modelpool_requests_total") != []
    assert label_sets(scrape(second, status), "modelpool_requests_total") == []
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_the_strategy_in_force_and_auto_evaluations_by_outcome() -> None:
    pool, _ = make_pool(spec("a"), spec("b"))
    metrics = ServerMetrics()
    samples = scrape(metrics, pool.get_resource_status())
    assert label_sets(samples, "modelpool_strategy") == [{"strategy": "lru"}]
    for outcome in ("kept", "switched", "skipped"):  # at 0 before the first evaluation
        assert value(samples, "modelpool_strategy_evaluations_total", outcome=outcome) == 0
    pool.publish(EventKind.STRATEGY_EVALUATED, None, switched=False, error=None)
    pool.publish(EventKind.STRATEGY_EVALUATED, None, switched=True, error=None)
    pool.publish(EventKind.STRATEGY_EVALUATED, None, switched=False, error="ran past 60 s")
    pool.set_switching_strategy("cost_aware")
    samples = scrape(feed(metrics, pool), pool.get_resource_status())
    assert label_sets(samples, "modelpool_strategy") == [{"strategy": "cost_aware"}]
    assert value(samples, "modelpool_strategy", strategy="cost_aware") == 1
    for outcome in ("kept", "switched", "skipped"):
        assert value(samples, "modelpool_strategy_evaluations_total", outcome=outcome) == 1


async def test_a_model_with_replicas_has_gauges_per_copy() -> None:
    pool, _ = make_pool(spec("m", memory=GB, replicas={"min": 1, "max": 2, "target_inflight": 1}))
    async with pool:
        await pool.load("m")
        events = pool.events()
        leases = [await pool.acquire("m"), await pool.acquire("m")]  # busy: a second copy
        await asyncio.wait_for(next_event(events, EventKind.LOADED, "m#2"), 10)
        leases.append(await pool.acquire("m"))
        samples = scrape(feed(ServerMetrics(), pool), pool.get_resource_status())
        for lease in leases:
            pool.release(lease)

    assert value(samples, "modelpool_model_leases", model="m") == 3
    assert value(samples, "modelpool_replica_leases", model="m", replica="1") == 2
    assert value(samples, "modelpool_replica_leases", model="m", replica="2") == 1
    assert value(samples, "modelpool_replica_state", model="m", replica="2", state="ready") == 1
    assert value(samples, "modelpool_replica_memory_bytes", model="m", replica="1") == GB
    assert value(samples, "modelpool_model_memory_bytes", model="m") == 2 * GB
