"""Which replica (a node's pool) serves a request: a pure decision on replica stats.

Each replica reports what it holds (``ReplicaStats``); a router turns those reports and
the requested model into a ranking, best replica first. Nothing here awaits, logs or
imports Ray: ``modelpool.ray`` adapts these rankings to Ray Serve's ``RequestRouter``,
and the simulator (``sim/cluster.py``) replays them at cluster scale. Randomness is
injected (a ``random.Random``), so a ranking is the same for the same seed.

Three routers:

* ``MemoryAwareRouter`` (ours): replicas where the model is (a) READY, then (b)
  loading (join the load: one burst for a cold model starts one load, not one per
  replica), then (c) where it fits without evicting, then (d) by the least eviction
  cost (reload seconds of the idle models that would have to go); within a rank, the
  fewer requests in flight, by the power of two choices. A hot model spreads: a
  replica where it is READY but *saturated* (every copy at its ``max_concurrent``,
  requests already waiting for a slot, or the replica at Ray's
  ``max_ongoing_requests``) ranks after (c) and (d), so a request that would queue
  there starts a copy where one fits instead; the one-box replica rules
  (``core/replicas.py``: another copy when every copy is full, one start at a time),
  cluster-wide. A copy already on its way is joined until it is saturated too.
* ``RayDefaultRouter``: Ray Serve's ``PowerOfTwoChoicesRequestRouter`` with model
  multiplexing, as of Ray 2.x (``request_router.py``, ``MultiplexMixin``): replicas
  that report the model first (a replica reports a model once it is *loaded*, so a
  load in progress is invisible to it), else the replicas with the fewest models,
  then two drawn at random and the shorter queue wins. It knows nothing of memory.
* ``RandomRouter``: a uniform draw, the floor.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from modelpool.reuse import reuse_chance
from modelpool.types import Bytes, ModelId

ReplicaId = str


@dataclass(frozen=True, slots=True)
class Evictable:
    """A model a replica could evict when idle (READY, not pinned); one with requests
    in flight (``ReplicaStats.busy``) is not evicted."""

    model_id: ModelId
    bytes: Bytes
    reload_seconds: float
    """The seconds to load it again when it is next wanted."""
    idle_seconds: float = 0.0
    """Since it last served (0.0: just now, or never timed)."""

    @property
    def cost(self) -> float:
        """What evicting it is expected to cost: its reload seconds times the chance it
        is wanted again within ``REUSE_HORIZON`` (``reuse_chance``)."""
        return self.reload_seconds * reuse_chance(self.idle_seconds)


@dataclass(frozen=True, slots=True)
class DeviceRoom:
    """One device of a replica: its free bytes and the models it could evict."""

    free: Bytes
    evictable: tuple[Evictable, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplicaStats:
    """What one replica reports to the router (Ray: ``record_routing_stats``)."""

    replica_id: ReplicaId
    ready: frozenset[ModelId] = frozenset()
    """Models READY there (serving)."""
    loading: frozenset[ModelId] = frozenset()
    """Models being brought in there, or queued there for a load."""
    devices: tuple[DeviceRoom, ...] = ()
    in_flight: int = 0
    """Requests being served there now."""
    queued: int = 0
    """Requests waiting there (for a model to load)."""
    busy: frozenset[ModelId] = frozenset()
    """Models with requests in flight there: never evicted."""
    saturated: frozenset[ModelId] = frozenset()
    """Models READY or loading there that a new request would wait behind others for:
    READY with every copy at its ``max_concurrent`` (or requests already waiting for a
    slot), loading with at least ``max_concurrent`` requests waiting for it."""
    capacity: int | None = None
    """The most requests the replica takes at once (Ray's ``max_ongoing_requests``);
    None: no limit. At it, every model there counts as saturated."""

    @property
    def load(self) -> int:
        """What the power of two choices compares: requests there, served or waiting."""
        return self.in_flight + self.queued

    @property
    def full(self) -> bool:
        """At ``capacity``: Ray sends it nothing more until a request ends."""
        return self.capacity is not None and self.load >= self.capacity

    def saturated_with(self, model_id: ModelId) -> bool:
        """Whether a request for ``model_id`` would queue here behind others."""
        return model_id in self.saturated or self.full


@dataclass(frozen=True, slots=True)
class ModelAsk:
    """The model a request wants, as much of it as routing needs."""

    model_id: ModelId
    bytes: Bytes
    devices: int = 1
    """Spread over this many devices of one replica (``bytes`` split evenly)."""

    @property
    def per_device(self) -> Bytes:
        return -(-self.bytes // self.devices)


class Rank(IntEnum):
    """Why a replica suits a request; lower is better."""

    READY = 0
    """The model is serving there: no wait at all."""
    LOADING = 1
    """The model is on its way there: join that load instead of starting another."""
    FITS = 2
    """The model fits there without evicting anything."""
    EVICTS = 3
    """Room can be made there by evicting idle models (cheapest first)."""
    SATURATED = 4
    """The model is there but saturated (``ReplicaStats.saturated_with``): a request
    would queue; better a new copy where one fits, or can be made to fit."""
    NO_ROOM = 5
    """Not now: too little memory even with every idle model evicted."""


@dataclass(frozen=True, slots=True)
class Assessment:
    """A replica's rank for one request, and its eviction cost in seconds (rank EVICTS)."""

    rank: Rank
    cost: float = 0.0


def eviction_cost(
    devices: Sequence[DeviceRoom], ask: ModelAsk, busy: frozenset[ModelId] = frozenset()
) -> float | None:
    """The least expected reload seconds (``Evictable.cost``) of idle models to evict so
    that ``ask`` fits on its number of devices (0.0: it fits already); None: it cannot
    fit even so. The ask takes the ``ask.devices`` cheapest devices (``device_cost``)."""
    need = ask.per_device
    costs = [cost for device in devices if (cost := device_cost(device, need, busy)) is not None]
    if len(costs) < ask.devices:
        return None
    costs.sort()
    return sum(costs[: ask.devices])


def device_cost(
    device: DeviceRoom, need: Bytes, busy: frozenset[ModelId] = frozenset()
) -> float | None:
    """The expected reload seconds to free ``need`` bytes on one device (None: its idle
    models, not ``busy``, are not enough). The cheaper of two guesses at the cheapest
    set: idle models taken cheapest per byte until the share fits, and the one model
    that frees enough alone (per byte, a small model just used can look cheaper than
    the large one idle for minutes that would do alone)."""
    if device.free >= need:
        return 0.0
    idle = [v for v in device.evictable if v.model_id not in busy]
    short = need - device.free
    alone = [v.cost for v in idle if v.bytes >= short]
    room, cost, greedy = device.free, 0.0, None
    for victim in sorted(idle, key=_cheapest_per_byte):
        room += victim.bytes
        cost += victim.cost
        if room >= need:
            greedy = cost
            break
    guesses = [c for c in (greedy, min(alone, default=None)) if c is not None]
    return min(guesses, default=None)


def _cheapest_per_byte(victim: Evictable) -> tuple[float, ModelId]:
    return (victim.cost / max(victim.bytes, 1), victim.model_id)


def assess(replica: ReplicaStats, ask: ModelAsk, *, hot: bool = False) -> Assessment:
    """Where ``replica`` stands for ``ask`` (``MemoryAwareRouter``'s ranks).

    ``hot``: the model is READY somewhere (``is_hot``), so saturation counts: a replica
    where it is READY, or loading, but saturated ranks ``SATURATED``. For a model READY
    nowhere a load is always joined: one burst for a cold model starts one load."""
    if ask.model_id in replica.ready:
        saturated = hot and replica.saturated_with(ask.model_id)
        return Assessment(Rank.SATURATED if saturated else Rank.READY)
    if ask.model_id in replica.loading:
        saturated = hot and replica.saturated_with(ask.model_id)
        return Assessment(Rank.SATURATED if saturated else Rank.LOADING)
    need = ask.per_device
    if sum(1 for d in replica.devices if d.free >= need) >= ask.devices:
        return Assessment(Rank.FITS)
    cost = eviction_cost(replica.devices, ask, replica.busy)
    if cost is None:
        return Assessment(Rank.NO_ROOM)
    return Assessment(Rank.EVICTS, cost)


def is_hot(ask: ModelAsk, replicas: Sequence[ReplicaStats]) -> bool:
    """Whether the model is READY on some replica, so it may spread to more
    (``assess``); a model READY nowhere is cold, its burst joins one load."""
    model_id = ask.model_id
    return any(model_id in r.ready for r in replicas)


class Router(Protocol):
    """A routing decision: pure, deterministic for a given ``rng`` state."""

    @property
    def name(self) -> str: ...

    def rank(
        self, ask: ModelAsk, replicas: Sequence[ReplicaStats], rng: random.Random
    ) -> list[ReplicaId]:
        """Every replica of ``replicas`` once, best first."""
        ...

    def choose(
        self, ask: ModelAsk, replicas: Sequence[ReplicaStats], rng: random.Random
    ) -> ReplicaId | None:
        """The first of ``rank`` (None for no replicas), without ordering the rest."""
        ...


# --- the power of two choices ------------------------------------------------------


def two_choices(group: Sequence[ReplicaStats], rng: random.Random) -> list[ReplicaStats]:
    """Two replicas of ``group`` drawn at random, the less loaded first (a tie: the
    order drawn); the whole group when it has fewer than two."""
    n = len(group)
    if n < 2:
        return list(group)
    i = rng.randrange(n)
    j = rng.randrange(n - 1)
    if j >= i:
        j += 1
    first, second = group[i], group[j]
    return [second, first] if second.load < first.load else [first, second]


def _ordered(group: Sequence[ReplicaStats], rng: random.Random) -> list[ReplicaId]:
    """The two choices first, then the rest by load (ties in a random order)."""
    pair = two_choices(group, rng)
    taken = {r.replica_id for r in pair}
    rest = sorted(
        (r for r in group if r.replica_id not in taken),
        key=lambda r: (r.load, rng.random()),
    )
    return [r.replica_id for r in (*pair, *rest)]


def _check_distinct(replicas: Sequence[ReplicaStats]) -> None:
    if len({r.replica_id for r in replicas}) != len(replicas):
        ids = [r.replica_id for r in replicas]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"replica ids must be distinct: {', '.join(twice)} given twice")


