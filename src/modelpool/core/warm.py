"""The warm tier: host RAM that keeps evicted in-process models restorable.

When the policy evicts a model whose backend can ``offload``, and the pool has a
``warm_budget``, the model's weights move to host RAM instead of being thrown away
(READY → UNLOADING → WARM); the next request restores them (WARM → LOADING → READY),
which costs a host-to-device copy instead of a cold load from disk. Warm copies have
their own ledger (one account, ``HOST``) with the same rules as a device: a copy is
*reserved* before the offload is planned and *started* only when its bytes are
physically free, so colder copies dropped to make room are gone first. Which copies
to drop is decided by the pool's policy, over the WARM models, exactly as on a device.

Owned by the scheduler; nothing else calls it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from modelpool.core.ledger import MemoryLedger
from modelpool.core.ports import HOST, EvictionContext, EvictionPolicy
from modelpool.core.record import ModelRecord
from modelpool.core.states import ModelState
from modelpool.types import Bytes, ModelId


class WarmTier:
    def __init__(self, budget: Bytes, offloadable: Iterable[ModelId] = ()) -> None:
        self.ledger = MemoryLedger({HOST: budget})
        self.account = self.ledger.account(HOST)
        self._offloadable = set(offloadable)
        self._copies: dict[ModelId, ModelRecord] = {}
        """Models with bytes on the warm account: offloading, WARM, or restoring."""

    def __iter__(self) -> Iterator[ModelRecord]:
        return iter(list(self._copies.values()))

    def allow_offload(self, model_id: ModelId) -> None:
        self._offloadable.add(model_id)

    def forget(self, model_id: ModelId) -> None:
        self._offloadable.discard(model_id)

    def accepts(self, record: ModelRecord, size: Bytes) -> bool:
        """Whether ``record`` may go warm at all: its backend can offload and it fits."""
        return record.model_id in self._offloadable and size > 0 and self.account.fits_ever(size)

    def make_room(
        self,
        size: Bytes,
        policy: EvictionPolicy,
        now: float,
        demand: Mapping[str, float],
        keep: ModelRecord | None = None,
    ) -> list[ModelRecord] | None:
        """The WARM copies to drop so that ``size`` fits the plan ([] if it fits now),
        or None when dropping every idle copy would still not make room. ``keep``'s
        copy is never chosen: it is about to be restored, the room is made for it."""
        need = size - self.account.planned_free
        if need <= 0:
            return []
        idle = {r.model_id: r for r in self._copies.values() if droppable(r) and r is not keep}
        committed = self.account.committed
        if sum(committed[m] for m in idle) < need:
            return None
        candidates = [r.candidate()._replace(bytes=committed[m]) for m, r in idle.items()]
        victims: list[ModelRecord] = []
        freed = 0
        for model_id in policy.victims(candidates, EvictionContext(need, now, demand)):
            if freed >= need:
                break
            victims.append(idle[model_id])
            freed += committed[model_id]
        # A policy must return enough when enough exists; make sure of it regardless.
        for model_id, record in idle.items():
            if freed >= need:
                break
            if record not in victims:
                victims.append(record)
                freed += committed[model_id]
        return victims

    def reserve(self, record: ModelRecord, size: Bytes) -> None:
        """Claim host bytes for an offload about to be planned."""
        self.ledger.reserve(HOST, record.model_id, size)
        self._copies[record.model_id] = record

    def can_start(self, record: ModelRecord) -> bool:
        """Reserved, not started, and the bytes are physically free (drops are done)."""
        model_id = record.model_id
        return (
            model_id in self.account.reserved
            and model_id not in self.account.started
            and self.ledger.can_start(HOST, model_id)
        )

    def start(self, record: ModelRecord) -> None:
        self.ledger.start(HOST, record.model_id)

    def pending(self) -> list[ModelRecord]:
        """Offloads reserved and waiting for host bytes to come free."""
        return [self._copies[m] for m in self.account.reserved if m not in self.account.started]

    def commit(self, record: ModelRecord, size: Bytes) -> None:
        """The offload is done: the copy holds ``size`` bytes of host RAM."""
        self.ledger.commit(HOST, record.model_id, size)

    def cancel(self, record: ModelRecord) -> None:
        """The offload failed: give its reservation back."""
        self.ledger.cancel(HOST, record.model_id)
        del self._copies[record.model_id]

    def leave(self, record: ModelRecord) -> None:
        """The copy is being dropped: its bytes count until the drop is done."""
        self.ledger.mark_leaving(HOST, record.model_id)

    def release(self, record: ModelRecord) -> None:
        """The copy is gone (dropped, or restored to a device)."""
        self.ledger.release(HOST, record.model_id)
        del self._copies[record.model_id]

    def holds(self, record: ModelRecord) -> bool:
        return record.model_id in self._copies

    def size_of(self, record: ModelRecord) -> Bytes:
        """Bytes booked for ``record``'s copy (committed, or reserved while offloading)."""
        model_id = record.model_id
        return self.account.committed.get(model_id) or self.account.reserved.get(model_id, 0)


def droppable(record: ModelRecord) -> bool:
    """A WARM copy nothing is using: not being restored, not already being dropped."""
    return record.state is ModelState.WARM and not record.warm_dropping
