"""``ModelPool.acquire`` serves a model that cannot load by its ``fallback``: a real pool
on its loop with fake models whose loads fail as scripted."""

from __future__ import annotations

import pytest

from modelpool import ModelPool, ModelSpec
from modelpool.core.events import EventKind
from modelpool.errors import DoesNotFit, LoadFailed, WaitTimeout

GB = 10**9


def spec(model_id: str, **fields: object) -> ModelSpec:
    return ModelSpec.model_validate({"id": model_id, "backend": "fake", "memory": GB, **fields})


def pool(*specs: ModelSpec) -> ModelPool:
    return ModelPool(specs, budgets={"cpu": 4 * GB}, strategy="lru", restart_backoff=0)


async def test_a_failed_load_is_served_by_the_fallback_and_the_event_says_why() -> None:
    broken = spec("broken", fail_loads=9, fail_message="no weights here", fallback="backup")
    async with pool(broken, spec("backup")) as running:
        async with running.use("broken") as lease:
            assert lease.model_id == "backup"
            assert lease.obj.model_id == "backup"
        fallbacks = [e for e in running.recent_events() if e.kind is EventKind.FALLBACK]
        assert [e.model_id for e in fallbacks] == ["broken"]
        assert fallbacks[0].detail["fallback"] == "backup"
        assert fallbacks[0].detail["served"] is True
        assert "no weights here" in fallbacks[0].detail["reason"]
        assert running.state("broken").value == "failed"


async def test_a_model_that_never_fits_is_served_by_the_fallback() -> None:
    huge = spec("huge", memory=8 * GB, fallback="backup")
    async with pool(huge, spec("backup")) as running:
        lease = await running.acquire("huge")
        assert lease.model_id == "backup"
        running.release(lease)


async def test_when_the_fallback_refuses_too_the_models_own_refusal_stands() -> None:
    broken = spec("broken", fail_loads=9, fallback="backup")
    backup = spec("backup", fail_loads=9, fail_message="backup is broken too")
    async with pool(broken, backup) as running:
        with pytest.raises(LoadFailed, match="'broken'") as refused:
            await running.acquire("broken")
        assert isinstance(refused.value.__cause__, LoadFailed)
        assert "'backup'" in str(refused.value.__cause__)
        event = [e for e in running.recent_events() if e.kind is EventKind.FALLBACK][-1]
        assert event.detail["served"] is False
        assert "backup is broken too" in event.detail["error"]


async def test_a_request_that_only_waited_too_long_does_not_fall_back() -> None:
    slow = spec("slow", load_seconds=0.5, fallback="backup")
    async with pool(slow, spec("backup")) as running:
        with pytest.raises(WaitTimeout):
            await running.acquire("slow", timeout=0.05)
        assert not [e for e in running.recent_events() if e.kind is EventKind.FALLBACK]


async def test_without_a_fallback_the_refusal_is_as_before() -> None:
    async with pool(spec("huge", memory=8 * GB)) as running:
        with pytest.raises(DoesNotFit):
            await running.acquire("huge")