# --- the routers -------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryAwareRouter:
    """Ours: residency, then a load to join, then fit, then the least eviction cost;
    within a rank, the fewer requests in flight (two choices). ``spread``: a hot
    model's saturated replicas rank after fit and eviction (module docstring); off,
    a model stays where it is READY however busy (the comparison)."""

    name: str = "modelpool"
    spread: bool = True

    def rank(
        self, ask: ModelAsk, replicas: Sequence[ReplicaStats], rng: random.Random
    ) -> list[ReplicaId]:
        _check_distinct(replicas)
        hot = self.spread and is_hot(ask, replicas)
        groups: dict[Rank, list[tuple[float, ReplicaStats]]] = {}
        for replica in replicas:
            verdict = assess(replica, ask, hot=hot)
            groups.setdefault(verdict.rank, []).append((verdict.cost, replica))
        out: list[ReplicaId] = []
        for rank in sorted(groups):
            members = groups[rank]
            if rank is Rank.EVICTS:
                out.extend(_by_cost(members, rng))
            else:
                out.extend(_ordered([r for _, r in members], rng))
        return out

    def choose(
        self, ask: ModelAsk, replicas: Sequence[ReplicaStats], rng: random.Random
    ) -> ReplicaId | None:
        # The same draws as ``rank`` for its best group, without assessing the rest:
        # the simulator asks this once per request of 100 replicas.
        model_id = ask.model_id
        best = [r for r in replicas if model_id in r.ready]
        if best and self.spread:
            best = [r for r in best if not r.saturated_with(model_id)]
            if not best:  # hot: every holder saturated, the rest decides
                return _first(self.rank(ask, replicas, rng))
        if not best:
            best = [r for r in replicas if model_id in r.loading]
        if not best:
            return _first(self.rank(ask, replicas, rng))
        _check_distinct(replicas)
        return two_choices(best, rng)[0].replica_id


