"""MemoryLedger: the one place where bytes are added up, per device.

Each device has a ``budget`` and three kinds of entries:

* ``committed``: models resident on the device (READY, or UNLOADING until done);
* ``leaving``: the committed models being unloaded right now;
* ``reserved``: bytes claimed for a model about to load. A reservation may be made
  while the victims it displaces are still leaving; the load itself only *starts*
  once the bytes are physically free.

Two invariants follow, and the tests check both:

* plan:     (committed − leaving) + reserved ≤ budget
* physical: committed + reserved-and-started ≤ budget

A model larger than the whole budget is refused with ``DoesNotFit`` before anything
else happens. A measured footprint larger than its reservation is recorded as it is
(the ledger never lies about what is resident) and shows up as ``over_budget``, which
the scheduler then repairs by evicting.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpool.errors import AccountingError, DoesNotFit
from modelpool.types import Bytes, DeviceId, ModelId


@dataclass(slots=True)
class DeviceAccount:
    """The books of one device. Sums are kept running so reads are O(1)."""

    device: DeviceId
    budget: Bytes
    committed: dict[ModelId, Bytes] = field(default_factory=dict)
    leaving: dict[ModelId, Bytes] = field(default_factory=dict)
    reserved: dict[ModelId, Bytes] = field(default_factory=dict)
    started: dict[ModelId, Bytes] = field(default_factory=dict)
    committed_total: Bytes = 0
    leaving_total: Bytes = 0
    reserved_total: Bytes = 0
    started_total: Bytes = 0
    peak: Bytes = 0
    """The most bytes ever physically held at once (committed + started), since the start."""

    def note_peak(self) -> None:
        self.peak = max(self.peak, self.committed_total + self.started_total)

    @property
    def planned_free(self) -> Bytes:
        """Bytes a new plan may claim, counting what leaving models will give back."""
        return self.budget - (self.committed_total - self.leaving_total) - self.reserved_total

    @property
    def physical_free(self) -> Bytes:
        """Bytes free right now: nothing resident or loading holds them."""
        return self.budget - self.committed_total - self.started_total

    def fits_ever(self, need: Bytes) -> bool:
        """Whether ``need`` bytes could fit here at all: with everything else gone."""
        return need <= self.budget

    def fits_now(self, need: Bytes) -> bool:
        """Whether ``need`` bytes fit in the room the plan leaves free now (nothing always
        does, even over budget: a remote model books no bytes)."""
        return need <= max(0, self.planned_free)

    @property
    def over_budget(self) -> Bytes:
        """How far the plan exceeds the budget (only after an under-estimated load)."""
        return max(0, -self.planned_free)


class MemoryLedger:
    """Budgets and bookings for every device the pool may place models on."""

    def __init__(self, budgets: Mapping[DeviceId, Bytes]) -> None:
        self._accounts = {d: DeviceAccount(d, int(b)) for d, b in budgets.items()}

    def __iter__(self) -> Iterator[DeviceAccount]:
        return iter(self._accounts.values())

    def __contains__(self, device: object) -> bool:
        return device in self._accounts

    def devices(self) -> list[DeviceId]:
        return list(self._accounts)

    def account(self, device: DeviceId) -> DeviceAccount:
        try:
            return self._accounts[device]
        except KeyError:
            known = ", ".join(self._accounts) or "none"
            raise AccountingError(f"no budget for device {device!r} (budgets: {known})") from None

    def set_budget(self, device: DeviceId, budget: Bytes) -> None:
        """Move a device's usable budget (others' use changed). A plan that no longer
        fits shows up as ``over_budget``, for the scheduler to repair."""
        self.account(device).budget = int(budget)

    def check_fits(self, model_id: ModelId, device: DeviceId, need: Bytes) -> None:
        """Refuse, before anything is evicted, a model bigger than the whole budget."""
        account = self.account(device)
        if not account.fits_ever(need):
            raise DoesNotFit(model_id, device, need, account.budget)

    def reserve(self, device: DeviceId, model_id: ModelId, need: Bytes) -> None:
        acc = self.account(device)
        if model_id in acc.reserved or model_id in acc.committed:
            raise AccountingError(f"{model_id!r} is already booked on {device}")
        if not acc.fits_now(need):
            raise AccountingError(
                f"reserving {need} B for {model_id!r} on {device} exceeds the plan "
                f"({acc.planned_free} B free)"
            )
        acc.reserved[model_id] = need
        acc.reserved_total += need

    def can_start(self, device: DeviceId, model_id: ModelId) -> bool:
        """Whether the bytes reserved for ``model_id`` are physically free yet."""
        acc = self.account(device)
        return acc.reserved[model_id] <= max(0, acc.physical_free)

    def start(self, device: DeviceId, model_id: ModelId) -> None:
        acc = self.account(device)
        if not self.can_start(device, model_id):
            raise AccountingError(f"cannot start loading {model_id!r}: memory not free yet")
        acc.started[model_id] = acc.reserved[model_id]
        acc.started_total += acc.reserved[model_id]
        acc.note_peak()

    def cancel(self, device: DeviceId, model_id: ModelId) -> None:
        """Drop a reservation (the load failed or was abandoned)."""
        acc = self.account(device)
        acc.reserved_total -= acc.reserved.pop(model_id)
        acc.started_total -= acc.started.pop(model_id, 0)

    def commit(self, device: DeviceId, model_id: ModelId, actual: Bytes) -> None:
        """Turn a reservation into residency, at the size actually measured."""
        self.cancel(device, model_id)
        acc = self.account(device)
        acc.committed[model_id] = actual
        acc.committed_total += actual
        acc.note_peak()

    def mark_leaving(self, device: DeviceId, model_id: ModelId) -> None:
        acc = self.account(device)
        size = acc.committed[model_id]
        if model_id in acc.leaving:
            raise AccountingError(f"{model_id!r} is already leaving {device}")
        acc.leaving[model_id] = size
        acc.leaving_total += size

    def release(self, device: DeviceId, model_id: ModelId) -> None:
        """The model is gone from the device; its bytes are free again."""
        acc = self.account(device)
        acc.committed_total -= acc.committed.pop(model_id)
        acc.leaving_total -= acc.leaving.pop(model_id, 0)

    def snapshot(self) -> dict[DeviceId, dict[str, Any]]:
        return {
            acc.device: {
                "budget": acc.budget,
                "committed": acc.committed_total,
                "reserved": acc.reserved_total,
                "leaving": acc.leaving_total,
                "free": max(0, acc.planned_free),
                "peak": acc.peak,
            }
            for acc in self._accounts.values()
        }

    def is_empty(self) -> bool:
        return all(not (a.committed or a.reserved) for a in self._accounts.values())
