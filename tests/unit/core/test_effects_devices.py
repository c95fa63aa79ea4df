"""AsyncEffects measures a server process on every device it was given (issue 17,
point 1): a model across ``cuda:1`` and ``cuda:3`` holds what NVML lists for its
process on both, summed; a part NVML cannot tell keeps the estimate.

The probe is the real ``NvmlProbe`` over a fake NVML (``gpu_fakes``) with four GPUs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from gpu_fakes import GB, FakeGpu, FakeNvml

from modelpool.config import ModelSpec
from modelpool.core.effects import AsyncEffects
from modelpool.core.ports import Handle, Placement
from modelpool.probes.nvml import NvmlProbe
from modelpool.types import DeviceId

SERVER_PID = 2_000_000_001
"""A pid no process here has: NVML (the fake) lists it, psutil finds no children."""


class ServerBackend:
    """Loads return what a process backend's do: the server's pid and its devices."""

    async def load(self, spec: ModelSpec, device: DeviceId) -> Handle:
        return Handle(spec.id, device, pids=(SERVER_PID,))

    async def load_across(self, spec: ModelSpec, placement: Placement) -> Handle:
        return Handle(spec.id, placement.device, pids=(SERVER_PID,), devices=placement.devices)

    async def unload(self, handle: Handle) -> None:
        return None


class LoadReports:
    """The scheduler's side of a load: the handle or error it was reported."""

    def __init__(self) -> None:
        self.loaded: asyncio.Queue[tuple[Handle | None, str | None]] = asyncio.Queue()

    def on_load_done(
        self, model_id: str, handle: Handle | None, error: str | None, seconds: float
    ) -> None:
        self.loaded.put_nowait((handle, error))

    def on_unload_done(self, model_id: str, error: str | None = None) -> None: ...

    def on_offload_done(
        self, model_id: str, warm: Handle | None, error: str | None, seconds: float
    ) -> None: ...

    def on_lost(self, model_id: str, handle: Handle, reason: str) -> None: ...


def four_gpus(held: dict[int, int]) -> NvmlProbe:
    """NVML over four 24 GB GPUs; the server holds ``held[i]`` bytes on GPU i."""
    gpus = [
        FakeGpu(
            f"GPU-0000000{index}-0000-0000-0000-000000000000",
            f"00000000:{16 + index:02x}:00.0",
            total=24 * GB,
            processes={SERVER_PID: held[index]} if index in held else {},
        )
        for index in range(4)
    ]
    return NvmlProbe(FakeNvml(gpus), environ={}, torch_cuda=lambda: None, pid=1)


async def footprint(probe: NvmlProbe, placement: Placement) -> int | None:
    reports = LoadReports()
    tasks: list[asyncio.Task[None]] = []

    def spawn(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        tasks.append(task)
        return task

    effects = AsyncEffects(
        {"fake": ServerBackend()},
        lambda model_id: spec,
        spawn=spawn,
        publish=lambda event: None,
        release=lambda lease: None,
        clock=asyncio.get_running_loop().time,
        probe=probe,
    )
    effects.report_to(reports)
    spec = ModelSpec(id="m", backend="fake", memory=GB, devices=len(placement.devices))
    effects.start_load(spec, placement)
    async with asyncio.timeout(5):
        handle, error = await reports.loaded.get()
    await asyncio.gather(*tasks)
    assert error is None
    assert handle is not None
    assert handle.all_devices == placement.devices
    return handle.footprint


ACROSS = Placement(("cuda:1", "cuda:3"), (0.4, 0.6))


async def test_a_model_across_devices_is_measured_on_all_of_them() -> None:
    assert await footprint(four_gpus({1: 3 * GB, 3: 5 * GB}), ACROSS) == 8 * GB


async def test_a_model_on_one_device_is_measured_there_only() -> None:
    probe = four_gpus({1: 3 * GB, 3: 5 * GB})
    assert await footprint(probe, Placement.one("cuda:3")) == 5 * GB


async def test_a_part_nvml_cannot_tell_keeps_the_estimate() -> None:
    """Listed on cuda:1 only: 3 GB would book the model as smaller than it is."""
    assert await footprint(four_gpus({1: 3 * GB}), ACROSS) is None


async def test_a_footprint_larger_than_one_device_is_plausible_across_two() -> None:
    """30 GB over two 24 GB GPUs: set against what they hold together, not the first."""
    assert await footprint(four_gpus({1: 12 * GB, 3: 18 * GB}), ACROSS) == 30 * GB
