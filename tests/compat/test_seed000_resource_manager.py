"""Seed 000 ("Model Switching Strategy"): its examples, on ``modelpool.compat``.

Copied from the seed with the imports changed (``from model_switching import`` becomes
``from modelpool.compat import``). Where the seed calls things of its own application
(``llm_loader``, ``generate_text``), a small real loader stands in: ``BufferLoader``
allocates each model's bytes in host RAM and ``BufferMonitor`` reports a 6 "GB" GPU
as the seed's use case has, scaled down 1000 times (6 MB) so the test holds real memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from seed_loaders import BufferLoader, BufferMonitor

from modelpool.compat import (
    ModelResourceInfo,
    ModelStatus,
    ModelSwitchingStrategy,
    ResourceManager,
)
from modelpool.core.events import EventKind

SCALE = 1 / 1000
# The seed's "Multi-Model Setup": 3 models, 6GB VRAM.
SIZES = {"llama-2-7b": 3 * SCALE, "code-llama-7b": 3 * SCALE, "llama-2-13b": 6 * SCALE}
SPECIALIZATIONS = {"llama-2-7b": "general", "code-llama-7b": "code, analysis", "llama-2-13b": ""}


@pytest.fixture
async def resource_manager() -> AsyncIterator[ResourceManager]:
    llm_loader = BufferLoader(SIZES)
    manager = ResourceManager(
        llm_loader,
        BufferMonitor(llm_loader, 6 * SCALE),
        model_vram_gb=SIZES,
        specializations=SPECIALIZATIONS,
    )
    yield manager
    await manager.stop()


async def generate_text() -> str:
    return "text"


async def test_quick_start(
    resource_manager: ResourceManager, capsys: pytest.CaptureFixture[str]
) -> None:
    # --- from the seed's Quick Start ---
    await resource_manager.start()

    # Set switching strategy
    resource_manager.set_switching_strategy(ModelSwitchingStrategy.HYBRID)

    # Allocate model for task
    success = await resource_manager.allocate_model(
        model_id="llama-2-7b", task_id="task_123", priority=5
    )

    if success:
        # Use model
        response = await generate_text()

        # Deallocate when done
        await resource_manager.deallocate_model("task_123")

    # Get resource status
    status = resource_manager.get_resource_status()
    print(f"Loaded models: {status['loaded_models']}")
    print(f"Active allocations: {status['active_allocations']}")
    # --- end ---
    assert success
    assert response == "text"
    assert status["loaded_models"] == ["llama-2-7b"]
    assert status["active_allocations"] == {}
    assert resource_manager.pool.strategy == "hybrid"
    assert "Loaded models: ['llama-2-7b']" in capsys.readouterr().out


async def test_resource_status_and_performance_tracking(
    resource_manager: ResourceManager, capsys: pytest.CaptureFixture[str]
) -> None:
    await resource_manager.start()
    assert await resource_manager.allocate_model("llama-2-7b", "task_1", priority=5)
    # --- from the seed's Advanced Usage: Resource Status ---
    status = resource_manager.get_resource_status()

    # Loaded models
    for model_id in status["loaded_models"]:
        resource = status["model_resources"][model_id]
        print(f"{model_id}:")
        print(f"  Status: {resource['status']}")
        print(f"  VRAM: {resource['vram_usage_gb']}GB")
        print(f"  Current tasks: {resource['current_tasks']}")
        print(f"  Total tasks: {resource['total_tasks_processed']}")
        print(f"  Avg response time: {resource['average_response_time']}ms")

    # Memory info
    memory = status["memory_info"]
    print(f"VRAM: {memory['used_vram_gb']}/{memory['total_vram_gb']}GB")
    # --- end ---
    resource = status["model_resources"]["llama-2-7b"]
    assert resource["status"] == ModelStatus.LOADED == "loaded"
    assert resource["vram_usage_gb"] == pytest.approx(3 * SCALE, rel=0.01)
    assert resource["current_tasks"] == 1
    assert memory["used_vram_gb"] == pytest.approx(3 * SCALE, rel=0.01)  # the monitor's reading
    assert memory["total_vram_gb"] == pytest.approx(6 * SCALE)
    assert "  Status: loaded" in capsys.readouterr().out
    await resource_manager.deallocate_model("task_1")

    # --- from the seed's Advanced Usage: Performance Tracking ---
    # Update model performance after task
    await resource_manager.update_model_performance(
        model_id="llama-2-7b",
        response_time=1.5,  # seconds
        success=True,
    )

    # Performance tracked in history
    history = resource_manager.model_performance_history["llama-2-7b"]
    print(f"Recent performance: {history[-10:]}")
    # --- end ---
    assert [entry["response_time"] for entry in history] == [1.5]
    info = resource_manager.model_resources["llama-2-7b"]
    assert isinstance(info, ModelResourceInfo)
    assert info.total_tasks_processed == 2  # the lease given back, and the reported task
    assert info.current_tasks == 0
    assert info.specialization_scores["general"] == 1.0
    assert info.specialization_scores["code"] == 0.7


async def test_best_model_for_task(
    resource_manager: ResourceManager, capsys: pytest.CaptureFixture[str]
) -> None:
    await resource_manager.start()
    for model in SIZES:  # the manager learns of models as they are allocated
        assert await resource_manager.allocate_model(model, f"warm-{model}")
        await resource_manager.deallocate_model(f"warm-{model}")
    # --- from the seed's Best Model for Task ---
    # Get best model for specific task type
    best_model = resource_manager.get_best_model_for_task("code")
    print(f"Best model for coding: {best_model}")
    # --- end ---
    assert best_model == "code-llama-7b"
    assert resource_manager.get_best_model_for_task("creative") == "llama-2-7b"  # "general"


async def test_priority_queuing_keeps_the_busy_model_and_swaps_the_other(
    resource_manager: ResourceManager,
) -> None:
    await resource_manager.start()
    resource_manager.set_switching_strategy(ModelSwitchingStrategy.PRIORITY)
    # --- from the seed's Use Cases: 2. Priority Queuing ---
    # High priority user
    await resource_manager.allocate_model(
        model_id="code-llama-7b",  # the seed's llama-2-70b does not fit this 6 GB card
        task_id="premium_user_task",
        priority=1,  # Won't be unloaded
    )

    # Low priority user
    await resource_manager.allocate_model(
        model_id="llama-2-7b",
        task_id="free_user_task",
        priority=10,  # May be unloaded
    )
    # --- end ---
    status = resource_manager.get_resource_status()
    assert sorted(status["loaded_models"]) == ["code-llama-7b", "llama-2-7b"]
    await resource_manager.deallocate_model("free_user_task")
    # The 13b needs the whole card: the idle llama-2-7b could go, the leased one cannot.
    waiting = asyncio.create_task(resource_manager.allocate_model("llama-2-13b", "big", 5))
    await asyncio.sleep(0)
    assert not waiting.done()
    await resource_manager.deallocate_model("premium_user_task")
    assert await asyncio.wait_for(waiting, 10)
    assert resource_manager.get_resource_status()["loaded_models"] == ["llama-2-13b"]
    assert await resource_manager.deallocate_model("big")


async def test_a_loader_that_returns_false_fails_the_allocation() -> None:
    loader = BufferLoader(SIZES, fail=frozenset({"llama-2-13b"}))
    manager = ResourceManager(loader, BufferMonitor(loader, 6 * SCALE), model_vram_gb=SIZES)
    await manager.start()
    try:
        assert not await manager.allocate_model("llama-2-13b", "t", 5)
        info = manager.model_resources["llama-2-13b"]
        assert info.status is ModelStatus.ERROR
        assert not await manager.allocate_model("no/such model", "t2", 5)  # not a valid id
    finally:
        await manager.stop()


async def test_configuration_settings_reach_the_running_pool(
    resource_manager: ResourceManager,
) -> None:
    await resource_manager.start()
    assert resource_manager.auto_switch_threshold == 0.8  # the seed's defaults
    assert (resource_manager.max_idle_time, resource_manager.cleanup_interval) == (300, 60)
    assert await resource_manager.allocate_model("llama-2-7b", "t", 5)
    await resource_manager.deallocate_model("t")
    events = resource_manager.pool.events()
    # --- from the seed's Configuration: Memory Thresholds (times shortened) ---
    # When to start unloading models
    resource_manager.auto_switch_threshold = 0.8  # 80% VRAM

    # When to consider a model idle
    resource_manager.max_idle_time = 0.05  # the seed: 300, 5 minutes

    # How often to cleanup
    resource_manager.cleanup_interval = 0.02  # the seed: 60, 1 minute
    # --- end ---
    assert resource_manager.pool.settings.high_watermark == 0.8
    assert resource_manager.pool.settings.reap_interval == 0.02

    async def unloaded() -> str:
        async for event in events:
            if event.kind is EventKind.UNLOAD_STARTED:
                return str(event.detail.get("reason"))
        return ""

    reason = await asyncio.wait_for(unloaded(), 10)
    assert "ttl" in reason
    assert resource_manager.get_resource_status()["loaded_models"] == []


async def test_the_high_watermark_unloads_idle_models_ahead_of_need(
    resource_manager: ResourceManager,
) -> None:
    await resource_manager.start()
    resource_manager.cleanup_interval = 0.02
    assert await resource_manager.allocate_model("llama-2-7b", "a", 5)
    assert await resource_manager.allocate_model("code-llama-7b", "b", 5)
    events = resource_manager.pool.events()
    await resource_manager.deallocate_model("a")  # 6 of 6 GB booked: above 0.8
    async for event in events:
        if event.kind is EventKind.UNLOAD_STARTED:
            assert "high watermark" in str(event.detail.get("reason"))
            break
    assert resource_manager.get_resource_status()["loaded_models"] == ["code-llama-7b"]
    await resource_manager.deallocate_model("b")


async def test_without_a_monitor_the_budget_is_what_this_machine_reports() -> None:
    manager = ResourceManager(BufferLoader(SIZES), model_vram_gb=SIZES)
    status = manager.get_resource_status()
    assert manager.device in ("cuda:0", "cpu")
    assert status["memory_info"]["total_vram_gb"] > 0
    assert status["memory_info"]["device"] == manager.device
