"""The real async pool with the shipped FakeBackend: tasks, futures, timers, events."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import psutil
import pytest

from modelpool import (
    CircuitOpen,
    Config,
    EventKind,
    FakeBackend,
    InsufficientMemory,
    LoadFailed,
    ModelPool,
    ModelSpec,
    ModelState,
    ModelSwitchingStrategy,
    PluginNotFound,
    PoolClosed,
    StaticProbe,
    WaitTimeout,
)
from modelpool.core.testing import ManualClock

GB = 10**9


def spec(model_id: str, memory: int = 4 * GB, **fields: object) -> ModelSpec:
    return ModelSpec(id=model_id, backend="fake", memory=memory, device="cpu", **fields)


def make_pool(
    *specs: ModelSpec, budget: int = 8 * GB, **kw: object
) -> tuple[ModelPool, FakeBackend]:
    backend = FakeBackend()
    pool = ModelPool(
        specs, budgets={"cpu": budget}, strategy="lru", backends={"fake": backend}, **kw
    )  # type: ignore[arg-type]
    return pool, backend


async def next_event(events: object, kind: EventKind, model: str) -> None:
    async for event in events:  # type: ignore[attr-defined]
        if event.kind is kind and event.model_id == model:
            return


async def test_fifty_concurrent_uses_of_a_cold_model_load_it_once() -> None:
    pool, backend = make_pool(spec("a"))
    gate = backend.gate("a")
    async with pool:
        entered = 0

        async def user() -> None:
            nonlocal entered
            async with pool.use("a") as lease:
                assert lease.obj("hi") == "[a@cpu] hi"
                entered += 1

        users = [asyncio.create_task(user()) for _ in range(50)]
        await asyncio.sleep(0)  # let every user queue behind the one load
        assert pool.get_resource_status()["queue"]["waiting"] == 50
        gate.set()
        await asyncio.gather(*users)
        assert backend.loads == ["a"]
        assert entered == 50
        stats = pool.get_resource_status()["model_resources"]["a"]
        assert stats["misses"] == 50
        assert stats["total_tasks_processed"] == 50


async def test_load_failure_is_clear_marks_failed_and_others_keep_serving() -> None:
    clock = ManualClock()
    pool, backend = make_pool(
        spec("good"),
        spec("bad", fail_loads=1, fail_message="weights file is truncated"),
        clock=clock,
    )
    async with pool:
        async with pool.use("good"):
            pass
        with pytest.raises(LoadFailed, match="'bad' failed to load: RuntimeError: weights file"):
            async with pool.use("bad"):
                pass
        assert pool.state("bad") is ModelState.FAILED
        status = pool.get_resource_status()["model_resources"]["bad"]
        assert "truncated" in status["last_error"]
        async with pool.use("good") as lease:
            assert lease.hit
        with pytest.raises(LoadFailed, match=r"next try in 1\.0s") as backing_off:
            await pool.acquire("bad")  # backing off: refused at once, no load
        assert backing_off.value.retry_after == pytest.approx(1.0)
        clock.advance(1.5)
        async with pool.use("bad") as lease:  # after the backoff a request tries again
            assert lease.model_id == "bad"
        assert backend.loads.count("bad") == 2


async def test_after_repeated_failures_only_an_explicit_load_retries() -> None:
    clock = ManualClock()
    pool, backend = make_pool(spec("bad", fail_loads=3), clock=clock, max_failures=2)
    async with pool:
        events = pool.events()
        for _ in range(2):
            with pytest.raises(LoadFailed):
                await pool.acquire("bad")
            clock.advance(100)
        with pytest.raises(CircuitOpen, match="failed 2 times in a row"):
            await pool.acquire("bad")
        assert backend.loads == ["bad", "bad"]
        await asyncio.wait_for(next_event(events, EventKind.CIRCUIT_OPEN, "bad"), 5)
        with pytest.raises(LoadFailed):
            await pool.load("bad")  # explicit: tried (and fails a third time)
        await pool.load("bad")  # explicit again, no wait: the fourth load works
        assert pool.state("bad") is ModelState.READY


async def test_idle_ttl_reaper_unloads_on_the_pool_clock() -> None:
    clock = ManualClock()
    pool, backend = make_pool(spec("a", ttl=60), reap_interval=0.01, clock=clock)
    async with pool:
        events = pool.events()
        async with pool.use("a"):
            pass
        clock.advance(61)
        await asyncio.wait_for(next_event(events, EventKind.UNLOADED, "a"), 5)
        assert backend.resident == set()
        assert pool.state("a") is ModelState.UNLOADED


async def test_exclusive_group_keeps_one_heavy_model_at_a_time() -> None:
    pool, backend = make_pool(
        spec("llm", group="heavy"),
        spec("sdxl", group="heavy"),
        spec("tts", memory=GB),
        budget=16 * GB,
    )
    async with pool:
        for model in ("llm", "tts", "sdxl"):
            async with pool.use(model):
                pass
        assert backend.resident == {"sdxl", "tts"}
        assert pool.get_resource_status()["loaded_models"] == ["sdxl", "tts"]


async def test_waiting_on_memory_held_by_a_lease_times_out_naming_the_task() -> None:
    pool, _ = make_pool(spec("a"), spec("b"), budget=4 * GB)
    async with pool:
        assert await pool.allocate_model("a", task_id="task-42", priority=1)
        with pytest.raises(InsufficientMemory, match=r"task-42"):
            await pool.acquire("b", timeout=0.05)
        assert await pool.deallocate_model("task-42")
        async with pool.use("b") as lease:  # with the lease back, the swap happens
            assert lease.model_id == "b"


async def test_waiting_on_a_slow_load_times_out_with_wait_timeout() -> None:
    pool, backend = make_pool(spec("a"))
    backend.gate("a")
    async with pool:
        with pytest.raises(WaitTimeout, match=r"'a'.*loading"):
            await pool.acquire("a", timeout=0.05)
        backend.gate("a").set()
        await pool.load("a")
        assert pool.state("a") is ModelState.READY


async def test_a_cancelled_request_leaves_no_lease_or_waiter_behind() -> None:
    pool, backend = make_pool(spec("a"))
    gate = backend.gate("a")
    async with pool:
        task = asyncio.create_task(pool.acquire("a"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.get_resource_status()["queue"]["waiting"] == 0
        gate.set()
        await pool.load("a")
        assert pool.get_resource_status()["model_resources"]["a"]["leases"] == 0


async def test_errors_inside_use_count_against_the_model() -> None:
    pool, _ = make_pool(spec("a"))
    async with pool:
        with pytest.raises(ValueError, match="bad prompt"):
            async with pool.use("a"):
                raise ValueError("bad prompt")
        await pool.update_model_performance("a", response_time=2.0, success=True)
        stats = pool.get_resource_status()["model_resources"]["a"]
        assert stats["errors"] == 1
        assert stats["total_tasks_processed"] == 2
        assert stats["p99_response_time"] == 2.0


async def test_allocate_model_returns_false_on_failure() -> None:
    pool, _ = make_pool(spec("a", fail_loads=5))
    async with pool:
        assert not await pool.allocate_model("a", task_id="t1")
        assert not await pool.deallocate_model("t1")


async def test_strategy_changes_at_run_time_by_name_or_enum() -> None:
    pool, _ = make_pool(spec("a"))
    pool.set_switching_strategy(ModelSwitchingStrategy.LFU)
    assert pool.strategy == "lfu"
    pool.set_switching_strategy("memory_pressure")
    assert pool.strategy == "memory_pressure"
    with pytest.raises(PluginNotFound, match="did you mean 'hybrid'"):
        pool.set_switching_strategy("hybird")


async def test_resource_status_reports_memory_allocations_and_observed_usage() -> None:
    probe = StaticProbe({"cpu": 16 * GB}, used={"cpu": 5 * GB})
    pool, _ = make_pool(spec("a"), spec("b", memory=2 * GB), probe=probe)
    async with pool:
        await pool.allocate_model("a", task_id="t1")
        await pool.load("b")
        status = pool.get_resource_status()
        assert status["loaded_models"] == ["a", "b"]
        assert status["active_allocations"] == {"t1": ["a"]}
        memory = status["memory_info"]["cpu"]
        assert (memory["committed"], memory["free"]) == (6 * GB, 2 * GB)
        assert memory["observed_used"] == 5 * GB
        assert status["model_resources"]["a"]["current_tasks"] == 1
        await pool.deallocate_model("t1")


async def test_can_fit_and_require_free() -> None:
    pool, _ = make_pool(spec("a"), spec("b"), spec("c"))
    async with pool:
        await pool.load("a")
        await pool.load("b")
        assert not pool.can_fit("c")
        assert pool.can_fit("c", allow_eviction=True)
        async with pool.use("a"), pool.use("b"):
            assert not pool.can_fit("c", allow_eviction=True)
            with pytest.raises(InsufficientMemory, match=r"sdxl.*held by: a"):
                pool.require_free("cpu", "3GB", purpose="sdxl")
        pool.require_free("cpu", 0)


async def test_stop_unloads_everything_even_with_a_lease_out_after_the_drain_timeout() -> None:
    pool, backend = make_pool(spec("a"), spec("b"))
    await pool.start()
    lease = await pool.acquire("a")
    await pool.load("b")
    await pool.stop(drain_timeout=0.05)
    assert backend.resident == set()
    assert lease.released
    assert pool.get_resource_status()["memory_info"]["cpu"]["committed"] == 0
    with pytest.raises(PoolClosed):
        await pool.acquire("a")


async def test_a_forced_stop_cancels_a_load_in_flight_instead_of_waiting_for_it() -> None:
    pool, backend = make_pool(spec("slow", options={"load_seconds": 600}))
    await pool.start()
    events = pool.events()
    loading = asyncio.ensure_future(pool.load("slow"))
    async with asyncio.timeout(10):  # a missing event fails the test, never hangs it
        while (await anext(events)).kind is not EventKind.LOAD_STARTED:
            pass
    await pool.stop(drain_timeout=0)  # returns now, not in ten minutes
    assert pool.state("slow") is ModelState.FAILED
    assert backend.resident == set()
    status = pool.get_resource_status()["model_resources"]["slow"]
    assert status["last_error"] == "the pool stopped while it loaded"
    with pytest.raises(PoolClosed):
        await loading


async def test_pinned_models_load_at_start_and_survive_pressure() -> None:
    pool, backend = make_pool(spec("p", pinned=True), spec("a"), spec("b"))
    async with pool:
        assert backend.resident == {"p"}
        async with pool.use("a"):
            pass
        async with pool.use("b"):
            pass
        assert backend.resident == {"p", "b"}
        pool.unpin("p")
        async with pool.use("a"):
            pass
        assert "p" not in backend.resident


async def test_pool_from_yaml_config(tmp_path: Path) -> None:
    config = Config.from_yaml(
        f"""
        pool: {{strategy: fifo, budgets: {{cpu: 8GB}}, state_dir: "{tmp_path}"}}
        models:
          a: {{backend: fake, memory: 4GB, device: cpu, load_seconds: 0}}
          b: {{backend: fake, memory: 4GB, device: cpu, tags: [code]}}
        """
    )
    pool = ModelPool.from_config(config)
    assert pool.strategy == "fifo"
    assert pool.get_best_model_for_task("code") == "b"
    async with pool, pool.use("a") as lease:
        assert lease.obj("x") == "[a@cpu] x"


def test_use_sync_from_plain_code() -> None:
    pool, backend = make_pool(spec("a"), spec("b"), budget=4 * GB)
    with pool.use_sync("a") as lease:
        assert lease.obj("hello") == "[a@cpu] hello"
        assert threading.current_thread() is threading.main_thread()
    with pool.use_sync("b", task_id="script") as lease:
        assert lease.task_id == "script"
    pool.stop_sync()
    assert backend.loads == ["a", "b"]
    assert backend.resident == set()


async def test_use_sync_refuses_to_block_its_own_loop() -> None:
    pool, _ = make_pool(spec("a"))
    async with pool:
        with pytest.raises(RuntimeError, match="block the pool's loop"), pool.use_sync("a"):
            pass


async def test_loads_with_disjoint_evictions_overlap_in_time() -> None:
    pool, backend = make_pool(spec("a"), spec("b"), spec("c"), spec("d"))
    gates = {m: backend.gate(m) for m in "cd"}
    async with pool:
        await pool.load("a")
        await pool.load("b")
        loads = [asyncio.create_task(pool.load(m)) for m in "cd"]
        events = pool.events()
        await asyncio.wait_for(next_event(events, EventKind.LOAD_STARTED, "d"), 5)
        assert backend.concurrent_loads == 2
        assert pool.state("c") is ModelState.LOADING
        for gate in gates.values():
            gate.set()
        await asyncio.gather(*loads)
        assert backend.peak_concurrent_loads == 2
        assert backend.resident == {"c", "d"}


async def test_a_model_that_dies_is_marked_failed_and_its_memory_freed() -> None:
    pool, backend = make_pool(spec("a"), spec("b"), budget=4 * GB, restart_backoff=0)
    async with pool:
        events = pool.events()
        lease = await pool.acquire("a", task_id="t1")
        backend.crash("a", "exited with code 137")
        await asyncio.wait_for(next_event(events, EventKind.LOST, "a"), 5)
        assert pool.state("a") is ModelState.FAILED
        status = pool.get_resource_status()
        assert "code 137" in status["model_resources"]["a"]["last_error"]
        assert status["memory_info"]["cpu"]["committed"] == 0
        assert lease.released  # its lease ended with it
        pool.release(lease)  # giving it back later is harmless
        async with pool.use("b") as other:  # b fits at once: nothing waits on the dead a
            assert other.model_id == "b"
        async with pool.use("a") as again:  # and the next request for a loads it anew
            assert again.model_id == "a"
        assert backend.loads.count("a") == 2


async def test_config_names_the_probe_and_status_shows_its_readings(tmp_path: Path) -> None:
    text = (
        f"pool: {{probe: %s, budgets: {{cpu: 8GB}}, state_dir: '{tmp_path}'}}\n"
        "models: {a: {backend: fake, memory: 1GB}}\n"
    )
    system = ModelPool.from_config(Config.from_yaml(text % "system"))
    memory = system.get_resource_status()["memory_info"]["cpu"]
    assert memory["observed_total"] == psutil.virtual_memory().total
    assert 0 < memory["observed_used"] <= memory["observed_total"]
    static = ModelPool.from_config(Config.from_yaml(text % "static"))
    assert static.get_resource_status()["memory_info"]["cpu"]["observed_total"] == 8 * GB


def set_aside(path: Path) -> list[Path]:
    """The copies of a state file that were set aside as corrupt."""
    return list(path.parent.glob(path.name + ".corrupt-*"))


async def test_measured_footprints_are_remembered_across_restarts(tmp_path: Path) -> None:
    text = (
        f"pool: {{budgets: {{cpu: 8GB}}, state_dir: '{tmp_path}'}}\n"
        "models: {a: {backend: fake, memory: 4GB, footprint: 5GB}}\n"
    )
    first = ModelPool.from_config(Config.from_yaml(text))
    assert first.get_resource_status()["model_resources"]["a"]["memory_bytes"] == 4 * GB
    async with first:
        await first.load("a")
    assert (tmp_path / "estimates.json").exists()
    again = ModelPool.from_config(Config.from_yaml(text))  # a restart
    assert again.get_resource_status()["model_resources"]["a"]["memory_bytes"] == 5 * GB
    changed = ModelPool.from_config(Config.from_yaml(text.replace("5GB}", "5GB, load_seconds: 1}")))
    assert changed.get_resource_status()["model_resources"]["a"]["memory_bytes"] == 4 * GB
    (tmp_path / "estimates.json").write_text("{not json")
    fresh = ModelPool.from_config(Config.from_yaml(text))
    assert fresh.get_resource_status()["model_resources"]["a"]["memory_bytes"] == 4 * GB
    assert len(set_aside(tmp_path / "estimates.json")) == 1  # kept, not deleted
