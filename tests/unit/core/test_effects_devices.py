"""AsyncEffects measures a server process on every device it was given (issue 17,
point 1): a model across ``cuda:1`` and ``cuda:3`` holds what NVML lists for its
process on both, summed; a part NVML cannot tell keeps the estimate. Its unload is
confirmed on all of its devices together, as its bytes were booked.

The probe is the real ``NvmlProbe`` over a fake NVML (``gpu_fakes``) with four GPUs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from gpu_fakes import GB, FakeGpu, FakeNvml

from modelpool.config import ModelSpec
from modelpool.core.effects import AsyncEffects
from modelpool.core.events import EventKind, PoolEvent
from modelpool.core.ports import Handle, Placement
from modelpool.probes.nvml import NvmlProbe
from modelpool.types import DeviceId

SERVER_PID = 2_000_000_001
"""A pid no process here has: NVML (the fake) lists it, psutil finds no children."""


class ServerBackend:
    """Loads return what a process backend's do: the server's pid and its devices; an
    unload ends the server, whose memory leaves every GPU at once."""

    def __init__(self, gpus: list[FakeGpu] | None = None) -> None:
        self.gpus = gpus or []

    async def load(self, spec: ModelSpec, device: DeviceId) -> Handle:
        return Handle(spec.id, device, pids=(SERVER_PID,))

    async def load_across(self, spec: ModelSpec, placement: Placement) -> Handle:
        return Handle(spec.id, placement.device, pids=(SERVER_PID,), devices=placement.devices)

    async def unload(self, handle: Handle) -> None:
        for gpu in self.gpus:
            gpu.processes.pop(SERVER_PID, None)


class LoadReports:
    """The scheduler's side of a load: the handle or error it was reported."""

    def __init__(self) -> None:
        self.loaded: asyncio.Queue[tuple[Handle | None, str | None]] = asyncio.Queue()
        self.unloaded: asyncio.Queue[str | None] = asyncio.Queue()

    def on_load_done(
        self, model_id: str, handle: Handle | None, error: str | None, seconds: float
    ) -> None:
        self.loaded.put_nowait((handle, error))

    def on_unload_done(self, model_id: str, error: str | None = None) -> None:
        self.unloaded.put_nowait(error)

    def on_offload_done(
        self, model_id: str, warm: Handle | None, error: str | None, seconds: float
    ) -> None: ...

    def on_lost(self, model_id: str, handle: Handle, reason: str) -> None: ...


def gpus_holding(held: dict[int, int]) -> list[FakeGpu]:
    """Four 24 GB GPUs; the server holds ``held[i]`` bytes on GPU i."""
    return [
        FakeGpu(
            f"GPU-0000000{index}-0000-0000-0000-000000000000",
            f"00000000:{16 + index:02x}:00.0",
            total=24 * GB,
            processes={SERVER_PID: held[index]} if index in held else {},
        )
        for index in range(4)
    ]


def nvml(gpus: list[FakeGpu]) -> NvmlProbe:
    return NvmlProbe(FakeNvml(gpus), environ={}, torch_cuda=lambda: None, pid=1)


def four_gpus(held: dict[int, int]) -> NvmlProbe:
    return nvml(gpus_holding(held))


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


async def test_an_unload_across_devices_is_confirmed_on_all_of_them() -> None:
    """2 GB on cuda:1 and 6 GB on cuda:3, 8 GB booked: the main device alone never
    gives back half of the 8 GB, which would read as memory not coming back."""
    gpus = gpus_holding({1: 2 * GB, 3: 6 * GB})
    reports = LoadReports()
    events: list[PoolEvent] = []
    effects = AsyncEffects(
        {"fake": ServerBackend(gpus)},
        lambda model_id: ModelSpec(id="m", backend="fake", memory=8 * GB, devices=2),
        spawn=asyncio.get_running_loop().create_task,
        publish=events.append,
        release=lambda lease: None,
        clock=asyncio.get_running_loop().time,
        probe=nvml(gpus),
        confirms_release=lambda device: True,
        release_timeout=0.3,
    )
    effects.report_to(reports)
    handle = Handle("m", "cuda:1", pids=(SERVER_PID,), devices=("cuda:1", "cuda:3"))
    effects.start_unload(handle, booked=8 * GB)
    async with asyncio.timeout(5):
        assert await reports.unloaded.get() is None
    assert [event.kind for event in events] == []


async def test_an_unload_across_devices_not_seen_coming_back_is_drift() -> None:
    gpus = gpus_holding({1: 2 * GB, 3: 6 * GB})
    reports = LoadReports()
    events: list[PoolEvent] = []
    effects = AsyncEffects(
        {"fake": ServerBackend()},  # "unloads" without freeing anything
        lambda model_id: ModelSpec(id="m", backend="fake", memory=8 * GB, devices=2),
        spawn=asyncio.get_running_loop().create_task,
        publish=events.append,
        release=lambda lease: None,
        clock=asyncio.get_running_loop().time,
        probe=nvml(gpus),
        confirms_release=lambda device: True,
        release_timeout=0.2,
    )
    effects.report_to(reports)
    handle = Handle("m", "cuda:1", pids=(SERVER_PID,), devices=("cuda:1", "cuda:3"))
    effects.start_unload(handle, booked=8 * GB)
    async with asyncio.timeout(5):
        assert await reports.unloaded.get() is None
    [drift] = events
    assert drift.kind is EventKind.MEMORY_DRIFT
    assert drift.detail["device"] == "cuda:1, cuda:3"
