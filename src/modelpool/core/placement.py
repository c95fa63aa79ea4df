"""Placement: which device, or set of devices, a model goes on. A pure decision.

For every device the model could use, the scheduler's ``plan_on(account, need)`` says
what loading there takes (``core.planner``: go now after these victims, wait, or never).
Placement then picks the device whose room costs least to make:

1. no eviction beats any eviction;
2. among evictions, the least *reload cost* of the victims the policy chose there
   (the policy's own ``reload_cost`` when it has one; else each victim's measured load
   seconds times the chance it is wanted again within a minute, from how long it has
   been idle: ``modelpool.reuse``);
3. ties by best fit, the least room left over, so large holes stay for large models;
4. then the order the devices are configured in.

A model spread over several devices (``devices: 2``, or a list) is planned on each with
its share of the bytes: a list must go where it says; a count takes the cheapest
devices by the same order. Its split is the config's, or by the room on each chosen
device. It goes only when every part can go; otherwise it waits (or is refused) as a
whole.

No I/O, no logging, no clock: the same books give the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

from modelpool.core.bookings import shares
from modelpool.core.ledger import DeviceAccount
from modelpool.core.planner import Go, Impossible, Plan, Wait, booked_bytes
from modelpool.core.ports import Candidate, EvictionPolicy, Placement
from modelpool.core.record import ModelRecord
from modelpool.reuse import reuse_chance
from modelpool.types import Bytes, DeviceId
from modelpool.units import format_size

PlanOn = Callable[[DeviceAccount, Bytes], Plan]
"""What loading the model takes on one device, for ``need`` of its bytes there."""


@runtime_checkable
class PricesReloads(Protocol):
    """A policy that says what bringing a victim back would cost (lower: cheaper)."""

    def reload_cost(self, candidate: Candidate, now: float) -> float: ...


def reload_cost(policy: EvictionPolicy, candidate: Candidate, now: float) -> float:
    """What evicting ``candidate`` costs: the policy's price, or by default its load
    seconds times the chance it is wanted again soon (``default_price``)."""
    return pricer(policy)(candidate, now)


def default_price(candidate: Candidate, now: float) -> float:
    """Load seconds times ``reuse_chance`` of the idle time. Recency, not the decayed
    request count (the price before): a model idle for minutes costs little to evict
    whatever it served an hour ago. On the placement benchmark's replays (seeds 0-39)
    this took the fragmentation workload from 1.22x less wait than most room to 1.49x
    and kept every other workload at or above most room."""
    return candidate.load_seconds * reuse_chance(now - candidate.last_used)


def pricer(policy: EvictionPolicy) -> Callable[[Candidate, float], float]:
    """The policy's ``reload_cost``, or ``default_price`` (looked up once per decision:
    a protocol check costs more than the price itself)."""
    return policy.reload_cost if isinstance(policy, PricesReloads) else default_price


def _rank(
    go: Go,
    account: DeviceAccount,
    need: Bytes,
    policy: EvictionPolicy,
    now: float,
    order: int,
    shared: bool = False,
) -> tuple[bool, bool, float, Bytes, int]:
    victims = go.victims
    price = pricer(policy)
    cost = sum(price(v.candidate(), now) for v in victims)
    room = account.planned_free + sum(booked_bytes(account, v) for v in victims)
    return (bool(victims), shared, cost, room - need, order)


def place_one(
    accounts: Sequence[DeviceAccount],
    need: Bytes,
    plan_on: PlanOn,
    policy: EvictionPolicy,
    now: float,
    siblings: Collection[DeviceId] = (),
) -> Plan:
    """The cheapest device of ``accounts`` for ``need`` bytes (see the module doc). A
    copy of a model with replicas goes where no other copy is (``siblings``) when that
    costs no more evictions: copies on different GPUs do not share one's compute."""
    fitting = [(i, a) for i, a in enumerate(accounts) if a.fits_ever(need)]
    # Fast path: a device with room now, tightest first; the first that needs no
    # eviction (its group or caps may still ask for one) is the answer.
    free = sorted(
        (a.device in siblings, a.planned_free - need, i)
        for i, a in fitting
        if a.planned_free >= need
    )
    for _, left, i in free:
        plan = plan_on(accounts[i], need)
        if isinstance(plan, Go) and not plan.victims:
            return replace(plan, why=f"room without eviction, best fit ({format_size(left)} left)")
    best: tuple[tuple[bool, bool, float, Bytes, int], Go] | None = None
    refusal: Plan | None = None
    options = 0
    for i, account in fitting:
        plan = plan_on(account, need)
        if isinstance(plan, Go):
            options += 1
            key = _rank(plan, account, need, policy, now, i, account.device in siblings)
            if best is None or key < best[0]:
                best = (key, plan)
        else:
            refusal = _closer(refusal, plan, accounts)
    if best is not None:
        (evicts, _, cost, left, _), plan = best
        if not evicts:
            why = f"room after its group left, best fit ({format_size(left)} left)"
        else:
            why = f"least reload cost ({cost:.1f} s) of {options} device(s) that could make room"
        return replace(plan, why=why)
    assert refusal is not None, "the scheduler refuses models that fit no device"
    return refusal


def _closer(known: Plan | None, plan: Plan, accounts: Sequence[DeviceAccount]) -> Plan:
    """Of two refusals, the one to report and act on: a wait beats a refusal (memory
    may come back there), and of two waits the one on the device with the most room,
    where a starving request drains (replays: nearest-to-fitting by bytes still missing
    drained hot models more often and waited longer on zipf and diurnal traffic)."""
    if known is None or (isinstance(plan, Wait) and not isinstance(known, Wait)):
        return plan
    if isinstance(plan, Wait) and isinstance(known, Wait):
        room = {a.device: a.planned_free for a in accounts}
        if room[plan.device] > room[known.device]:
            return plan
    return known


