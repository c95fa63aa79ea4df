"""A model spread over two devices through the async pool and the FakeBackend: one
load across both, one lease, both ledgers booked, both freed by one unload."""

from __future__ import annotations

from modelpool import FakeBackend, ModelPool, ModelSpec, ModelState

GB = 10**9
BOX = {f"cuda:{i}": 8 * GB for i in range(4)}


async def test_a_spread_model_loads_across_its_devices_and_leaves_them_together() -> None:
    backend = FakeBackend()
    specs = [
        ModelSpec(id="wide", backend="fake", memory=12 * GB, devices=2),
        ModelSpec(id="one", backend="fake", memory=5 * GB, device="cuda:0"),
    ]
    pool = ModelPool(specs, budgets=BOX, backends={"fake": backend})
    async with pool:
        await pool.load("one")
        async with pool.use("wide") as lease:
            devices = lease.handle.devices
            assert len(devices) == 2
            assert "cuda:0" not in devices  # 3 GB left there: the others hold a part whole
            status = pool.get_resource_status()
            model = status["model_resources"]["wide"]
            assert set(model["devices"]) == set(devices)
            assert sum(model["devices"].values()) == 12 * GB
        await pool.unload("wide")
        status = pool.get_resource_status()
        assert status["model_resources"]["wide"]["status"] == ModelState.UNLOADED
        for device in devices:
            assert status["memory_info"][device]["models"] == {}
            assert status["memory_info"][device]["committed"] == 0
