"""Bookings: where each model is, kept in step with its state and the ledger.

Every change of placement goes through one method here, which moves the model's
state, its ledger entries and the per-device index together, so the three cannot drift
apart (the property tests check that they never do):

    reserve  UNLOADED/FAILED/WARM → LOADING   bytes reserved on every device it uses
    start    LOADING (load begins)            reserved bytes are physically free
    commit   LOADING → READY                  reserved → committed, at the measured size
    abandon  LOADING → FAILED/UNLOADED        reservation dropped
    leave    READY → UNLOADING                committed bytes marked leaving
    release  READY/UNLOADING → UNLOADED/FAILED   committed bytes freed

A model spread over several devices (``Placement``) is booked on each of them in one
step, at its share of the bytes, and released from all of them together.

Owned by the scheduler; nothing else calls it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from modelpool.core.ledger import MemoryLedger
from modelpool.core.ports import Placement
from modelpool.core.record import ModelRecord
from modelpool.core.states import ModelState
from modelpool.types import Bytes, DeviceId, ModelId


def shares(total: Bytes, split: Sequence[float]) -> list[Bytes]:
    """``total`` bytes cut by ``split``; the parts add up to ``total`` exactly."""
    weight = sum(split)
    parts = [int(total * share / weight) for share in split[:-1]]
    return [*parts, total - sum(parts)]


class Bookings:
    def __init__(
        self, ledger: MemoryLedger, group_scope: Literal["device", "box"] = "device"
    ) -> None:
        self.ledger = ledger
        self.group_scope = group_scope
        self._booked: dict[DeviceId, dict[ModelId, ModelRecord]] = {
            device: {} for device in ledger.devices()
        }

    def residents(self, device: DeviceId) -> Mapping[ModelId, ModelRecord]:
        """Models booked on ``device`` (loading, ready or unloading), by id."""
        return self._booked[device]

    def reserve(self, record: ModelRecord, placement: Placement) -> None:
        parts = shares(record.estimate, placement.split)
        done: list[DeviceId] = []
        try:
            for device, need in zip(placement.devices, parts, strict=True):
                self.ledger.reserve(device, record.model_id, need)
                done.append(device)
        except BaseException:
            for device in done:  # all of it or none of it
                self.ledger.cancel(device, record.model_id)
            raise
        record.set_state(ModelState.LOADING)
        record.device = placement.device
        record.placement = placement
        for device in placement.devices:
            self._booked[device][record.model_id] = record

    def can_start(self, record: ModelRecord) -> bool:
        """Its bytes are free on every device it uses, and no other member of its
        exclusive group is still there ("one heavy model at a time", even while the
        other unloads)."""
        if record.load_started:
            return False
        devices = _devices(record)
        if not all(self.ledger.can_start(d, record.model_id) for d in devices):
            return False
        group = record.spec.group
        if group is None:
            return True
        where = self._booked if self.group_scope == "box" else devices
        return not any(
            other.spec.group == group and other is not record
            and (other.state is not ModelState.LOADING or other.load_started)
            for device in where
            for other in self._booked[device].values()
        )  # fmt: skip

    def start(self, record: ModelRecord) -> None:
        for device in _devices(record):
            self.ledger.start(device, record.model_id)
        record.load_started = True

    def commit(self, record: ModelRecord, actual: Bytes) -> None:
        placement = _placement(record)
        parts = shares(actual, placement.split)
        for device, part in zip(placement.devices, parts, strict=True):
            self.ledger.commit(device, record.model_id, part)
        record.load_started = False
        record.set_state(ModelState.READY)

    def abandon(self, record: ModelRecord, to: ModelState) -> None:
        """A load that failed (``to`` FAILED) or was given up (UNLOADED)."""
        for device in _devices(record):
            self.ledger.cancel(device, record.model_id)
        record.load_started = False
        record.set_state(to)
        self._unbook(record)

    def leave(self, record: ModelRecord) -> None:
        record.set_state(ModelState.UNLOADING)
        for device in _devices(record):
            self.ledger.mark_leaving(device, record.model_id)

    def release(self, record: ModelRecord, to: ModelState) -> None:
        """The model is gone from its devices: unloaded (or failed, or died)."""
        for device in _devices(record):
            self.ledger.release(device, record.model_id)
        record.set_state(to)
        record.handle = None
        self._unbook(record)

    def booked(self, record: ModelRecord) -> Bytes:
        """The bytes committed for ``record`` over all its devices (0 if none)."""
        return sum(
            self.ledger.account(d).committed.get(record.model_id, 0)
            for d in record.devices
            if d in self.ledger
        )

    def _unbook(self, record: ModelRecord) -> None:
        for device in _devices(record):
            del self._booked[device][record.model_id]
        record.device = None
        record.placement = None


def _placement(record: ModelRecord) -> Placement:
    assert record.placement is not None, f"{record.model_id!r} is not booked on any device"
    return record.placement


def _devices(record: ModelRecord) -> tuple[DeviceId, ...]:
    return _placement(record).devices
