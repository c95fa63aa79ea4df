"""A replica's report to the router, read off its pool's status: pure, no Ray.

A pool replica on Ray Serve (``modelpool.ray``) answers ``record_routing_stats`` with
what ``routing.MemoryAwareRouter`` needs of it: its ``ReplicaStats`` (models READY and
loading, free bytes and evictable models per device, requests in flight and queued)
and each model's ``ModelAsk`` (its bytes and devices), so that the router, which has no
config of its own, knows how big a model is before any replica holds it. Both come
from ``ModelPool.get_resource_status()`` (``core/queries.py``), the same report
``/admin/status`` shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelpool.cluster.routing import DeviceRoom, Evictable, ModelAsk, ReplicaStats
from modelpool.config import ModelSpec
from modelpool.config.placement import device_count
from modelpool.types import ModelId

RELOAD_SECONDS_UNKNOWN = 1.0
"""What evicting a model costs when it was never timed loading here (restored from the
warm tier, say): a second, so that an eviction is never free."""

STATS_KEY = "stats"
ASKS_KEY = "asks"
"""The keys of the report ``record_routing_stats`` returns (a plain dict, as Ray wants)."""


def replica_stats(
    replica_id: str,
    status: Mapping[str, Any],
    specs: Mapping[ModelId, ModelSpec] | None = None,
) -> ReplicaStats:
    """The router's view of one replica from its pool's ``get_resource_status()``.

    A model is READY when any copy of it is; it is *loading* when it is on its way in
    or when requests wait for it (queued for a load). A device's evictable models are
    the READY, unpinned records booked on it (a copy ``chat#2`` counts as ``chat``,
    whose ``busy`` flag keeps it when it serves). A model is *saturated* (``saturated``)
    by its spec's ``max_concurrent`` in ``specs``."""
    views: Mapping[str, Mapping[str, Any]] = status.get("model_resources", {})
    ready: set[ModelId] = set()
    loading: set[ModelId] = set()
    busy: set[ModelId] = set()
    full: set[ModelId] = set()
    records: dict[str, tuple[ModelId, Mapping[str, Any]]] = {}
    in_flight = 0
    for model_id, view in views.items():
        state = view.get("status")
        if state == "ready":
            ready.add(model_id)
        elif state == "loading" or view.get("waiting", 0) > 0:
            loading.add(model_id)
        leases = int(view.get("leases", 0))
        in_flight += leases
        if leases:
            busy.add(model_id)
        spec = specs.get(model_id) if specs is not None else None
        if saturated(view, spec.max_concurrent if spec is not None else None):
            full.add(model_id)
        copies = view.get("replicas")
        if copies:
            for copy in copies:
                records[copy["id"]] = (model_id, copy)
        else:
            records[model_id] = (model_id, view)
    devices = tuple(
        _room(info, records) for _, info in sorted(status.get("memory_info", {}).items())
    )
    queue = status.get("queue", {})
    return ReplicaStats(
        replica_id,
        ready=frozenset(ready),
        loading=frozenset(loading),
        devices=devices,
        in_flight=in_flight,
        queued=int(queue.get("waiting", 0)),
        busy=frozenset(busy),
        saturated=frozenset(full),
    )


def saturated(view: Mapping[str, Any], max_concurrent: int | None) -> bool:
    """Whether a new request for this model would wait behind others here: READY with
    requests already waiting for a slot, or every serving copy at ``max_concurrent``;
    on its way in with ``max_concurrent`` requests or more waiting for it (the first
    batch it will serve). A model without ``max_concurrent`` (a batching server) is
    never saturated by itself (only its replica, at Ray's ``max_ongoing_requests``)."""
    state = view.get("status")
    waiting = int(view.get("waiting", 0))
    if state == "ready":
        if waiting:
            return True
        if max_concurrent is None:
            return False
        copies = view.get("replicas")
        serving = sum(1 for c in copies if c.get("status") == "ready") if copies else 1
        return int(view.get("leases", 0)) >= max_concurrent * max(serving, 1)
    return max_concurrent is not None and waiting >= max_concurrent


def _room(
    info: Mapping[str, Any], records: Mapping[str, tuple[ModelId, Mapping[str, Any]]]
) -> DeviceRoom:
    evictable = []
    for record_id, booked in sorted(info.get("models", {}).items()):
        model_id, view = records.get(record_id, (record_id, {}))
        if view.get("status") != "ready" or view.get("pinned"):
            continue
        idle = view.get("idle_seconds")
        idle_seconds = float(idle) if isinstance(idle, int | float) else 0.0
        evictable.append(Evictable(model_id, int(booked), reload_seconds(view), idle_seconds))
    return DeviceRoom(int(info.get("free", 0)), tuple(evictable))


def reload_seconds(view: Mapping[str, Any]) -> float:
    """What loading a model again would take, from its record's stats: its last load,
    else its mean, else ``RELOAD_SECONDS_UNKNOWN``."""
    last = view.get("last_load_seconds")
    if isinstance(last, int | float) and last > 0:
        return float(last)
    count = view.get("load_count", 0)
    if count:
        return float(view.get("load_seconds_total", 0.0)) / count or RELOAD_SECONDS_UNKNOWN
    return RELOAD_SECONDS_UNKNOWN


def model_asks(
    status: Mapping[str, Any], specs: Mapping[ModelId, ModelSpec]
) -> dict[ModelId, ModelAsk]:
    """What each model of ``specs`` asks of a replica: its bytes (booked, else the
    pool's estimate, as the status shows them) and how many devices it spans."""
    views: Mapping[str, Mapping[str, Any]] = status.get("model_resources", {})
    asks = {}
    for model_id, spec in specs.items():
        view = views.get(model_id)
        if view is None:
            continue
        asks[model_id] = ModelAsk(model_id, int(view["memory_bytes"]), device_count(spec.devices))
    return asks


def routing_report(
    replica_id: str, status: Mapping[str, Any], specs: Mapping[ModelId, ModelSpec]
) -> dict[str, Any]:
    """What a replica's ``record_routing_stats`` returns: its stats and its asks."""
    return {
        STATS_KEY: replica_stats(replica_id, status, specs),
        ASKS_KEY: model_asks(status, specs),
    }
