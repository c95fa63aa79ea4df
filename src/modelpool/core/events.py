"""What happened in the pool, as plain records for logs, metrics and dashboards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelpool.types import ModelId


class EventKind(StrEnum):
    LOAD_STARTED = "load_started"
    LOADED = "loaded"
    LOAD_FAILED = "load_failed"
    UNLOAD_STARTED = "unload_started"
    """``detail["reason"]`` says why: evicted (and for whom, by which policy), ttl, ..."""
    UNLOADED = "unloaded"
    UNLOAD_FAILED = "unload_failed"
    OFFLOAD_STARTED = "offload_started"
    """Evicted to the warm tier: weights are moving to host RAM (``detail["reason"]``)."""
    OFFLOADED = "offloaded"
    OFFLOAD_FAILED = "offload_failed"
    """The offload failed; the model is unloaded instead."""
    WARM_DROPPED = "warm_dropped"
    """A warm copy was freed (room for a warmer one, an explicit unload, stop)."""
    MEMORY_DRIFT = "memory_drift"
    """The probe and the ledger disagree by more than the threshold (``detail``)."""
    BUDGET_CHANGED = "budget_changed"
    """Other processes' use moved a device's usable budget (headroom, ``safe_max``)."""
    CIRCUIT_OPEN = "circuit_open"
    """The model failed ``max_failures`` times in a row; only an explicit load retries."""
    LOST = "lost"
    """A resident model stopped on its own (its process exited); ``detail["reason"]``."""
    REPLICA_STARTED = "replica_started"
    """One more copy of a model with replicas starts loading: ``detail["model"]``,
    ``reason`` (below min, or every copy busy), ``victims`` it evicts (fewer wanted)."""
    WAITING_FOR_MEMORY = "waiting_for_memory"
    DRAINING = "draining"
    """No new leases: the model will be evicted once its leases return."""
    OVER_BUDGET = "over_budget"
    STRATEGY_CHANGED = "strategy_changed"
    """``detail``: ``old``, ``new``; when ``strategy: auto`` switched, ``why`` and ``table``."""
    STRATEGY_EVALUATED = "strategy_evaluated"
    """``strategy: auto`` replayed its window: ``detail["table"]`` per candidate (total
    and p95 wait, cold loads), ``chosen``, ``why``; ``error`` when the replay was skipped."""
    PINNED = "pinned"
    UNPINNED = "unpinned"
    REJECTED = "rejected"
    PRELOAD_SKIPPED = "preload_skipped"
    """A preload did not start: ``detail["reason"]`` (it would evict, it cannot fit)."""
    MODEL_ADDED = "model_added"
    """A model (a new version) became loadable at run time; ``detail["version"]``."""
    MODEL_REMOVED = "model_removed"
    """A model was forgotten; ``detail["model"]`` (the event's model is None: it is gone)."""
    MODEL_CHANGED = "model_changed"
    """A model's settings changed at run time (a config reload); ``detail["fields"]``."""
    CONFIG_RELOADED = "config_reloaded"
    """The config file was read again and applied; ``detail`` is the diff (added,
    removed, reloaded, updated, settings, needs_restart) and where the reload came from."""
    VERSION_REGISTERED = "version_registered"
    VERSION_UNREGISTERED = "version_unregistered"
    ROUTE_CHANGED = "route_changed"
    """A model's traffic split changed; ``detail["weights"]`` by version."""
    ROLLOUT = "rollout"
    """A rollout operation changed status or step; ``detail`` is its summary."""
    ALERT = "alert"
    """A model version's health changed level; ``detail`` is the alert."""
    FALLBACK = "fallback"
    """A request for the event's model, which could not load (``detail["reason"]``),
    went to ``detail["fallback"]``; ``detail["served"]`` False with ``detail["error"]``
    when the fallback refused it too."""


@dataclass(frozen=True, slots=True)
class PoolEvent:
    kind: EventKind
    model_id: ModelId | None
    at: float
    """Pool clock seconds (monotonic), comparable with other events of the same pool."""
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "model": self.model_id, "at": self.at, **self.detail}


UNLOAD_CAUSES = ("evicted", "ttl", "over_budget", "requested", "stopping", "lost", "other")
"""What an unload's ``reason`` comes down to, for counting (``lost``: exited on its own)."""


def unload_cause(reason: str) -> str:
    """The category of the scheduler's prose reason for an unload ("evicted by lru for b",
    "idle for 60s (ttl)", "over budget on cuda:0", "requested", "stopping"): the prose
    names models and devices, so it cannot be counted or used as a metric label."""
    if reason.startswith("evicted"):
        return "evicted"
    if reason.endswith("(ttl)"):
        return "ttl"
    if reason.startswith("over budget"):
        return "over_budget"
    if reason in ("requested", "stopping"):
        return reason
    return "other"
