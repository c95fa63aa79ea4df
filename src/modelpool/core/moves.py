"""Moves: starting the slow work that changes where a model is, with its bookkeeping.

Each method books the change (``Bookings`` on the device, ``WarmTier`` in host RAM),
announces it, and asks ``Effects`` to do it; the matching ``on_*_done`` handler of the
scheduler books the outcome. A move that needs memory not yet physically free (a load
behind its victims, an offload behind the copies dropped for it) is booked now and
started by ``start_ready_*`` once the memory is back. Which models move, and why, is
the scheduler's decision; this only carries it out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelpool.config import ModelSpec
from modelpool.core.bookings import Bookings
from modelpool.core.events import EventKind
from modelpool.core.ports import Effects, Placement
from modelpool.core.record import ModelRecord
from modelpool.core.states import ModelState
from modelpool.core.warm import WarmTier
from modelpool.types import Bytes, DeviceId, ModelId

Emit = Callable[..., None]
"""``emit(kind, record, **detail)``: the scheduler's event publisher."""
MakeRoom = Callable[[Bytes], list[ModelRecord] | None]
"""The warm copies to drop so that ``size`` more bytes fit the tier (see ``WarmTier``)."""


WarmSize = Callable[[ModelSpec], Bytes | None]
"""The host bytes a warm copy of a model will hold, when its backend knows (None: the
bytes it holds on its device)."""


class Moves:
    def __init__(
        self,
        bookings: Bookings,
        warm: WarmTier,
        effects: Effects,
        emit: Emit,
        warm_size: WarmSize = lambda spec: None,
    ) -> None:
        self._bookings = bookings
        self._warm = warm
        self._effects = effects
        self._emit = emit
        self._warm_size = warm_size
        self._why: dict[ModelId, str] = {}
        """Why each booked load's device was chosen, until the load starts."""

    # --- off a device ---------------------------------------------------------------

    def unload(self, record: ModelRecord, reason: str) -> None:
        assert record.handle is not None
        self._bookings.leave(record)
        self._emit(EventKind.UNLOAD_STARTED, record, device=record.device, reason=reason)
        self._effects.start_unload(record.handle, self.booked(record))

    def booked(self, record: ModelRecord) -> Bytes:
        """The bytes the ledger holds for ``record`` over its devices (0 if none)."""
        return self._bookings.booked(record)

    def evict(self, record: ModelRecord, reason: str, make_room: MakeRoom | None) -> None:
        """Free the device: to the warm tier when it can take the model, else unload.
        ``make_room(size)`` names the warm copies to drop for it (None: no warm tier now)."""
        if make_room is None or not self._offload(record, reason, make_room):
            self.unload(record, reason)

    def _offload(self, record: ModelRecord, reason: str, make_room: MakeRoom) -> bool:
        assert record.handle is not None
        assert record.device is not None
        if len(record.devices) > 1:
            return False  # a warm copy comes back to one device; this one spans several
        size = self._warm_size(record.spec)
        if size is None:
            size = self._bookings.ledger.account(record.device).committed[record.model_id]
        if not self._warm.accepts(record, size):
            return False
        drops = make_room(size)
        if drops is None:
            return False
        for victim in drops:
            self.drop(victim, f"warm tier full: room for {record.model_id}")
        self._warm.reserve(record, size)
        self._bookings.leave(record)
        record.offloading = True
        self._emit(
            EventKind.OFFLOAD_STARTED, record, device=record.device, bytes=size, reason=reason
        )
        self._start_offload_if_free(record)
        return True

    def _start_offload_if_free(self, record: ModelRecord) -> None:
        if not self._warm.can_start(record):
            return
        self._warm.start(record)
        assert record.handle is not None
        self._effects.start_offload(record.handle)

    def start_ready_offloads(self) -> None:
        """Host RAM came back: start the offloads that were waiting for it."""
        for record in self._warm.pending():
            self._start_offload_if_free(record)

    def drop(self, record: ModelRecord, reason: str) -> None:
        """Free a WARM model's host copy; it becomes UNLOADED when that is done."""
        assert record.warm is not None
        assert not record.warm_dropping
        record.warm_dropping = True
        record.unload_requested = reason  # named in the WARM_DROPPED event
        self._warm.leave(record)
        self._effects.start_unload(record.warm)

    # --- onto a device --------------------------------------------------------------

    def load(self, record: ModelRecord, placement: Placement, why: str = "") -> None:
        """Book ``record`` where it is placed; it starts once its victims are gone.
        ``why`` the device was chosen goes into the load's event."""
        self._bookings.reserve(record, placement)
        self._why[record.model_id] = why
        self._start_load_if_free(record)

    def _start_load_if_free(self, record: ModelRecord) -> None:
        if not self._bookings.can_start(record):
            return
        self._bookings.start(record)
        device, placement = record.device, record.placement
        assert device is not None
        assert placement is not None
        detail: dict[str, Any] = {"device": device, "bytes": record.estimate}
        if len(placement.devices) > 1:
            detail["devices"] = list(placement.devices)
        why = self._why.pop(record.model_id, "")
        if why:
            detail["placed"] = why
        if record.warm is not None:
            self._emit(EventKind.LOAD_STARTED, record, **detail, restore=True)
            self._effects.start_restore(record.warm, device)
            return
        self._emit(EventKind.LOAD_STARTED, record, **detail)
        self._effects.start_load(record.spec, placement)

    def start_ready_loads(self, device: DeviceId) -> None:
        """Memory came back on ``device``: start the loads that were waiting for it."""
        for record in list(self._bookings.residents(device).values()):
            if record.state is ModelState.LOADING:
                self._start_load_if_free(record)
