"""Loads and unloads that use the probe finish whatever the probe says or raises
(points 3 and 4 of issue 15): a failed or implausible reading is unknown, the estimate
stands and is not remembered, and no model stays LOADING or UNLOADING."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gpu_fakes import GB, FakeGpu, FakeNvml
from gpu_fakes import real as pynvml  # skips this module without nvidia-ml-py

from modelpool import FakeBackend, ModelPool, ModelSpec, ModelState
from modelpool.config import ModelSpec as Spec
from modelpool.core.estimates import EstimateStore, plausible_footprint
from modelpool.core.ports import Handle, MemoryReading
from modelpool.probes.nvml import NvmlProbe
from modelpool.types import DeviceId

SERVER_PID = 5151


class ServerLikeBackend(FakeBackend):
    """A FakeBackend whose handles look like a server process's: pids, no footprint."""

    async def load(self, spec: Spec, device: DeviceId) -> Handle:
        handle = await super().load(spec, device)
        handle.footprint = None
        handle.pids = (SERVER_PID,)
        return handle


class ScriptedProbe:
    """A probe whose readings and per-process figures the test scripts; ``fail`` makes
    every call raise what NVML raises."""

    name = "scripted"

    def __init__(self, total: int, measured: int | None) -> None:
        self.total = total
        self.used = 0
        self.measured = measured
        self.fail: Exception | None = None

    def read(self, device: DeviceId) -> MemoryReading | None:
        if self.fail is not None:
            raise self.fail
        return MemoryReading(device, self.total, self.used)

    def process_bytes(self, device: DeviceId, pids: object) -> int | None:
        if self.fail is not None:
            raise self.fail
        return self.measured


def pool_with(probe: object, store: EstimateStore | None = None) -> ModelPool:
    return ModelPool(
        [ModelSpec(id="a", backend="fake", memory=4 * GB, device="cuda:0")],
        budgets={"cuda:0": 16 * GB},
        backends={"fake": ServerLikeBackend()},
        probe=probe,  # type: ignore[arg-type]
        estimates=store,
        release_timeout=0.2,
    )


def test_plausible_footprints() -> None:
    assert plausible_footprint(3 * GB, 80 * GB)
    assert plausible_footprint(3 * GB, None)
    assert not plausible_footprint(None, 80 * GB)
    assert not plausible_footprint(0, 80 * GB)
    assert not plausible_footprint(81 * GB, 80 * GB)


@pytest.mark.parametrize("measured", [None, 0, 200 * GB])
async def test_unknown_or_implausible_process_memory_keeps_the_estimate(
    tmp_path: Path, measured: int | None
) -> None:
    store = EstimateStore(tmp_path / "estimates.json")
    pool = pool_with(ScriptedProbe(80 * GB, measured), store)
    async with pool:
        await pool.load("a")
        resources = pool.get_resource_status()["model_resources"]["a"]
        assert resources["memory_bytes"] == 4 * GB  # the estimate, still booked
    assert not (tmp_path / "estimates.json").exists()  # nothing remembered


async def test_a_plausible_measurement_is_booked_and_remembered(tmp_path: Path) -> None:
    store = EstimateStore(tmp_path / "estimates.json")
    async with pool_with(ScriptedProbe(80 * GB, 5 * GB), store) as pool:
        await pool.load("a")
        assert pool.get_resource_status()["model_resources"]["a"]["memory_bytes"] == 5 * GB
    assert EstimateStore(tmp_path / "estimates.json").get(pool.spec("a")) == 5 * GB


@pytest.mark.parametrize(
    "failure",
    [
        pynvml.NVMLLibraryMismatchError("Unversioned function called"),  # a plain Exception
        pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION),
        pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST),
    ],
)
async def test_a_failing_probe_neither_fails_nor_strands_a_load_or_unload(
    failure: Exception,
) -> None:
    probe = ScriptedProbe(80 * GB, 5 * GB)
    probe.fail = failure
    async with pool_with(probe) as pool:
        await pool.load("a")
        assert pool.state("a") is ModelState.READY
        async with asyncio.timeout(10):
            await pool.unload("a")
        assert pool.state("a") is ModelState.UNLOADED
        await pool.load("a")
        # (get_resource_status reads the probe unguarded: it is read here once it works)
        probe.fail = None
        assert pool.get_resource_status()["model_resources"]["a"]["memory_bytes"] == 4 * GB


async def test_a_probe_that_fails_while_an_unload_waits_lets_it_finish() -> None:
    probe = ScriptedProbe(80 * GB, 5 * GB)
    async with pool_with(probe) as pool:
        await pool.load("a")
        probe.used = 5 * GB
        unloading = asyncio.ensure_future(pool.unload("a"))
        await asyncio.sleep(0)  # the unload has read "before"; it now waits for the memory
        probe.fail = pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        async with asyncio.timeout(10):
            await unloading
        assert pool.state("a") is ModelState.UNLOADED


async def test_the_nvml_probe_in_a_container_books_the_estimate(tmp_path: Path) -> None:
    """NVML lists host pids in a container: the server's pid is not among them."""
    gpu = FakeGpu("GPU-0", processes={987_654: 6 * GB})
    probe = NvmlProbe(FakeNvml([gpu]), environ={}, torch_cuda=lambda: None, pid=1)
    store = EstimateStore(tmp_path / "estimates.json")
    async with pool_with(probe, store) as pool:
        await pool.load("a")
        assert pool.get_resource_status()["model_resources"]["a"]["memory_bytes"] == 4 * GB
    assert not (tmp_path / "estimates.json").exists()
