"""Bookings: where each model is, kept in step with its state and the ledger.

Every change of placement goes through one method here, which moves the model's
state, its ledger entry and the per-device index together, so the three cannot drift
apart (the property tests check that they never do):

    reserve  UNLOADED/FAILED/WARM → LOADING   bytes reserved on the device
    start    LOADING (load begins)            reserved bytes are physically free
    commit   LOADING → READY                  reserved → committed, at the measured size
    abandon  LOADING → FAILED/UNLOADED        reservation dropped
    leave    READY → UNLOADING                committed bytes marked leaving
    release  READY/UNLOADING → UNLOADED/FAILED   committed bytes freed

Owned by the scheduler; nothing else calls it.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelpool.core.ledger import MemoryLedger
from modelpool.core.record import ModelRecord
from modelpool.core.states import ModelState
from modelpool.types import Bytes, DeviceId, ModelId


class Bookings:
    def __init__(self, ledger: MemoryLedger) -> None:
        self.ledger = ledger
        self._booked: dict[DeviceId, dict[ModelId, ModelRecord]] = {
            device: {} for device in ledger.devices()
        }

    def residents(self, device: DeviceId) -> Mapping[ModelId, ModelRecord]:
        """Models booked on ``device`` (loading, ready or unloading), by id."""
        return self._booked[device]

    def reserve(self, record: ModelRecord, device: DeviceId) -> None:
        self.ledger.reserve(device, record.model_id, record.estimate)
        record.set_state(ModelState.LOADING)
        record.device = device
        self._booked[device][record.model_id] = record

    def can_start(self, record: ModelRecord) -> bool:
        """Its bytes are free, and no other member of its exclusive group is still
        on the device ("one heavy model at a time", even while the other unloads)."""
        device = _device(record)
        if record.load_started or not self.ledger.can_start(device, record.model_id):
            return False
        group = record.spec.group
        return group is None or not any(
            other.spec.group == group and other is not record
            and (other.state is not ModelState.LOADING or other.load_started)
            for other in self._booked[device].values()
        )  # fmt: skip

    def start(self, record: ModelRecord) -> None:
        self.ledger.start(_device(record), record.model_id)
        record.load_started = True

    def commit(self, record: ModelRecord, actual: Bytes) -> None:
        self.ledger.commit(_device(record), record.model_id, actual)
        record.load_started = False
        record.set_state(ModelState.READY)

    def abandon(self, record: ModelRecord, to: ModelState) -> None:
        """A load that failed (``to`` FAILED) or was given up (UNLOADED)."""
        self.ledger.cancel(_device(record), record.model_id)
        record.load_started = False
        record.set_state(to)
        self._unbook(record)

    def leave(self, record: ModelRecord) -> None:
        record.set_state(ModelState.UNLOADING)
        self.ledger.mark_leaving(_device(record), record.model_id)

    def release(self, record: ModelRecord, to: ModelState) -> None:
        """The model is gone from its device: unloaded (or failed, or died)."""
        self.ledger.release(_device(record), record.model_id)
        record.set_state(to)
        record.handle = None
        self._unbook(record)

    def _unbook(self, record: ModelRecord) -> None:
        del self._booked[_device(record)][record.model_id]
        record.device = None


def _device(record: ModelRecord) -> DeviceId:
    assert record.device is not None, f"{record.model_id!r} is not booked on any device"
    return record.device
