"""Fakes for driving the scheduler without an event loop: a manual clock and a recorder.

Named as fakes on purpose. Unit tests call the scheduler's handlers directly and read
what it asked for from ``RecordingEffects``; a simulator can do the same on a virtual
clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelpool.config import ModelSpec
from modelpool.core.events import EventKind, PoolEvent
from modelpool.core.lease import Lease, Waiter
from modelpool.core.ports import HOST, Handle, Placement
from modelpool.errors import ModelPoolError
from modelpool.types import Bytes, DeviceId, ModelId


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class RecordingEffects:
    """Records every effect the scheduler asks for, in order, and does nothing else."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    loads: list[tuple[ModelId, DeviceId]] = field(default_factory=list)
    unloads: list[ModelId] = field(default_factory=list)
    offloads: list[ModelId] = field(default_factory=list)
    restores: list[tuple[ModelId, DeviceId]] = field(default_factory=list)
    granted: dict[int, Lease | None] = field(default_factory=dict)
    rejected: dict[int, ModelPoolError] = field(default_factory=dict)
    events: list[PoolEvent] = field(default_factory=list)
    handles: dict[ModelId, Handle] = field(default_factory=dict)
    placements: dict[ModelId, Placement] = field(default_factory=dict)
    """The last placement each model was loaded with."""

    def start_load(self, spec: ModelSpec, placement: Placement) -> None:
        self.calls.append(("load", spec.id))
        self.loads.append((spec.id, placement.device))
        self.placements[spec.id] = placement

    def start_unload(self, handle: Handle, booked: Bytes = 0) -> None:
        self.calls.append(("unload", handle.model_id))
        self.unloads.append(handle.model_id)

    def start_offload(self, handle: Handle) -> None:
        self.calls.append(("offload", handle.model_id))
        self.offloads.append(handle.model_id)

    def start_restore(self, warm: Handle, device: DeviceId) -> None:
        self.calls.append(("restore", warm.model_id))
        self.restores.append((warm.model_id, device))

    def grant(self, waiter: Waiter, lease: Lease | None) -> None:
        self.calls.append(("grant", waiter.waiter_id))
        self.granted[waiter.waiter_id] = lease

    def reject(self, waiter: Waiter, error: ModelPoolError) -> None:
        self.calls.append(("reject", waiter.waiter_id))
        self.rejected[waiter.waiter_id] = error

    def emit(self, event: PoolEvent) -> None:
        self.events.append(event)

    def handle_for(self, model_id: ModelId, device: DeviceId = "cpu") -> Handle:
        """A handle as a backend would return it, remembered for later checks."""
        handle = Handle(model_id, device, obj=f"<{model_id}>")
        self.handles[model_id] = handle
        return handle

    def warm_handle_for(self, model_id: ModelId, footprint: int | None = None) -> Handle:
        """A warm handle as ``offload`` would return it."""
        return Handle(model_id, HOST, obj=f"<{model_id} in RAM>", footprint=footprint)

    def kinds(self, kind: EventKind) -> list[PoolEvent]:
        return [e for e in self.events if e.kind is kind]

    def granted_order(self) -> list[Any]:
        """Waiter ids in the order they were granted."""
        return [arg for name, arg in self.calls if name == "grant"]