def _first(ranking: list[ReplicaId]) -> ReplicaId | None:
    return ranking[0] if ranking else None


def _by_cost(members: list[tuple[float, ReplicaStats]], rng: random.Random) -> list[ReplicaId]:
    """Cheapest eviction first; among equal costs, the two choices, then by load."""
    cheapest = min(cost for cost, _ in members)
    tied = [r for cost, r in members if cost == cheapest]
    head = _ordered(tied, rng)
    rest = sorted(
        ((cost, r) for cost, r in members if cost != cheapest),
        key=lambda item: (item[0], item[1].load, rng.random()),
    )
    return head + [r.replica_id for _, r in rest]


@dataclass(frozen=True)
class RayDefaultRouter:
    """Ray Serve's default with multiplexing: replicas reporting the model (loaded
    ones only), else those with the fewest models, else all; two choices by queue."""

    name: str = "ray_default"

    def rank(
        self, ask: ModelAsk, replicas: Sequence[ReplicaStats], rng: random.Random
    ) -> list[ReplicaId]:
        _check_distinct(replicas)
        if not replicas:
            return []
        holders = [r for r in replicas if ask.model_id in r.ready]
        fewest = min(len(r.ready) for r in replicas)
        least = [r for r in replicas if ask.model_id not in r.ready and len(r.ready) == fewest]
        others = [r for r in replicas if ask.model_id not in r.ready and len(r.ready) != fewest]
        out: list[ReplicaId] = []
        for group in (holders, least, others):
            if group:
                out.extend(_ordered(group, rng))
        return out

    def choose(
        self, ask: ModelAsk, replicas: Sequence[ReplicaStats], rng: random.Random
    ) -> ReplicaId | None:
        _check_distinct(replicas)
        if not replicas:
            return None
        group = [r for r in replicas if ask.model_id in r.ready]
        if not group:
            fewest = min(len(r.ready) for r in replicas)
            group = [r for r in replicas if len(r.ready) == fewest]
        return two_choices(group, rng)[0].replica_id


@dataclass(frozen=True)
class RandomRouter:
    """A uniform random order: what a router that knows nothing does."""

    name: str = "random"

    def rank(
        self, ask: ModelAsk, replicas: Sequence[ReplicaStats], rng: random.Random
    ) -> list[ReplicaId]:
        _check_distinct(replicas)
        ids = [r.replica_id for r in replicas]
        rng.shuffle(ids)
        return ids

    def choose(
        self, ask: ModelAsk, replicas: Sequence[ReplicaStats], rng: random.Random
    ) -> ReplicaId | None:
        return _first(self.rank(ask, replicas, rng))


ROUTERS: dict[str, type[MemoryAwareRouter] | type[RayDefaultRouter] | type[RandomRouter]] = {
    "modelpool": MemoryAwareRouter,
    "ray_default": RayDefaultRouter,
    "random": RandomRouter,
}
"""The routers by name."""
