"""A model with replicas through the pool's public face: one model, several copies."""

from __future__ import annotations

import asyncio
from pathlib import Path

from modelpool import EventKind, FakeBackend, ModelPool, ModelSpec
from modelpool.config import Config
from modelpool.core.estimates import EstimateStore

GB = 10**9


def pool_of(*specs: ModelSpec, budget: int = 8 * GB) -> ModelPool:
    return ModelPool(
        specs, budgets={"cpu": budget}, strategy="lru", backends={"fake": FakeBackend()}
    )


async def both_ready(pool: ModelPool, model: str) -> None:
    """Load ``model`` and wait (bounded) until its second copy is READY too."""
    events = pool.events()
    await pool.load(model)

    async def second_loaded() -> None:
        async for event in events:
            if event.kind is EventKind.LOADED and event.model_id == f"{model}#2":
                return

    if pool.state(f"{model}#2").value != "ready":
        await asyncio.wait_for(second_loaded(), 10)


async def test_the_pool_shows_one_model_whose_status_sums_its_copies() -> None:
    spec = ModelSpec(id="m", backend="fake", memory="2GB", device="cpu", replicas=2, aliases="em")
    pool = pool_of(spec, ModelSpec(id="b", backend="fake", memory="1GB", device="cpu"))
    async with pool:
        await both_ready(pool, "m")
        leases = [await pool.acquire("em") for _ in range(3)]
        assert sorted(lease.model_id for lease in leases) == ["m#1", "m#1", "m#2"]
        assert list(pool.specs) == ["m", "b"]
        assert pool.resolve("em") == pool.resolve("m#2") == "m"
        assert pool.spec("m").id == "m"
        assert pool.replicas("m") == ["m#1", "m#2"]
        status = pool.get_resource_status()
        view = status["model_resources"]["m"]
        assert set(status["model_resources"]) == {"m", "b"}
        assert view["status"] == "ready"
        assert view["leases"] == 3
        assert view["memory_bytes"] == 4 * GB
        assert view["requests"] == 3
        assert (view["replicas_active"], view["replicas_min"], view["replicas_max"]) == (2, 2, 2)
        assert [(c["id"], c["leases"], c["status"]) for c in view["replicas"]] == [
            ("m#1", 2, "ready"),
            ("m#2", 1, "ready"),
        ]
        assert status["loaded_models"] == ["m"]
        for lease in leases:
            pool.release(lease)


async def test_versions_of_a_model_with_replicas_are_single_records() -> None:
    config = Config.from_mapping(
        {
            "pool": {"budgets": {"cpu": "8GB"}, "strategy": "lru"},
            "models": {
                "m": {
                    "backend": "fake",
                    "memory": "1GB",
                    "device": "cpu",
                    "replicas": 2,
                    "versions": {"v2": {"memory": "2GB"}},
                }
            },
        }
    )
    pool = ModelPool.from_config(config, state_dir=None, backends={"fake": FakeBackend()})
    assert pool.versions("m") == {"v1": "m", "v2": "m@v2"}
    assert pool.replicas("m") == ["m#1", "m#2"]
    assert pool.replicas("m@v2") == ["m@v2"]
    assert pool.resolve("m@v1") == "m"
    assert list(pool.specs) == ["m", "m@v2"]


async def test_a_measured_footprint_of_a_copy_is_the_next_start_s_estimate(tmp_path: Path) -> None:
    spec = ModelSpec(
        id="m", backend="fake", memory="2GB", device="cpu", replicas={"max": 2},
        options={"footprint": "1.5GB"},
    )  # fmt: skip
    store = EstimateStore(tmp_path / "estimates.json")
    first = ModelPool([spec], budgets={"cpu": 8 * GB}, backends={"fake": FakeBackend()},
                      estimates=store)  # fmt: skip
    async with first:
        await first.load("m")
    again = EstimateStore(tmp_path / "estimates.json")
    second = ModelPool([spec], budgets={"cpu": 8 * GB}, backends={"fake": FakeBackend()},
                       estimates=again)  # fmt: skip
    assert second.get_resource_status()["model_resources"]["m"]["memory_bytes"] == 1.5 * GB