def _first_go(accounts: Sequence[DeviceAccount], need: Bytes, plan_on: PlanOn) -> Plan:
    refusal: Plan | None = None
    for account in accounts:
        if not account.fits_ever(need):
            continue
        plan = plan_on(account, need)
        if isinstance(plan, Go):
            return plan
        if refusal is None or (isinstance(plan, Wait) and not isinstance(refusal, Wait)):
            refusal = plan
    assert refusal is not None, "the scheduler refuses models that fit no device"
    return refusal


def most_room(
    accounts: Sequence[DeviceAccount],
    need: Bytes,
    plan_on: PlanOn,
    policy: EvictionPolicy,
    now: float,
) -> Plan:
    """The device with the most room first, evicting there if it must (``placement:
    most_room``, what the pool did before placement by cost; kept for comparison)."""
    by_room = sorted(accounts, key=lambda a: -a.planned_free)
    return _first_go(by_room, need, plan_on)


def first_fit(
    accounts: Sequence[DeviceAccount],
    need: Bytes,
    plan_on: PlanOn,
    policy: EvictionPolicy,
    now: float,
) -> Plan:
    """The first device in budget order that can take the model (``placement: first_fit``)."""
    return _first_go(accounts, need, plan_on)


PLACEMENTS: Mapping[str, Callable[..., Plan]] = {
    "cost": place_one,
    "most_room": most_room,
    "first_fit": first_fit,
}
"""``pool.placement``: how a model for one device picks it."""


def place_across(
    accounts: Sequence[DeviceAccount],
    need: Bytes,
    count: int,
    split: Sequence[float] | None,
    plan_on: PlanOn,
    policy: EvictionPolicy,
    now: float,
    *,
    fixed: bool,
) -> Plan:
    """``count`` devices for one model of ``need`` bytes: ``accounts`` themselves when
    ``fixed`` (a list in the config, in its order), else the cheapest ``count`` of them."""
    even = shares(need, split or [1.0] * count)
    if fixed:
        chosen = list(zip(accounts, even, strict=True))
        plans = [(plan_on(a, part), a, part) for a, part in chosen]
    else:
        part = max(even)  # each candidate must hold the largest part
        plans = []
        for account in accounts:
            if account.fits_ever(part):
                plans.append((plan_on(account, part), account, part))
    goes = [(p, a, part) for p, a, part in plans if isinstance(p, Go)]
    if (fixed and len(goes) < len(plans)) or len(goes) < count:
        return _not_now(plans, count if not fixed else len(plans))
    if not fixed:
        index = {a.device: i for i, a in enumerate(accounts)}
        goes.sort(key=lambda g: _rank(g[0], g[1], g[2], policy, now, index[g[1].device]))
        goes = goes[:count]
    devices = tuple(a.device for _, a, _ in goes)
    victims: list[ModelRecord] = []
    for plan, _, _ in goes:
        victims.extend(v for v in plan.victims if v not in victims)
    if split is None:
        rooms = [
            max(1, a.planned_free + sum(booked_bytes(a, v) for v in p.victims)) for p, a, _ in goes
        ]
        parts = shares(need, rooms)
        # By room, unless rounding would put a byte more on a device than it has.
        fair = all(part <= room for part, room in zip(parts, rooms, strict=True))
        weights = [float(r) for r in rooms] if fair else [1.0] * count
    else:
        weights = list(split)
    total = sum(weights)
    placement = Placement(devices, tuple(w / total for w in weights))
    how = "where the config says" if fixed else f"the {count} cheapest to make room on"
    return Go(placement.device, victims, placement, f"spread over {count} devices, {how}")


def _not_now(plans: Sequence[tuple[Plan, DeviceAccount, Bytes]], count: int) -> Plan:
    """Fewer than ``count`` devices can take their part now. If enough may free up,
    wait for the ``count`` nearest to it (those that could go now first, then by the
    bytes still missing) as a whole: one wait naming every holder, holding all of those
    devices once it starves. Otherwise the first refusal."""
    hopeful = [(p, a) for p, a, _ in plans if not isinstance(p, Impossible)]
    if len(hopeful) < count:
        refusal = next(p for p, _, _ in plans if isinstance(p, Impossible))
        return refusal
    order = {a.device: i for i, (_, a) in enumerate(hopeful)}
    hopeful.sort(
        key=lambda pa: (pa[0].shortfall if isinstance(pa[0], Wait) else 0, order[pa[1].device])
    )
    chosen = hopeful[:count]
    waits = [p for p, _ in chosen if isinstance(p, Wait)]
    drainable: list[ModelRecord] = []
    for wait in waits:
        drainable.extend(r for r in wait.drainable if r not in drainable)
    return Wait(
        waits[0].device,
        [h for wait in waits for h in wait.holders],
        drainable,
        sum(wait.shortfall for wait in waits),
        tuple(a.device for _, a in chosen),
    )


def spread(
    accounts: Mapping[DeviceId, DeviceAccount], need: Bytes, count: int
) -> tuple[DeviceId, ...] | None:
    """The ``count`` devices with the largest budgets, if together they could ever hold
    ``need`` bytes in even parts (None: no such devices)."""
    if count > len(accounts):
        return None
    part = max(shares(need, [1.0] * count))
    biggest = sorted(accounts.values(), key=lambda a: -a.budget)[:count]
    if any(not a.fits_ever(part) for a in biggest):
        return None
    return tuple(a.device for a in biggest)
