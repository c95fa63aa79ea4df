"""FakeBackend: loads nothing, with a scripted footprint, latency and failures.

Named as a fake on purpose: it is for unit tests of the pool's decisions, the demo and
``--dry-run``, never for serving. Options (flattened in a model's YAML entry)::

    test-a: {backend: fake, memory: 4GB, footprint: 4.2GB, load_seconds: 0.5, fail_loads: 1}

It has a (pretend) warm tier, so a pool with a ``warm_budget`` offloads fake models.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from modelpool.config import ModelSpec
from modelpool.core.ports import HOST, Handle, Placement
from modelpool.types import Bytes, DeviceId, ModelId
from modelpool.units import parse_size


class FakeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    footprint: Annotated[
        Bytes | None, BeforeValidator(lambda v: v if v is None else parse_size(v))
    ] = None
    """Bytes the load reports as measured (default: none, the estimate stands)."""
    load_seconds: float = Field(0.0, ge=0)
    unload_seconds: float = Field(0.0, ge=0)
    fail_loads: int = Field(0, ge=0)
    """The first N loads of this model fail."""
    fail_message: str = "scripted load failure"
    fail_unloads: int = Field(0, ge=0)
    offload_seconds: float = Field(0.0, ge=0)
    restore_seconds: float = Field(0.0, ge=0)
    fail_requests: float = Field(0.0, ge=0, le=1)
    """This fraction of calls to the loaded model raise ``FakeRequestError``, evenly
    spread (0.3: calls 4, 7, 10, ... of every ten fail three times)."""


class FakeRequestError(RuntimeError):
    """A call to a fake model failed because its options said so."""


class FakeModel:
    """The 'loaded object' of a fake model: echoes prompts, so a demo shows who answered."""

    def __init__(self, model_id: ModelId, device: DeviceId, fail_requests: float = 0.0) -> None:
        self.model_id, self.device = model_id, device
        self.fail_requests = fail_requests
        self.calls = 0

    def __call__(self, prompt: str) -> str:
        self.calls += 1
        # Exactly fail_requests of every call so far, spread out: no luck involved.
        if int(self.calls * self.fail_requests) > int((self.calls - 1) * self.fail_requests):
            raise FakeRequestError(f"{self.model_id}: scripted request failure")
        return f"[{self.model_id}@{self.device}] {prompt}"


class FakeBackend:
    """A scripted backend that records what it was asked to do."""

    options_model = FakeOptions

    def __init__(self) -> None:
        self.loads: list[ModelId] = []
        self.unloads: list[ModelId] = []
        self.resident: set[ModelId] = set()
        self.warm: set[ModelId] = set()
        """Models whose (pretend) weights are held in host RAM."""
        self.restores: list[ModelId] = []
        self.concurrent_loads = 0
        self.peak_concurrent_loads = 0
        self._gates: dict[ModelId, asyncio.Event] = {}
        self._failed_loads: Counter[ModelId] = Counter()
        self._crashes: dict[ModelId, asyncio.Future[str]] = {}
        self._failed_unloads: Counter[ModelId] = Counter()

    def estimate(self, spec: ModelSpec) -> Bytes | None:
        options = FakeOptions.model_validate(spec.options)
        return spec.memory if spec.memory is not None else options.footprint

    def gate(self, model_id: ModelId) -> asyncio.Event:
        """Make loads of ``model_id`` wait until the returned event is set (tests)."""
        return self._gates.setdefault(model_id, asyncio.Event())

    async def load(self, spec: ModelSpec, device: DeviceId) -> Handle:
        options = FakeOptions.model_validate(spec.options)
        self.loads.append(spec.id)
        self.concurrent_loads += 1
        self.peak_concurrent_loads = max(self.peak_concurrent_loads, self.concurrent_loads)
        try:
            gate = self._gates.get(spec.id)
            if gate is not None:
                await gate.wait()
            if options.load_seconds:
                await asyncio.sleep(options.load_seconds)
            if self._failed_loads[spec.id] < options.fail_loads:
                self._failed_loads[spec.id] += 1
                raise RuntimeError(options.fail_message)
        finally:
            self.concurrent_loads -= 1
        self.resident.add(spec.id)
        # Only a scripted footprint counts as "measured"; otherwise the estimate stands.
        footprint = options.footprint
        return Handle(
            spec.id,
            device,
            obj=FakeModel(spec.id, device, options.fail_requests),
            footprint=footprint,
            native=options,
        )

    async def load_across(self, spec: ModelSpec, placement: Placement) -> Handle:
        """A model spread over several devices (``devices: 2``): loaded as on one, the
        handle naming them all."""
        handle = await self.load(spec, placement.device)
        handle.devices = placement.devices
        return handle

    def crash(self, model_id: ModelId, reason: str = "scripted crash") -> None:
        """Make the loaded ``model_id`` die on its own, as a process that exits would."""
        self.resident.discard(model_id)
        crash = self._crashes.get(model_id)
        if crash is not None and not crash.done():
            crash.set_result(reason)

    async def wait_closed(self, handle: Handle) -> str:
        """Returns when ``crash()`` is called for this model."""
        crash: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._crashes[handle.model_id] = crash
        try:
            return await crash
        finally:
            if self._crashes.get(handle.model_id) is crash:
                del self._crashes[handle.model_id]

    async def offload(self, handle: Handle) -> Handle:
        """The warm tier: pretend to move the weights to host RAM."""
        options: FakeOptions = handle.native
        if options.offload_seconds:
            await asyncio.sleep(options.offload_seconds)
        self.resident.discard(handle.model_id)
        self.warm.add(handle.model_id)
        return Handle(handle.model_id, HOST, obj=handle.obj, footprint=handle.footprint,
                      native=options)  # fmt: skip

    async def restore(self, warm: Handle, device: DeviceId) -> Handle:
        options: FakeOptions = warm.native
        self.restores.append(warm.model_id)
        if options.restore_seconds:
            await asyncio.sleep(options.restore_seconds)
        self.warm.discard(warm.model_id)
        self.resident.add(warm.model_id)
        model = FakeModel(warm.model_id, device, options.fail_requests)
        return Handle(warm.model_id, device, obj=model, footprint=warm.footprint, native=options)

    async def unload(self, handle: Handle) -> None:
        """Unloads a model, or drops its warm copy (a handle on ``HOST``)."""
        options: FakeOptions = handle.native
        self.unloads.append(handle.model_id)
        if options.unload_seconds:
            await asyncio.sleep(options.unload_seconds)
        if handle.device == HOST:
            self.warm.discard(handle.model_id)
            return
        self.resident.discard(handle.model_id)
        if self._failed_unloads[handle.model_id] < options.fail_unloads:
            self._failed_unloads[handle.model_id] += 1
            raise RuntimeError("scripted unload failure")
