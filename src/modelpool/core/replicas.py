"""Replicas: one model id served by several loaded copies, as pure decisions.

A model with ``replicas: {min, max, target_inflight}`` is served by up to ``max``
records of its own, ``id#1`` ... ``id#max`` (each with its own memory, health and
stats); a request for ``id`` goes to one of them. The scheduler owns the records and
carries the decisions out; this module only decides, from plain views:

- ``pick``: which replica a request goes to: a serving one with room (below
  ``max_concurrent``) and the fewest requests in flight; with more than
  ``TWO_CHOICES_FROM`` candidates, the fewer of two drawn at random (the "power of
  two choices": near the best balance without looking at every copy). The
  randomness is injected, so tests seed it.
- ``wants_another``: whether to start one more copy: below ``min`` while the model is
  in use (a copy died or was evicted), or, below ``max``, every copy busier than
  ``target_inflight`` or requests waiting because every copy is at
  ``max_concurrent``; one start at a time.
- ``spare``: which idle extra copies (above ``min``) may go, after ``idle_after``.
- ``outweighs``: whether the model's demand justifies the victims a start would evict
  (a copy never evicts a model with more recent demand than its own).

Which copy a plain model is: itself, a set of one. A model's versions (``id@v2``)
are single records; replicas belong to the model's base record.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from modelpool.config import ModelSpec
from modelpool.config.placement import ReplicaSettings
from modelpool.types import ModelId

REPLICA_MARK = "#"
"""Separates a model id from its replica number: ``chat#2``."""
TWO_CHOICES_FROM = 4
"""With more serving candidates than this, a request compares two drawn at random."""
EXTRA_IDLE_SECONDS = 120.0
"""How long an extra copy (above ``min``) stays idle before it goes, when the model
has no ``ttl`` of its own: long enough to ride out a lull, short enough to give the
memory back within minutes of a burst."""


def replica_id(model_id: ModelId, number: int) -> ModelId:
    """The record id of copy ``number`` (from 1) of ``model_id``."""
    return f"{model_id}{REPLICA_MARK}{number}"


@dataclass(frozen=True, slots=True)
class ReplicaSet:
    """The copies of one model: its spec (with the model's own id) and their record ids,
    ``id#1`` first. The first ``settings.min`` copies are the ones always wanted."""

    spec: ModelSpec
    settings: ReplicaSettings
    members: tuple[ModelId, ...]

    @property
    def model_id(self) -> ModelId:
        return self.spec.id

    @classmethod
    def of(cls, spec: ModelSpec) -> ReplicaSet | None:
        """The set for ``spec`` when it asks for replicas; None for one copy (and for a
        version's record, ``id@v2``, which is always one copy)."""
        settings = spec.replicas
        if settings is None or spec.id != spec.base_id:
            return None
        members = tuple(replica_id(spec.id, n) for n in range(1, settings.max + 1))
        return cls(spec, settings, members)

    def member_spec(self, number: int) -> ModelSpec:
        """The spec of copy ``number``: the model's, under the copy's id, with no names of
        its own; pinned and preloaded only within ``min`` (extras come and go)."""
        wanted = number <= self.settings.min
        return self.spec.model_copy(
            update={
                "id": replica_id(self.spec.id, number),
                "aliases": (),
                "replicas": None,
                "versions": {},
                "pinned": self.spec.pinned and wanted,
                "preload": self.spec.preload if wanted else False,
            }
        )


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """What the decisions see of one copy."""

    model_id: ModelId
    serving: bool
    """READY and taking new requests (not draining)."""
    loading: bool
    """LOADING: it will serve soon."""
    in_flight: int
    """Leases out on it now."""
    idle_for: float = 0.0
    """Seconds since it last served (or loaded); 0 when in use."""
    waiting: int = 0
    """Requests queued on its record."""

    @property
    def active(self) -> bool:
        return self.serving or self.loading


def pick(views: Sequence[ReplicaView], limit: int | None, rng: random.Random) -> ModelId | None:
    """The copy a request goes to: serving, below ``limit`` in flight (None: no limit),
    the fewest in flight (the first such, in order); None when none has room."""
    open_ = [v for v in views if v.serving and (limit is None or v.in_flight < limit)]
    if not open_:
        return None
    if len(open_) > TWO_CHOICES_FROM:
        first, second = rng.sample(open_, 2)
        return (first if first.in_flight <= second.in_flight else second).model_id
    return min(open_, key=lambda v: v.in_flight).model_id


def wants_another(views: Sequence[ReplicaView], settings: ReplicaSettings) -> str | None:
    """Why one more copy should start now, or None. Only while the model is in use (a
    copy serves or loads: a model nobody asked for loads on its first request), one
    start at a time, and never above ``max``."""
    active = [v for v in views if v.active]
    if not active or any(v.loading for v in active) or len(active) >= settings.max:
        return None
    if len(active) < settings.min:
        return f"{len(active)} of min {settings.min} copies"
    target = settings.target_inflight
    if all(v.in_flight > target for v in active):
        return f"every copy has more than {target} requests in flight"
    waiting = sum(v.waiting for v in views)
    if waiting:  # every copy serves and is full (max_concurrent): they wait for a slot
        return f"{waiting} requests wait for a free copy"
    return None


def spare(
    views: Sequence[ReplicaView], settings: ReplicaSettings, idle_after: float
) -> list[ModelId]:
    """Idle extra copies that may go now: serving, nothing in flight or waiting, idle
    ``idle_after`` seconds, and only as many as keep ``min`` copies active; the last
    in order go first (``id#1`` stays longest)."""
    active = [v for v in views if v.active]
    extra = len(active) - settings.min
    gone: list[ModelId] = []
    for view in reversed(active):
        if len(gone) >= extra:
            break
        if view.serving and not view.in_flight and not view.waiting and view.idle_for >= idle_after:
            gone.append(view.model_id)
    return gone


def outweighs(own_demand: float, victim_demands: Sequence[float]) -> bool:
    """Whether a model with ``own_demand`` (recent requests) may evict victims with
    these: only ones with less demand than its own."""
    return all(demand < own_demand for demand in victim_demands)


__all__ = [
    "EXTRA_IDLE_SECONDS",
    "REPLICA_MARK",
    "TWO_CHOICES_FROM",
    "ReplicaSet",
    "ReplicaView",
    "outweighs",
    "pick",
    "replica_id",
    "spare",
    "wants_another",
]
