"""Where a model can go and what must leave first: pure functions of the books.

``plan_load`` looks at one device and answers with one of three outcomes:

* ``Go``: load now, after evicting ``victims`` (possibly none);
* ``Wait``: the memory is held by things that will let go (leases, loads in flight);
  ``drainable`` lists the leased models that could be drained if the wait starves;
* ``Impossible``: what holds the memory never lets go (pinned models), so fail now.

Nothing here mutates a record or the ledger; the scheduler carries the plan out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from modelpool.core.ledger import DeviceAccount
from modelpool.core.ports import Candidate, EvictionContext, EvictionPolicy, Placement
from modelpool.core.record import ModelRecord
from modelpool.core.states import ModelState
from modelpool.errors import CapacityError, Holder, InsufficientMemory
from modelpool.types import Bytes, DeviceId, ModelId


@dataclass(frozen=True, slots=True)
class Go:
    device: DeviceId
    victims: list[ModelRecord]
    spans: Placement | None = None
    """Every device and share when the model spreads over several (None: ``device``)."""
    why: str = ""
    """Why placement chose this device (named in the load's event)."""

    @property
    def placement(self) -> Placement:
        return self.spans if self.spans is not None else Placement.one(self.device)


@dataclass(frozen=True, slots=True)
class Wait:
    device: DeviceId
    holders: list[Holder]
    drainable: list[ModelRecord]
    shortfall: Bytes
    hold: tuple[DeviceId, ...] = ()
    """Every device a model spread over several waits for (empty: just ``device``):
    once it starves, no other load may take their room."""


@dataclass(frozen=True, slots=True)
class Impossible:
    error: CapacityError


Plan = Go | Wait | Impossible


def booked_bytes(account: DeviceAccount, record: ModelRecord) -> Bytes:
    mid = record.model_id
    return account.committed.get(mid) or account.reserved.get(mid, 0)


def holder(account: DeviceAccount, record: ModelRecord, why: str = "") -> Holder:
    if not why:
        if record.pinned and record.state is ModelState.READY:
            why = "pinned"
        elif record.leases:
            why = "in use by " + ", ".join(record.task_ids)
        else:
            why = str(record.state)
    return Holder(record.model_id, booked_bytes(account, record), why)


def plan_load(
    target: ModelRecord,
    account: DeviceAccount,
    residents: Mapping[ModelId, ModelRecord],
    policy: EvictionPolicy,
    now: float,
    demand: Mapping[str, float],
    need: Bytes | None = None,
    group_members: Iterable[ModelRecord] | None = None,
) -> Plan:
    """Plan loading ``need`` bytes of ``target`` (all of it by default) on ``account``'s
    device, where ``residents`` are booked. Members of its exclusive group must leave
    first: those among ``residents``, or ``group_members`` when the group holds box-wide.

    A remote model (``spec.remote``) books nothing: it goes at once, displacing nobody,
    and it is never a victim or a holder of anyone else's plan."""
    if target.spec.remote:
        return Go(account.device, [])
    if need is None:
        need = target.estimate
    group = target.spec.group
    forced: list[ModelRecord] = []
    busy_members: list[ModelRecord] = []
    members = (
        [r for r in (residents.values() if group_members is None else group_members)
         if r.spec.group == group]
        if group else []
    )  # fmt: skip
    for other in members:
        if other is target:
            continue
        if other.state is ModelState.UNLOADING:
            continue  # already leaving; planned_free counts it as gone
        if other.pinned:
            why = f"pinned member of exclusive group {group!r}"
            error = InsufficientMemory(
                target.model_id,
                account.device,
                need,
                max(0, account.planned_free),
                [holder(account, other, why)],
            )
            return Impossible(error)
        if other.leases or other.state is not ModelState.READY:
            busy_members.append(other)
        else:
            forced.append(other)
    if busy_members:
        holders = [holder(account, r) for r in busy_members]
        why_group = [r for r in busy_members if r.leases]
        return Wait(account.device, holders, why_group, need)

    free = account.planned_free + sum(booked_bytes(account, r) for r in forced)
    if free >= need:
        return Go(account.device, forced)

    # One pass builds the candidates; victims are then found by id among the residents
    # and checked again, so an id a faulty policy made up or repeated is ignored.
    taken = {r.spec.id for r in forced}
    candidates = _candidates(residents, account, target, taken)
    chosen: list[ModelRecord] = []
    if candidates:
        context = EvictionContext(need=need - free, now=now, demand=demand)
        for model_id in policy.victims(candidates, context):
            record = residents.get(model_id)
            if record is None or model_id in taken or not _evictable(record, target):
                continue
            taken.add(model_id)
            chosen.append(record)
            free += booked_bytes(account, record)
            if free >= need:
                return Go(account.device, forced + chosen)

    # Not enough even with every idle model gone: who holds the rest, and will they let go?
    stuck = [
        r
        for r in residents.values()
        if r is not target
        and r.spec.id not in taken
        and r.state is not ModelState.UNLOADING
        and not r.spec.remote
    ]
    holders = [holder(account, r) for r in stuck]
    drainable = [r for r in stuck if r.state is ModelState.READY and r.leases and not r.pinned]
    will_free = sum(
        booked_bytes(account, r) for r in stuck if not (r.pinned and r.state is ModelState.READY)
    )
    if free + will_free >= need:
        return Wait(account.device, holders, drainable, need - free)
    error = InsufficientMemory(
        target.model_id, account.device, need, max(0, account.planned_free), holders
    )
    return Impossible(error)


def _candidates(
    residents: Mapping[ModelId, ModelRecord],
    account: DeviceAccount,
    target: ModelRecord,
    taken: set[ModelId],
) -> list[Candidate]:
    """What the policy may evict on this device: READY, idle, unpinned, not remote,
    each at its share here (``_on_device``). Written out as one loop, with
    ``booked_bytes`` inlined: it runs once per resident model for every plan."""
    ready = ModelState.READY
    committed, reserved = account.committed, account.reserved
    found: list[Candidate] = []
    for r in residents.values():
        if r.state is not ready or r.leases or r.pinned or r is target:
            continue
        spec = r.spec
        if spec.id in taken or spec.remote:
            continue
        candidate = r.candidate()
        mid = candidate.model_id
        share = committed.get(mid) or reserved.get(mid, 0)
        found.append(candidate if share == candidate.bytes else candidate._replace(bytes=share))
    return found


def _on_device(candidate: Candidate, share: Bytes) -> Candidate:
    """``candidate`` as one device sees it: a model spread over several devices frees
    only its share here, and the policy must count that, not its whole size (counting
    the whole, it stopped short, and the plan waited on idle models that never leave)."""
    return candidate if share == candidate.bytes else candidate._replace(bytes=share)


def _evictable(record: ModelRecord, target: ModelRecord) -> bool:
    return (
        record.state is ModelState.READY
        and not record.leases
        and not record.pinned
        and record is not target
    )


def choose_drain(
    wait: Wait,
    policy: EvictionPolicy,
    now: float,
    demand: Mapping[str, float],
) -> list[ModelRecord]:
    """Which leased models to stop granting to, so a starving request gets its memory."""
    if not wait.drainable:
        return []
    by_id = {r.model_id: r for r in wait.drainable}
    context = EvictionContext(need=wait.shortfall, now=now, demand=demand)
    shares = {h.model_id: h.bytes for h in wait.holders}  # what each frees on the device
    candidates = [_on_device(r.candidate(), shares.get(r.model_id, r.estimate))
                  for r in wait.drainable]  # fmt: skip
    ids = policy.victims(candidates, context)
    return [by_id[i] for i in dict.fromkeys(ids) if i in by_id]
