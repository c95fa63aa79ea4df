"""Seed 003 (real-time model switching for vLLM-Omni): its examples on ``modelpool.compat``.

``from vllm_omni.model_executor.models import ...`` becomes ``from modelpool.compat
import ...``. What differs, as the test builds it: the registry and the switcher are
made over a ``RolloutManager`` (the seed builds them from a base registry, a cache and
a ``TransitionManager``); a model is one the pool knows, its first version declared in
the config (``v1.0``), and a version's config carries modelpool settings (here the
stand-in model's ``kwargs``) beside the seed's ``model_arch`` and ``model_stage``,
which name the model as the seed does. The models are small real in-process objects
(``compat_models.Echo``); the rollout runs on a manual clock, so the seed's
``await asyncio.sleep(30)`` in its progress loop is a step of that clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from compat_models import echo_spec

from modelpool import ModelPool, ModelSpec
from modelpool.compat import (
    DynamicModelRegistry,
    ModelCache,
    ModelSwitcher,
    SwitchingStrategyType,
)
from modelpool.core.testing import ManualClock
from modelpool.errors import SwitchRefused
from modelpool.rollout import RolloutManager

OMNI = "Qwen2_5OmniForConditionalGeneration_thinker"


def model(model_id: str, name: str) -> ModelSpec:
    return ModelSpec.model_validate(
        {"id": model_id, **echo_spec(name, "1GB"), "device": "cpu", "version": "v1.0"}
    )


@dataclass
class Rig:
    clock: ManualClock
    pool: ModelPool
    rollouts: RolloutManager

    async def step(self, seconds: float) -> None:
        """The seed's ``await asyncio.sleep(seconds)``, on the manual clock."""
        await self.rollouts.settle()
        self.clock.advance(seconds)
        self.rollouts.tick()
        await self.rollouts.settle()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = ManualClock()
    pool = ModelPool(
        [model(OMNI, "omni-v1"), model("my_model", "mine-v1")],
        budgets={"cpu": "8GB"},
        strategy="lru",
        clock=clock,
    )
    rollouts = RolloutManager(pool, clock=clock, interval=None)
    await pool.start()
    await rollouts.start()
    yield Rig(clock, pool, rollouts)
    await rollouts.stop()
    await pool.stop()


async def test_quick_start_register_and_switch(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = DynamicModelRegistry(rig.rollouts)
    cache = ModelCache(rig.pool)
    transition_manager = None  # the rollout manager routes during transitions
    switcher = ModelSwitcher(registry, cache, transition_manager)

    # --- from the seed's Quick Start: 2. Register Models ---
    # Register model versions
    config_v1 = dict(
        model_arch="Qwen2_5OmniForConditionalGeneration",
        model_stage="thinker",
        kwargs={"name": "omni-v1"},  # the seed: model="Qwen/Qwen2.5-Omni-7B"
    )

    config_v2 = dict(
        model_arch="Qwen2_5OmniForConditionalGeneration",
        model_stage="thinker",
        kwargs={"name": "omni-v2"},  # the seed: model="Qwen/Qwen2.5-Omni-7B-v2"
    )

    # Register versions
    model_id = registry.register_model(config_v1, "v1.0", {"author": "team"})
    registry.register_model(config_v2, "v2.0", {"author": "team", "improvements": "latency"})

    # --- from the seed's Best Practices: 1. Pre-load Models ---
    # Pre-load models into cache
    await cache.preload_model(f"{model_id}@v2.0", priority=10)  # the seed: "my_model_v2.0"

    # --- from the seed's Quick Start: 3. Switch Models ---
    # Immediate switch
    result = await switcher.switch_model(
        model_id="Qwen2_5OmniForConditionalGeneration_thinker",
        target_version="v2.0",
        strategy_type=SwitchingStrategyType.IMMEDIATE,
    )

    print(f"Switch {'successful' if result.success else 'failed'}: {result.operation_id}")
    # --- end ---
    assert model_id == OMNI
    assert f"Switch successful: {result.operation_id}" in capsys.readouterr().out
    assert result.operation_id is not None
    await rig.rollouts.wait(result.operation_id)
    assert switcher.get_switch_status(result.operation_id)["status"] == "completed"
    versions = {v["version"]: v for v in registry.list_versions(OMNI)}
    assert versions["v2.0"]["author"] == "team"
    assert versions["v2.0"]["notes"] == "improvements: latency"
    async with rig.pool.use(OMNI) as lease:  # the traffic is on v2.0 now
        assert lease.obj.generate("hi") == "omni-v2: hi"
    with pytest.raises(SwitchRefused, match="already registered"):
        registry.register_model(config_v2, "v2.0")


async def test_complete_switching_workflow(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    config_v1 = {"model_id": "my_model", "kwargs": {"name": "mine-v1"}}
    config_v2 = {"model_id": "my_model", "kwargs": {"name": "mine-v2"}}

    # --- from the seed's Examples: Complete Switching Workflow ---
    async def switching_workflow():
        # Initialize
        registry = DynamicModelRegistry(rig.rollouts)
        switcher = ModelSwitcher(registry)

        # Register models
        registry.register_model(config_v1, "v1.0")
        registry.register_model(config_v2, "v2.0")

        # Gradual rollout
        result = await switcher.switch_model(
            "my_model", "v2.0", SwitchingStrategyType.GRADUAL, {"duration_minutes": 10}
        )

        # Monitor progress
        for _ in range(100):  # the seed: while True (a test's loop has a deadline)
            status = switcher.get_switch_status(result.operation_id)
            print(f"Progress: {status['progress']:.1%}")
            if status["status"] in ["completed", "failed"]:
                break
            await rig.step(30)  # the seed: await asyncio.sleep(30)

        print(f"Switch completed: {result.success}")
        return status

    # --- end ---

    status = await switching_workflow()
    assert status["status"] == "completed"
    out = capsys.readouterr().out
    assert "Progress: 50.0%" in out  # steps of the plan, each held 10 min / 5
    assert "Progress: 100.0%" in out
    assert "Switch completed: True" in out
    async with rig.pool.use("my_model") as lease:
        assert lease.obj.generate("hi") == "mine-v2: hi"


async def test_validation_and_troubleshooting(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    switcher = ModelSwitcher(DynamicModelRegistry(rig.rollouts))
    model_id, target_version = OMNI, "v9"
    # --- from the seed's Best Practices: 2. Monitor Health Before Switching ---
    # Check model health before switching
    validation = switcher.validate_switch_request(model_id, target_version)
    if not validation["valid"]:
        print("Validation failed:", validation["errors"])
    # --- end ---
    assert not validation["valid"]
    assert "Validation failed:" in capsys.readouterr().out
    assert "v9" in validation["errors"][0]
    result = await switcher.switch_model(
        OMNI, "v1.0", SwitchingStrategyType.AB_TEST, {"traffic_percentage": 20}
    )
    assert not result.success  # v1.0 already serves all of it
    assert any("already serves" in error for error in result.errors)
    check = switcher.validate_switch_request(
        OMNI, "v1.0", SwitchingStrategyType.CANARY, {"initial_percentage": 500}
    )
    assert any("initial_percentage" in error for error in check["errors"])
